//! Forwarding one request of a pass-through route.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, Request, State},
    response::Response,
};
use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::{Route, split::BFF_CANARY};
use crate::{
    Error, RequestContext, auth::API_KEY_HEADER, error::PassedThrough, server::strip_hop_by_hop,
};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The handler of every pass-through route: chooses the side of the split,
/// forwards the request with its body streamed, and streams the answer back.
pub(super) async fn forward(
    State(route): State<Arc<Route>>,
    context: RequestContext,
    request: Request,
) -> Result<Response, Error> {
    // Routes are never public, so the caller is known; were it not, the
    // client would refuse to call the service without an identity.
    let (tenant, subject) = context.identity.as_deref().map_or(("", ""), |identity| {
        let caller = identity.identity();
        (caller.tenant.as_str(), caller.subject.as_str())
    });
    let (parts, body) = request.into_parts();
    let side = route
        .split
        .choose(tenant, subject, parts.headers.get(BFF_CANARY))?;
    let path = route.downstream_path(parts.uri.path(), parts.uri.query());
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    let headers = forwarded_headers(parts.headers, peer);
    let mut response = side
        .target
        .forward(parts.method, path, headers, body, &context)
        .await?;
    strip_hop_by_hop(response.headers_mut());
    response.extensions_mut().insert(PassedThrough);
    Ok(response)
}

/// The client's headers as the service gets them: without the hop-by-hop
/// ones (the server's hygiene removed those, and forged `X-Auth-*`), the
/// credentials (the service gets the verified identity as `X-Auth-*`),
/// `Host` (the service's own is sent) and `BFF-Canary`; with
/// `X-Forwarded-For` extended by the peer, and `X-Forwarded-Proto` and
/// `X-Forwarded-Host` set unless a proxy in front set them.
fn forwarded_headers(mut headers: HeaderMap, peer: Option<SocketAddr>) -> HeaderMap {
    let host = headers.remove(header::HOST);
    for credential in [
        header::AUTHORIZATION,
        header::COOKIE,
        API_KEY_HEADER,
        BFF_CANARY,
    ] {
        headers.remove(credential);
    }
    if let Some(peer) = peer {
        let chain = match headers.get(X_FORWARDED_FOR).map(HeaderValue::to_str) {
            Some(Ok(earlier)) => format!("{earlier}, {}", peer.ip()),
            _ => peer.ip().to_string(),
        };
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

    #[test]
    fn credentials_and_host_stay_here_and_the_forwarding_chain_grows() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("api.example.com"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        headers.insert(header::COOKIE, HeaderValue::from_static("session=t"));
        headers.insert(API_KEY_HEADER, HeaderValue::from_static("k"));
        headers.insert(BFF_CANARY, HeaderValue::from_static("products-v2"));
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.7"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/csv"));
        let forwarded = forwarded_headers(headers, Some(SocketAddr::from(([10, 0, 0, 2], 5000))));
        for gone in [
            header::HOST,
            header::AUTHORIZATION,
            header::COOKIE,
            API_KEY_HEADER,
            BFF_CANARY,
        ] {
            assert!(!forwarded.contains_key(&gone), "{gone}");
        }
        assert_eq!(forwarded[X_FORWARDED_FOR], "203.0.113.7, 10.0.0.2");
        assert_eq!(forwarded[X_FORWARDED_PROTO], "http");
        assert_eq!(forwarded[X_FORWARDED_HOST], "api.example.com");
        assert_eq!(forwarded[header::ACCEPT], "text/csv");
    }

    #[test]
    fn a_proxy_in_front_keeps_its_scheme_and_host() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("10.0.0.9"));
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        headers.insert(
            X_FORWARDED_HOST,
            HeaderValue::from_static("api.example.com"),
        );
        let forwarded = forwarded_headers(headers, None);
        assert_eq!(forwarded[X_FORWARDED_PROTO], "https");
        assert_eq!(forwarded[X_FORWARDED_HOST], "api.example.com");
        assert!(!forwarded.contains_key(X_FORWARDED_FOR));
    }
}
