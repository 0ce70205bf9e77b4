//! Forwarding one request of a pass-through route.

use std::{
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    response::Response,
};
use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::{Route, split::BFF_CANARY};
use crate::{
    Error, RequestContext,
    auth::API_KEY_HEADER,
    downstream::aggregate::BFF_PARTIAL,
    error::PassedThrough,
    identity::IDENTITY_HEADER_PREFIX,
    server::{remove_headers_where, strip_hop_by_hop},
};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Client headers no service gets: the credentials (it gets the verified
/// identity instead), `BFF-Canary` (the side of a split is chosen here) and
/// `Forwarded`.
const KEPT_HERE: [HeaderName; 5] = [
    header::AUTHORIZATION,
    header::COOKIE,
    API_KEY_HEADER,
    BFF_CANARY,
    header::FORWARDED,
];

/// What a client says about the hops before this gateway, believed only
/// from a trusted proxy.
const FORWARDING_CLAIMS: [HeaderName; 3] = [X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST];

/// The handler of every pass-through route: chooses the side of the split,
/// forwards the request with its body streamed, and streams the answer back.
pub(super) async fn forward(
    State(route): State<Arc<Route>>,
    context: RequestContext,
    request: Request,
) -> Result<Response, Error> {
    // Routes are never public, so the caller is known; were it not, the
    // client would refuse to call the service without an identity.
    let caller = context
        .identity
        .as_deref()
        .map(|identity| identity.identity());
    let (tenant, subject) = caller.map_or(("", ""), |caller| {
        (caller.tenant.as_str(), caller.subject.as_str())
    });
    let (parts, body) = request.into_parts();
    // Only testers (callers with the route's `canary_scope`) choose their side.
    let forced = parts
        .headers
        .get(BFF_CANARY)
        .filter(|_| caller.is_some_and(|caller| caller.has_scope(&route.canary_scope)));
    let side = route.split.choose(tenant, subject, forced)?;
    check_segments(parts.uri.path())?;
    let path = route.downstream_path(parts.uri.path(), parts.uri.query());
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    let trusted =
        peer.is_some_and(|peer| route.trusted_proxies.iter().any(|net| net.contains(&peer)));
    let headers = forwarded_headers(parts.headers, peer, trusted);
    let mut response = side
        .target
        .forward(parts.method, path, headers, body, &context)
        .await?;
    answer_headers(response.headers_mut());
    response.extensions_mut().insert(PassedThrough);
    Ok(response)
}

/// Refuses a path with a `.` or `..` segment hidden behind parameters
/// (`/..;/admin`): the server resolved the plain ones, but a service that
/// drops `;params` would resolve these outside the route's prefix.
fn check_segments(path: &str) -> Result<(), Error> {
    let hidden_dots = path.split('/').any(|segment| {
        name_before_parameters(segment).is_some_and(|name| {
            [".", "..", "%2e", "%2e%2e", ".%2e", "%2e."]
                .iter()
                .any(|dots| name.eq_ignore_ascii_case(dots))
        })
    });
    match hidden_dots {
        true => Err(Error::BadRequest(
            "a path segment may not be '.' or '..' with parameters".to_owned(),
        )),
        false => Ok(()),
    }
}

/// The name of a path segment that has parameters: what comes before its
/// first `;` or `%3B` (in any case). `None` without parameters, the common
/// case, found without copying the segment.
fn name_before_parameters(segment: &str) -> Option<&str> {
    let bytes = segment.as_bytes();
    bytes
        .iter()
        .enumerate()
        .find(|&(at, &byte)| {
            byte == b';'
                || (byte == b'%'
                    && bytes
                        .get(at + 1..at + 3)
                        .is_some_and(|rest| rest.eq_ignore_ascii_case(b"3b")))
        })
        .map(|(at, _)| &segment[..at])
}

/// The service's headers as the client gets them: without the hop-by-hop
/// ones, and without what only the gateway decides for its own origin:
/// cookies (a service could overwrite the BFF's session cookie), CORS (the
/// BFF's own policy answers), `BFF-Partial`, and the identity headers (a
/// service echoing its request must not hand the internal token out).
fn answer_headers(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    remove_headers_where(headers, |name| {
        name == header::SET_COOKIE
            || name == BFF_PARTIAL
            || name.as_str().starts_with("access-control-")
            || name.as_str().starts_with(IDENTITY_HEADER_PREFIX)
    });
}

/// The client's headers as the service gets them: without the hop-by-hop
/// ones (the server's hygiene removed those, and forged `X-Auth-*`), the
/// credentials (the service gets the verified identity as `X-Auth-*`),
/// `Host` (the service's own is sent), `BFF-Canary` and `Forwarded`. The
/// `X-Forwarded-*` headers are believed only from a `trusted` peer (one of
/// `[server] trusted_proxies`): its chain is extended by the peer and its
/// scheme and host kept; anyone else's are replaced by what this gateway saw.
fn forwarded_headers(mut headers: HeaderMap, peer: Option<IpAddr>, trusted: bool) -> HeaderMap {
    let host = headers.remove(header::HOST);
    remove_headers_where(&mut headers, |name| {
        KEPT_HERE.contains(name) || (!trusted && FORWARDING_CLAIMS.contains(name))
    });
    if let Some(peer) = peer {
        let mut chain = String::new();
        for earlier in headers.get_all(X_FORWARDED_FOR) {
            if let Ok(earlier) = earlier.to_str() {
                chain.push_str(earlier);
                chain.push_str(", ");
            }
        }
        let _ = write!(chain, "{peer}");
        if let Ok(chain) = HeaderValue::try_from(chain) {
            headers.insert(X_FORWARDED_FOR, chain);
        }
    }
    if !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if let Some(host) = host
        && !headers.contains_key(X_FORWARDED_HOST)
    {
        headers.insert(X_FORWARDED_HOST, host);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AUTH_TOKEN;

    fn client_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("api.example.com"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        headers.insert(header::COOKIE, HeaderValue::from_static("session=t"));
        headers.insert(API_KEY_HEADER, HeaderValue::from_static("k"));
        headers.insert(BFF_CANARY, HeaderValue::from_static("products-v2"));
        headers.insert(
            header::FORWARDED,
            HeaderValue::from_static("for=198.51.100.1"),
        );
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.7"));
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        headers.insert(
            X_FORWARDED_HOST,
            HeaderValue::from_static("shop.example.com"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/csv"));
        headers
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn credentials_host_and_what_an_untrusted_client_claims_stay_here() {
        let forwarded = forwarded_headers(client_headers(), Some(PEER), false);
        for gone in [
            header::HOST,
            header::AUTHORIZATION,
            header::COOKIE,
            API_KEY_HEADER,
            BFF_CANARY,
            header::FORWARDED,
        ] {
            assert!(!forwarded.contains_key(&gone), "{gone}");
        }
        assert_eq!(forwarded[X_FORWARDED_FOR], "10.0.0.2");
        assert_eq!(forwarded[X_FORWARDED_PROTO], "http");
        assert_eq!(forwarded[X_FORWARDED_HOST], "api.example.com");
        assert_eq!(forwarded[header::ACCEPT], "text/csv");
    }

    #[test]
    fn a_trusted_proxy_in_front_keeps_its_chain_scheme_and_host() {
        let forwarded = forwarded_headers(client_headers(), Some(PEER), true);
        assert_eq!(forwarded[X_FORWARDED_FOR], "203.0.113.7, 10.0.0.2");
        assert_eq!(forwarded[X_FORWARDED_PROTO], "https");
        assert_eq!(forwarded[X_FORWARDED_HOST], "shop.example.com");
        assert!(!forwarded.contains_key(header::FORWARDED));
    }

    #[test]
    fn dot_segments_hidden_behind_parameters_are_refused() {
        for refused in [
            "/api/..;/admin",
            "/api/.;x/a",
            "/api/..%3B/admin",
            "/api/%2e%2e;/x",
            "/api/%2E%2e%3Bx/admin",
            "/api/.%2E%3b",
        ] {
            assert!(check_segments(refused).is_err(), "{refused}");
        }
        for allowed in [
            "/api/products;v=2/42",
            "/api/a..b;c",
            "/api/products/42",
            "/api/..%3",
            "/api/%3B/x",
            "/api/%2e%2ex;y",
        ] {
            assert!(check_segments(allowed).is_ok(), "{allowed}");
        }
    }

    #[test]
    fn the_gateway_keeps_its_origins_cookies_cors_policy_and_identity_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::SET_COOKIE,
            HeaderValue::from_static("bff_session=x"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        headers.insert(BFF_PARTIAL, HeaderValue::from_static("x=timeout"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        headers.insert(AUTH_TOKEN, HeaderValue::from_static("eyJ.echoed.token"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv"));
        answer_headers(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(headers[header::CONTENT_TYPE], "text/csv");
    }
}
