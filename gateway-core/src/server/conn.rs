//! The accept loop and HTTP/1.1 and HTTP/2 connection handling.
//!
//! Built on hyper's connection builders (not `axum::serve`) so every
//! connection gets the limits a public listener needs:
//!
//! - a header-read timeout, which also closes keep-alive connections that
//!   stay silent (slowloris), and bounds the TLS handshake and the wait
//!   for the first bytes of a cleartext connection;
//! - a send timeout: a connection whose client stops reading (its socket
//!   buffer stays full for that long) is closed, with the response it was
//!   sending and the downstream call streaming it, instead of holding them
//!   for as long as the client likes (nginx's `send_timeout`);
//! - a cap on the number and total size of request headers (hyper answers
//!   431 over HTTP/1.1; HTTP/2 advertises the size as
//!   `SETTINGS_MAX_HEADER_LIST_SIZE` and refuses larger header blocks);
//! - over HTTP/2, a cap on concurrent streams, keep-alive pings that close
//!   a connection whose peer stopped answering, and hyper's defence against
//!   reset floods (CVE-2023-44487, "rapid reset"): a client that resets
//!   more than [`MAX_PENDING_RESETS`] streams before the server accepted
//!   them, or causes more than [`MAX_LOCAL_ERROR_RESETS`] stream errors, gets
//!   `GOAWAY` and the connection is closed;
//! - a cap on concurrent connections: past it the listener stops accepting
//!   until a connection closes, instead of running out of file descriptors.
//!
//! A listener's [`Transport`] says how its connections speak: HTTP/1.1;
//! HTTP/1.1 and, for a client that opens with the HTTP/2 preface, HTTP/2
//! cleartext (h2c with prior knowledge, behind a TLS-terminating balancer);
//! or TLS, then HTTP/2 or HTTP/1.1 as ALPN chose.
//!
//! On shutdown the loop stops accepting, asks every connection to finish its
//! in-flight requests and close (HTTP/2: `GOAWAY`), and waits up to the
//! grace period before closing whatever is left.

use std::{net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use axum::{body::Body, extract::ConnectInfo};
use http::{Request, Response};
use hyper::{
    body::Incoming,
    server::conn::{http1, http2},
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::graceful::{GracefulShutdown, Watcher},
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};
use tokio_io_timeout::TimeoutStream;
use tower::{Service, ServiceExt};

use super::termination::TlsTermination;
use crate::lifecycle::Shutdown;

/// Streams a client may reset before the server accepted them, per
/// connection, before it is closed (hyper's and h2's default, explicit).
pub const MAX_PENDING_RESETS: usize = 20;
/// Stream errors a client may cause per connection before it is closed.
pub const MAX_LOCAL_ERROR_RESETS: usize = 256;
/// An HTTP/2 connection silent this long is pinged; one whose ping goes
/// unanswered for `header_read_timeout` is closed.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(20);
/// The HTTP/2 connection preface (RFC 9113 §3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a listener's connections speak; see the module docs.
#[derive(Debug, Clone, Default)]
pub enum Transport {
    /// HTTP/1.1 in cleartext.
    #[default]
    Http1,
    /// HTTP/1.1, and HTTP/2 for a client that opens with its preface (h2c).
    Cleartext,
    /// TLS, then HTTP/2 or HTTP/1.1 as ALPN chose.
    Tls(TlsTermination),
}

/// Per-connection limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest wait for a complete request head, also on idle keep-alive connections.
    pub header_read_timeout: Duration,
    /// Longest time a write to the client may wait for it to read.
    pub send_timeout: Duration,
    /// Most headers in one request (more is a 431).
    pub max_headers: usize,
    /// Largest request head in bytes (larger is a 431).
    pub max_header_bytes: usize,
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Most concurrent streams of one HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
            max_headers: 100,
            max_header_bytes: 16 * 1024,
            max_connections: 10_000,
            http2_max_concurrent_streams: 100,
        }
    }
}

/// Serves `service` on `listener`, speaking `transport`, until `stop`
/// triggers, then drains for at most `grace`. A service error closes the
/// connection without an answer.
pub async fn serve_connections<S>(
    listener: TcpListener,
    transport: Transport,
    service: S,
    limits: ConnectionLimits,
    stop: Shutdown,
    grace: Duration,
) where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let protocols = Protocols::new(&limits);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = stop.triggered() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically EMFILE or a connection reset before accept: back off briefly.
                    tracing::warn!(%error, "accept failed");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                        () = stop.triggered() => break,
                    }
                }
            },
            () = stop.triggered() => break,
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let connection = Connection {
            stream,
            peer,
            slot,
            watcher: graceful.watcher(),
            limits,
        };
        connections.spawn(connection.serve(transport.clone(), protocols.clone(), service.clone()));
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::debug!("all connections drained"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!(open = connections.len(), ?grace, "grace period over, closing the remaining connections");
        }
    }
    connections.abort_all();
}

/// The HTTP/1.1 and HTTP/2 settings of one listener.
#[derive(Clone)]
struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Protocols {
    fn new(limits: &ConnectionLimits) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_headers(limits.max_headers)
            .max_header_size(limits.max_header_bytes)
            .keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.http2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
            .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS)
            .keep_alive_interval(HTTP2_PING_INTERVAL)
            .keep_alive_timeout(limits.header_read_timeout);
        Self { http1, http2 }
    }
}

impl Protocols {
    /// Serves `io` with `service` in HTTP/2 or HTTP/1.1 until it closes,
    /// `watcher` telling it when to drain.
    async fn serve<I, S>(
        &self,
        io: I,
        http2: bool,
        watcher: Watcher,
        service: S,
    ) -> Result<(), hyper::Error>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        S: hyper::service::HttpService<Incoming, ResBody = Body> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        match http2 {
            true => {
                watcher
                    .watch(self.http2.serve_connection(io, service))
                    .await
            }
            false => {
                watcher
                    .watch(self.http1.serve_connection(io, service))
                    .await
            }
        }
    }
}

/// One accepted connection, holding its slot until it closes.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
    watcher: Watcher,
    limits: ConnectionLimits,
}

/// A client's socket with the send timeout.
type TimedStream = Pin<Box<TimeoutStream<TcpStream>>>;

impl Connection {
    /// Handshakes (TLS, or the look for the HTTP/2 preface) and serves the
    /// connection's requests with `service` until it closes.
    async fn serve<S>(self, transport: Transport, protocols: Protocols, service: S)
    where
        S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Self {
            stream,
            peer,
            slot,
            watcher,
            limits,
        } = self;
        let per_request = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            service.clone().oneshot(request)
        });
        let handshake_deadline = limits.header_read_timeout;
        let speaks_http2 = match &transport {
            Transport::Http1 => false,
            Transport::Cleartext => {
                match tokio::time::timeout(handshake_deadline, opens_with_http2_preface(&stream))
                    .await
                {
                    Ok(Ok(preface)) => preface,
                    Ok(Err(error)) => {
                        tracing::debug!(%error, %peer, "connection closed before a request");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "no request within header_read_timeout");
                        return;
                    }
                }
            }
            Transport::Tls(_) => false,
        };
        let stream = timed(stream, limits.send_timeout);
        let outcome = match transport {
            Transport::Tls(termination) => {
                let accepted =
                    tokio::time::timeout(handshake_deadline, termination.acceptor().accept(stream))
                        .await;
                let tls = match accepted {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => {
                        tracing::debug!(%error, %peer, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake not done within header_read_timeout");
                        return;
                    }
                };
                let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                protocols
                    .serve(TokioIo::new(tls), http2, watcher, per_request)
                    .await
            }
            Transport::Http1 | Transport::Cleartext => {
                protocols
                    .serve(TokioIo::new(stream), speaks_http2, watcher, per_request)
                    .await
            }
        };
        if let Err(error) = outcome {
            tracing::debug!(%error, %peer, "connection ended with an error");
        }
        drop(slot);
    }
}

fn timed(stream: TcpStream, send_timeout: Duration) -> TimedStream {
    let mut stream = TimeoutStream::new(stream);
    stream.set_write_timeout(Some(send_timeout));
    Box::pin(stream)
}

/// Whether the client's first bytes are the HTTP/2 preface, looked at
/// without reading them (hyper reads them next). Waits until enough bytes
/// arrived to tell; the caller bounds the wait.
async fn opens_with_http2_preface(stream: &TcpStream) -> std::io::Result<bool> {
    let mut first = [0u8; HTTP2_PREFACE.len()];
    loop {
        let seen = stream.peek(&mut first).await?;
        if seen == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if first[..seen] != HTTP2_PREFACE[..seen] {
            return Ok(false);
        }
        if seen == HTTP2_PREFACE.len() {
            return Ok(true);
        }
        // A prefix of the preface so far: `peek` would answer at once with
        // the same bytes, so wait a little for the rest.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
