//! The public listener over TLS and HTTP/2: `[server.tls]` terminates TLS
//! 1.2 and 1.3 and serves HTTP/2 or HTTP/1.1 as ALPN chose; a rotated
//! certificate reaches new connections without dropping open ones, and a
//! broken one is refused while the old one stays; `[server] h2c` serves
//! HTTP/2 with prior knowledge beside HTTP/1.1; HTTP/2's limits (concurrent
//! streams, header list size) are advertised and enforced, and a rapid-reset
//! flood gets `GOAWAY` while the server goes on serving.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use demo_services::DemoServices;
use gateway_core::{
    config::HumanDuration,
    lifecycle::Shutdown,
    server::{MAX_PENDING_RESETS, Running, ServerTlsConfig},
};
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper::{
    body::Bytes,
    client::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use platform_tests::{
    eventually, issue_token, metric, pki::TestCa, start_bff, start_demo, write_temp_file,
};
use rustls::pki_types::{ServerName, pem::PemObject};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

/// A certificate of `ca` in two new files named after `name`.
fn certificate_files(ca: &TestCa, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
    let cert_file = write_temp_file(&format!("{name}-cert.pem"), "");
    let key_file = write_temp_file(&format!("{name}-key.pem"), "");
    let der = ca.write_certificate(&cert_file, &key_file);
    (cert_file, key_file, der)
}

async fn web_over_tls(
    demo: &DemoServices,
    shutdown: &Shutdown,
    cert_file: &Path,
    key_file: &Path,
) -> Running {
    let tls = ServerTlsConfig {
        cert_file: cert_file.to_path_buf(),
        key_file: key_file.to_path_buf(),
        reload_interval: HumanDuration::from_millis(100),
    };
    start_bff::<bff_web::Web>(demo, shutdown, |config| config.server.tls = Some(tls)).await
}

async fn tls_connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connects");
    TlsConnector::from(config)
        .connect(ServerName::try_from("127.0.0.1").expect("a name"), tcp)
        .await
        .expect("the TLS handshake succeeds")
}

fn served_certificate(tls: &TlsStream<TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec()
}

fn product_page(addr: SocketAddr, scheme: &str, token: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("{scheme}://{addr}/api/product-page/1"))
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::new())
        .expect("a request")
}

/// [`product_page`] as an HTTP/1.1 client sends it, with `Host`; over
/// HTTP/2 the host travels as `:authority` alone.
fn http1_product_page(addr: SocketAddr, scheme: &str, token: &str) -> Request<Empty<Bytes>> {
    let mut request = product_page(addr, scheme, token);
    request
        .headers_mut()
        .insert("host", addr.to_string().parse().expect("a host"));
    request
}

/// An HTTP/2 client on `io`, its connection driven in the background.
async fn http2_client<I>(io: I) -> http2::SendRequest<Empty<Bytes>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .expect("the HTTP/2 handshake succeeds");
    tokio::spawn(connection);
    sender
}

/// An HTTP/1.1 client on `io`, its connection driven in the background.
async fn http1_client<I>(io: I) -> http1::SendRequest<Empty<Bytes>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io))
        .await
        .expect("the HTTP/1.1 handshake succeeds");
    tokio::spawn(connection);
    sender
}

/// The status, version and `product.id` of an answer.
async fn page_of(
    response: Result<http::Response<hyper::body::Incoming>, hyper::Error>,
) -> (StatusCode, Version, u64) {
    let response = response.expect("answered");
    let (status, version) = (response.status(), response.version());
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    (status, version, page["product"]["id"].as_u64().unwrap_or(0))
}

#[tokio::test]
async fn tls_serves_http2_or_http1_as_alpn_chooses() {
    let ca = TestCa::new("public");
    let (cert_file, key_file, der) = certificate_files(&ca, "alpn");
    let (demo, shutdown) = start_demo(Default::default()).await;
    let web = web_over_tls(&demo, &shutdown, &cert_file, &key_file).await;
    let addr = web.public_addr();
    let token = issue_token(&demo, "user-1", "bff-web", "ES256");

    let tls = tls_connect(addr, ca.client_config(&["h2", "http/1.1"])).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
    assert_eq!(served_certificate(&tls), der);
    let mut h2 = http2_client(tls).await;
    let answer = page_of(h2.send_request(product_page(addr, "https", &token)).await).await;
    assert_eq!(
        answer,
        (StatusCode::OK, Version::HTTP_2, 1),
        "HTTP/2 by ALPN"
    );

    for alpn in [&["http/1.1"][..], &[]] {
        let tls = tls_connect(addr, ca.client_config(alpn)).await;
        let mut h1 = http1_client(tls).await;
        let answer = page_of(
            h1.send_request(http1_product_page(addr, "https", &token))
                .await,
        )
        .await;
        assert_eq!(
            answer,
            (StatusCode::OK, Version::HTTP_11, 1),
            "HTTP/1.1 with ALPN {alpn:?}"
        );
    }

    let tls12 = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .expect("TLS 1.2")
    .with_root_certificates(tls12_roots(&ca))
    .with_no_client_auth();
    let tls = tls_connect(addr, Arc::new(tls12)).await;
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );

    let mut plain = TcpStream::connect(addr).await.expect("connects");
    plain
        .write_all(b"GET /api/product-page/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("written");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(
        !String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "cleartext is not served on a TLS listener"
    );
    shutdown.trigger();
}

fn tls12_roots(ca: &TestCa) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in
        rustls::pki_types::CertificateDer::pem_file_iter(&ca.ca_file).expect("the CA file")
    {
        roots
            .add(certificate.expect("a certificate"))
            .expect("added");
    }
    roots
}

#[tokio::test]
async fn a_rotated_certificate_reaches_new_connections_without_dropping_open_ones_and_a_broken_one_is_refused()
 {
    let ca = TestCa::new("rotation");
    let (cert_file, key_file, first) = certificate_files(&ca, "rotation");
    let (demo, shutdown) = start_demo(Default::default()).await;
    let web = web_over_tls(&demo, &shutdown, &cert_file, &key_file).await;
    let (addr, admin) = (web.public_addr(), web.admin_addr());
    let token = issue_token(&demo, "user-1", "bff-web", "ES256");
    let client = ca.client_config(&["h2"]);

    let open = tls_connect(addr, client.clone()).await;
    assert_eq!(served_certificate(&open), first);
    let mut open = http2_client(open).await;
    let answer = page_of(open.send_request(product_page(addr, "https", &token)).await).await;
    assert_eq!(answer.0, StatusCode::OK);

    let second = ca.write_certificate(&cert_file, &key_file);
    assert_ne!(second, first);
    eventually("new connections get the new certificate", async || {
        served_certificate(&tls_connect(addr, client.clone()).await) == second
    })
    .await;
    let applied = [("result", "applied")];
    assert_eq!(
        metric(admin, "tls_certificate_reloads_total", &applied).await,
        Some(1.0)
    );
    let answer = page_of(open.send_request(product_page(addr, "https", &token)).await).await;
    assert_eq!(
        answer.0,
        StatusCode::OK,
        "the connection opened before still serves"
    );

    std::fs::write(
        &cert_file,
        "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
    )
    .expect("written");
    let rejected = [("result", "rejected")];
    eventually("the broken pair is refused", async || {
        metric(admin, "tls_certificate_reloads_total", &rejected).await == Some(1.0)
    })
    .await;
    assert_eq!(
        served_certificate(&tls_connect(addr, client.clone()).await),
        second,
        "the previous pair stays in use"
    );
    assert_eq!(
        metric(admin, "tls_certificate_reloads_total", &applied).await,
        Some(1.0)
    );
    shutdown.trigger();
}

#[tokio::test]
async fn h2c_serves_http2_with_prior_knowledge_beside_http1_only_when_enabled() {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let token = issue_token(&demo, "user-1", "bff-web", "ES256");
    let h2c = start_bff::<bff_web::Web>(&demo, &shutdown, |config| config.server.h2c = true).await;
    let addr = h2c.public_addr();

    let mut h2 = http2_client(TcpStream::connect(addr).await.expect("connects")).await;
    let answer = page_of(h2.send_request(product_page(addr, "http", &token)).await).await;
    assert_eq!(answer, (StatusCode::OK, Version::HTTP_2, 1));
    let mut h1 = http1_client(TcpStream::connect(addr).await.expect("connects")).await;
    let answer = page_of(
        h1.send_request(http1_product_page(addr, "http", &token))
            .await,
    )
    .await;
    assert_eq!(answer, (StatusCode::OK, Version::HTTP_11, 1));

    let plain = start_bff::<bff_web::Web>(&demo, &shutdown, |_| {}).await;
    let addr = plain.public_addr();
    let refused = match http2::handshake(
        TokioExecutor::new(),
        TokioIo::new(TcpStream::connect(addr).await.expect("connects")),
    )
    .await
    {
        Ok((mut sender, connection)) => {
            tokio::spawn(connection);
            sender
                .send_request(product_page(addr, "http", &token))
                .await
                .is_err()
        }
        Err(_) => true,
    };
    assert!(refused, "without h2c, HTTP/2 prior knowledge is not served");
    shutdown.trigger();
}

/// One HTTP/2 frame: its type, flags, stream and payload.
struct Frame {
    kind: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len())
        .expect("a small frame")
        .to_be_bytes();
    let mut bytes = vec![length[1], length[2], length[3], kind, flags];
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// Every frame the server sends on `stream` until it closes the
/// connection (or five seconds pass).
async fn frames_until_closed(stream: &mut TcpStream) -> Vec<Frame> {
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut bytes)).await;
    let mut frames = Vec::new();
    let mut rest = bytes.as_slice();
    while rest.len() >= 9 {
        let length = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        if rest.len() < 9 + length {
            break;
        }
        frames.push(Frame {
            kind: rest[3],
            stream: u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff,
            payload: rest[9..9 + length].to_vec(),
        });
        rest = &rest[9 + length..];
    }
    frames
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: u8 = 0x4;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;
const CANCEL: u32 = 0x8;

#[tokio::test]
async fn http2_advertises_its_limits_and_a_rapid_reset_flood_gets_goaway_while_the_server_serves_on()
 {
    let (demo, shutdown) = start_demo(Default::default()).await;
    let token = issue_token(&demo, "user-1", "bff-web", "ES256");
    let web = start_bff::<bff_web::Web>(&demo, &shutdown, |config| {
        config.server.h2c = true;
        config.server.http2_max_concurrent_streams = 8.try_into().expect("non-zero");
        config.server.max_header_bytes = 4096.try_into().expect("non-zero");
    })
    .await;
    let addr = web.public_addr();

    // The flood: requests each reset at once (HEADERS `GET /` then
    // RST_STREAM CANCEL), far more than MAX_PENDING_RESETS, in one write.
    let mut flood = PREFACE.to_vec();
    flood.extend(frame(SETTINGS, 0, 0, &[]));
    // :method GET, :scheme http, :path / (HPACK static table 2, 6, 4).
    let request_block = [0x82, 0x86, 0x84];
    for n in 0..200u32 {
        let stream = 2 * n + 1;
        flood.extend(frame(HEADERS, 0x4 | 0x1, stream, &request_block));
        flood.extend(frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
    }
    let mut connection = TcpStream::connect(addr).await.expect("connects");
    connection.write_all(&flood).await.expect("written");
    let frames = frames_until_closed(&mut connection).await;

    let settings = frames
        .iter()
        .find(|frame| frame.kind == SETTINGS && !frame.payload.is_empty())
        .expect("the server's SETTINGS");
    let setting = |id: u16| {
        settings.payload.chunks(6).find_map(|entry| {
            (u16::from_be_bytes([entry[0], entry[1]]) == id)
                .then(|| u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]))
        })
    };
    assert_eq!(setting(0x3), Some(8), "SETTINGS_MAX_CONCURRENT_STREAMS");
    assert_eq!(setting(0x6), Some(4096), "SETTINGS_MAX_HEADER_LIST_SIZE");

    let goaway = frames
        .iter()
        .find(|frame| frame.kind == GOAWAY)
        .expect("the flood is answered with GOAWAY");
    assert_eq!(goaway.stream, 0);
    let code = u32::from_be_bytes([
        goaway.payload[4],
        goaway.payload[5],
        goaway.payload[6],
        goaway.payload[7],
    ]);
    assert_eq!(code, ENHANCE_YOUR_CALM);
    let last_stream = u32::from_be_bytes([
        goaway.payload[0],
        goaway.payload[1],
        goaway.payload[2],
        goaway.payload[3],
    ]) & 0x7fff_ffff;
    assert!(
        last_stream < 2 * 200,
        "cut off before the flood's end (last stream {last_stream}, limit {MAX_PENDING_RESETS})"
    );

    // A header block over the advertised size is refused; the server serves on.
    let mut h2 = http2_client(TcpStream::connect(addr).await.expect("connects")).await;
    let mut oversized = product_page(addr, "http", &token);
    oversized
        .headers_mut()
        .insert("x-padding", "p".repeat(8192).parse().expect("a value"));
    let refused = match h2.send_request(oversized).await {
        Ok(response) => response.status() == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        Err(_) => true,
    };
    assert!(refused, "a header list over max_header_bytes is refused");
    let mut h2 = http2_client(TcpStream::connect(addr).await.expect("connects")).await;
    let answer = page_of(h2.send_request(product_page(addr, "http", &token)).await).await;
    assert_eq!(answer, (StatusCode::OK, Version::HTTP_2, 1));
    shutdown.trigger();
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_header_read_timeout_over_tls_and_h2c() {
    let ca = TestCa::new("silent");
    let (cert_file, key_file, _) = certificate_files(&ca, "silent");
    let (demo, shutdown) = start_demo(Default::default()).await;
    let quick = HumanDuration::from_secs(1);
    let tls = ServerTlsConfig {
        cert_file,
        key_file,
        reload_interval: HumanDuration::from_secs(10),
    };
    let over_tls = start_bff::<bff_web::Web>(&demo, &shutdown, |config| {
        config.server.tls = Some(tls);
        config.server.header_read_timeout = quick;
    })
    .await;
    let h2c = start_bff::<bff_web::Web>(&demo, &shutdown, |config| {
        config.server.h2c = true;
        config.server.header_read_timeout = quick;
    })
    .await;
    // Nothing before the TLS handshake; half a preface over h2c, so the
    // listener cannot tell the protocol yet.
    for (listener, addr, first_bytes) in [
        ("TLS", over_tls.public_addr(), &[][..]),
        ("h2c", h2c.public_addr(), &PREFACE[..3]),
    ] {
        let mut silent = TcpStream::connect(addr).await.expect("connects");
        silent.write_all(first_bytes).await.expect("written");
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "{listener}: the connection is closed");
    }
    shutdown.trigger();
}

#[tokio::test]
async fn a_drain_finishes_the_http2_streams_under_way_and_refuses_new_ones() {
    let (demo, demo_shutdown) = start_demo(std::collections::BTreeMap::from([(
        demo_services::ServiceName::Pricing,
        demo_services::FaultConfig {
            latency: Some(HumanDuration::from_millis(1200)),
            ..demo_services::FaultConfig::default()
        },
    )]))
    .await;
    let shutdown = Shutdown::new();
    let web = start_bff::<bff_web::Web>(&demo, &shutdown, |config| {
        config.server.h2c = true;
        if let Some(pricing) = config.downstream.get_mut("pricing") {
            pricing.timeout = HumanDuration::from_secs(5);
        }
    })
    .await;
    let (addr, admin) = (web.public_addr(), web.admin_addr());
    let token = issue_token(&demo, "user-1", "bff-web", "ES256");
    let h2 = http2_client(TcpStream::connect(addr).await.expect("connects")).await;
    let in_flight: Vec<_> = (0..5)
        .map(|_| {
            let mut sender = h2.clone();
            let request = product_page(addr, "http", &token);
            tokio::spawn(async move { page_of(sender.send_request(request).await).await })
        })
        .collect();
    eventually("five streams are in flight", async || {
        metric(admin, "http_server_active_requests", &[]).await == Some(5.0)
    })
    .await;
    shutdown.trigger();
    for answer in in_flight {
        assert_eq!(
            answer.await.expect("the stream ends"),
            (StatusCode::OK, Version::HTTP_2, 1),
            "a stream under way when the drain began is answered"
        );
    }
    let mut sender = h2.clone();
    assert!(
        sender
            .send_request(product_page(addr, "http", &token))
            .await
            .is_err(),
        "no new stream after GOAWAY"
    );
    web.wait().await;
    demo_shutdown.trigger();
}
