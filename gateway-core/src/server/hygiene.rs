//! Request hygiene, before anything routes or decides on a request.
//!
//! - exactly one valid `Host` header (none or two is a 400);
//! - every inbound `X-Auth-*` header is removed: only the gateway sets the
//!   identity headers services trust;
//! - hop-by-hop headers (`Connection` and every header it names, `TE`,
//!   `Keep-Alive`, `Upgrade`, `Proxy-Connection`, `Trailer`,
//!   `Transfer-Encoding`, `Proxy-Authorization`, `Proxy-Authenticate`) are
//!   removed, so they never reach a handler or a service;
//! - the path is percent-decoded once and normalised (dot segments resolved,
//!   duplicate slashes collapsed), then re-encoded canonically. Encoded
//!   slashes or backslashes, NUL and other control characters, invalid
//!   escapes or UTF-8, and `..` above the root are rejected with 400.
//!
//! The request continues with the normalised URI, so routing, authorisation
//! and the path forwarded downstream all see the same path: there is no
//! second decoding anywhere that could disagree with the first.
//!
//! Hand-written because no maintained layer does this: tower-http's
//! `NormalizePath` only trims trailing slashes and decodes nothing.

use std::{
    borrow::Cow,
    task::{Context, Poll},
};

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};
use futures_util::future::{Either, Ready, ready};
use http::{HeaderMap, HeaderName, HeaderValue, Uri, header, uri::PathAndQuery};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use tower::{Layer, Service};

use crate::{Error, identity::IDENTITY_HEADER_PREFIX};

/// Bytes re-encoded in a path segment: everything outside RFC 3986 `pchar`.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Headers that only concern one connection and are never passed on.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathError {
    /// Not an origin-form path starting with `/`.
    #[error("the path must start with '/'")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("the path has an invalid percent-escape")]
    InvalidEscape,
    /// The decoded path is not UTF-8.
    #[error("the path is not valid UTF-8")]
    InvalidUtf8,
    /// An encoded `/` or `\`, which would change the path's structure.
    #[error("the path has an encoded slash or a backslash")]
    EncodedSeparator,
    /// NUL or another control character.
    #[error("the path has a control character")]
    ControlCharacter,
    /// `..` above the root.
    #[error("the path climbs above the root")]
    AboveRoot,
}

/// Percent-decodes and normalises `raw` (the path part of a URI), returning
/// the canonical encoded path. Paths that are already canonical are returned
/// borrowed, without allocating.
pub(crate) fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_canonical(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    let raw_segments: Vec<&str> = raw[1..].split('/').collect();
    let last_index = raw_segments.len() - 1;
    let mut ends_in_directory = false;
    let mut segments: Vec<String> = Vec::with_capacity(raw_segments.len());
    for (index, raw_segment) in raw_segments.into_iter().enumerate() {
        let segment = decode_segment(raw_segment)?;
        let is_directory = match segment.as_str() {
            "" | "." => true,
            ".." => {
                segments.pop().ok_or(PathError::AboveRoot)?;
                true
            }
            _ => {
                segments.push(segment);
                false
            }
        };
        if index == last_index {
            ends_in_directory = is_directory;
        }
    }
    let mut path = String::with_capacity(raw.len());
    for segment in &segments {
        path.push('/');
        path.extend(utf8_percent_encode(segment, SEGMENT));
    }
    if path.is_empty() || ends_in_directory {
        path.push('/');
    }
    Ok(Cow::Owned(path))
}

/// True when no byte needs decoding or re-encoding and no segment is empty
/// (but the last, for a trailing slash) or a dot segment: the common case,
/// checked without allocating.
fn is_canonical(raw: &str) -> bool {
    let kept_as_is =
        |b: u8| b == b'/' || b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b);
    if !raw.bytes().all(kept_as_is) {
        return false;
    }
    let mut segments = raw[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let is_last = segments.peek().is_none();
        if (segment.is_empty() && !is_last) || segment == "." || segment == ".." {
            return false;
        }
    }
    true
}

fn decode_segment(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    for (index, &byte) in bytes.iter().enumerate() {
        match byte {
            b'%' => {
                let valid = bytes
                    .get(index + 1..index + 3)
                    .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit));
                if !valid {
                    return Err(PathError::InvalidEscape);
                }
            }
            b'\\' => return Err(PathError::EncodedSeparator),
            _ => {}
        }
    }
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| PathError::InvalidUtf8)?;
    for character in decoded.chars() {
        if character == '/' || character == '\\' {
            return Err(PathError::EncodedSeparator);
        }
        if character.is_control() {
            return Err(PathError::ControlCharacter);
        }
    }
    Ok(decoded.into_owned())
}

/// Removes every `X-Auth-*` header: those carry the verified identity to
/// services and only the gateway may set them.
pub(crate) fn strip_identity_headers(headers: &mut HeaderMap) {
    remove_headers_where(headers, |name| {
        name.as_str().starts_with(IDENTITY_HEADER_PREFIX)
    });
}

/// Removes `Connection`, the headers it names, and the other hop-by-hop headers.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    remove_headers_where(headers, |name| {
        HOP_BY_HOP.contains(name) || named.contains(name)
    });
}

/// Removes every header whose name is `doomed`. A message carries a
/// handful of headers: reading their names once is cheaper than a hashed
/// removal for each name that might be there, which mostly finds nothing.
pub fn remove_headers_where(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|name| doomed(name))
        .cloned()
        .collect();
    for name in present {
        headers.remove(name);
    }
}

/// An HTTP/2 request names its host in `:authority` (RFC 9113 §8.3.1),
/// which hyper puts in the URI, and usually sends no `Host`: the host is
/// copied into `Host`, so that every later layer reads it from one place
/// whatever the protocol.
fn host_from_authority(request: &mut Request) {
    if request.version() != http::Version::HTTP_2 || request.headers().contains_key(header::HOST) {
        return;
    }
    let authority = request
        .uri()
        .authority()
        .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok());
    if let Some(authority) = authority {
        request.headers_mut().insert(header::HOST, authority);
    }
}

fn check_host(request: &Request) -> Result<(), Error> {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(host), None) => host,
        (None, _) => return Err(Error::BadRequest("the Host header is missing".to_owned())),
        (Some(_), Some(_)) => {
            return Err(Error::BadRequest("more than one Host header".to_owned()));
        }
    };
    let authority = host
        .to_str()
        .ok()
        .and_then(|text| text.parse::<http::uri::Authority>().ok())
        .filter(|authority| {
            authority.as_str().len() == host.len() && !authority.as_str().contains('@')
        })
        .ok_or_else(|| Error::BadRequest("the Host header is not a valid host".to_owned()))?;
    let disagrees = request
        .uri()
        .authority()
        .is_some_and(|target| !target.as_str().eq_ignore_ascii_case(authority.as_str()));
    if disagrees {
        return Err(Error::BadRequest(
            "the Host header disagrees with the request target".to_owned(),
        ));
    }
    Ok(())
}

fn normalize_uri(uri: &Uri) -> Result<Option<Uri>, Error> {
    let path = normalize_path(uri.path()).map_err(|error| Error::BadRequest(error.to_string()))?;
    let Cow::Owned(path) = path else {
        return Ok(None);
    };
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        PathAndQuery::try_from(path_and_query)
            .map_err(|_| Error::BadRequest("the path cannot be normalised".to_owned()))?,
    );
    Uri::from_parts(parts)
        .map(Some)
        .map_err(|_| Error::BadRequest("the path cannot be normalised".to_owned()))
}

/// Applies the hygiene rules of the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HygieneLayer;

impl<S> Layer<S> for HygieneLayer {
    type Service = Hygiene<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Hygiene { inner }
    }
}

/// The service of [`HygieneLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Hygiene<S> {
    inner: S,
}

impl<S> Service<Request> for Hygiene<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        host_from_authority(&mut request);
        let checked = check_host(&request).and_then(|()| normalize_uri(request.uri()));
        match checked {
            Ok(normalized) => {
                if let Some(uri) = normalized {
                    *request.uri_mut() = uri;
                }
                strip_hop_by_hop(request.headers_mut());
                strip_identity_headers(request.headers_mut());
                Either::Left(self.inner.call(request))
            }
            Err(error) => Either::Right(ready(Ok(error.into_response()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(raw: &str) -> Result<String, PathError> {
        normalize_path(raw).map(Cow::into_owned)
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for path in [
            "/",
            "/api/product-page/42",
            "/v1/products/7",
            "/openapi.json",
            "/a/b.c/d",
        ] {
            assert!(
                matches!(normalize_path(path), Ok(Cow::Borrowed(_))),
                "{path}"
            );
        }
    }

    #[test]
    fn dot_segments_and_duplicate_slashes_are_resolved() {
        assert_eq!(
            normalized("/api//product-page/./42").as_deref(),
            Ok("/api/product-page/42")
        );
        assert_eq!(
            normalized("/api/x/../product-page/42").as_deref(),
            Ok("/api/product-page/42")
        );
        assert_eq!(
            normalized("/api/%2e%2e/v1/products/1").as_deref(),
            Ok("/v1/products/1")
        );
        assert_eq!(normalized("/api/.%2E/v1").as_deref(), Ok("/v1"));
        assert_eq!(normalized("//").as_deref(), Ok("/"));
        assert_eq!(normalized("/a/b/..").as_deref(), Ok("/a/"));
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_kept_encoded() {
        assert_eq!(
            normalized("/products/%41%42").as_deref(),
            Ok("/products/AB")
        );
        assert_eq!(
            normalized("/search/caf%C3%A9").as_deref(),
            Ok("/search/caf%C3%A9")
        );
        assert_eq!(normalized("/a%20b").as_deref(), Ok("/a%20b"));
        // Decoded once: a double-encoded dot stays a literal "%2e" segment.
        assert_eq!(
            normalized("/a/%252e%252e/b").as_deref(),
            Ok("/a/%252e%252e/b")
        );
    }

    #[test]
    fn structure_changing_and_invalid_paths_are_rejected() {
        assert_eq!(normalized("/api%2fadmin"), Err(PathError::EncodedSeparator));
        assert_eq!(normalized("/api%2Fadmin"), Err(PathError::EncodedSeparator));
        assert_eq!(normalized("/api%5cadmin"), Err(PathError::EncodedSeparator));
        assert_eq!(normalized("/api\\admin"), Err(PathError::EncodedSeparator));
        assert_eq!(normalized("/api%00"), Err(PathError::ControlCharacter));
        assert_eq!(normalized("/api%0a"), Err(PathError::ControlCharacter));
        assert_eq!(normalized("/api%zz"), Err(PathError::InvalidEscape));
        assert_eq!(normalized("/api%2"), Err(PathError::InvalidEscape));
        assert_eq!(normalized("/api%ff"), Err(PathError::InvalidUtf8));
        assert_eq!(normalized("/../etc/passwd"), Err(PathError::AboveRoot));
        assert_eq!(normalized("/a/%2e%2e/%2e%2e/b"), Err(PathError::AboveRoot));
        assert_eq!(normalized("*"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            "keep-alive, X-Secret-Hop".parse().expect("value"),
        );
        headers.insert("x-secret-hop", "1".parse().expect("value"));
        headers.insert(header::TE, "trailers".parse().expect("value"));
        headers.insert(header::UPGRADE, "websocket".parse().expect("value"));
        headers.insert("proxy-connection", "keep-alive".parse().expect("value"));
        headers.insert(header::ACCEPT, "application/json".parse().expect("value"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key(header::ACCEPT));
    }

    #[test]
    fn identity_headers_from_clients_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert("x-auth-tenant", "evil".parse().expect("value"));
        headers.append("X-Auth-Subject", "admin".parse().expect("value"));
        headers.insert("x-auth-scopes", "orders:write".parse().expect("value"));
        headers.insert("x-authorization-hint", "kept".parse().expect("value"));
        strip_identity_headers(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
    }

    #[test]
    fn host_must_be_single_and_valid() {
        let request = |hosts: &[&str]| {
            let mut builder = Request::builder().uri("/x");
            for host in hosts {
                builder = builder.header(header::HOST, *host);
            }
            builder.body(axum::body::Body::empty()).expect("request")
        };
        assert!(check_host(&request(&["example.com"])).is_ok());
        assert!(check_host(&request(&["example.com:8080"])).is_ok());
        assert!(check_host(&request(&[])).is_err());
        assert!(check_host(&request(&["a.example", "b.example"])).is_err());
        assert!(check_host(&request(&["user@evil.example"])).is_err());
        assert!(check_host(&request(&["bad host"])).is_err());

        let mut http2 = http::Request::builder()
            .version(http::Version::HTTP_2)
            .uri("https://bff.example/api/x")
            .body(axum::body::Body::empty())
            .expect("a request");
        host_from_authority(&mut http2);
        assert_eq!(http2.headers()[header::HOST], "bff.example");
        assert!(
            check_host(&http2).is_ok(),
            "HTTP/2 names its host in :authority"
        );
    }
}
