//! Conditional answers: a strong `ETag` on every page a route serves, `304
//! Not Modified` when the client already holds it, and the route's
//! `Cache-Control`.
//!
//! [`ConditionalLayer`] is a route layer. A `GET` or `HEAD` answered `200`
//! with a body its handler rendered whole (a page's JSON) gets an `ETag`
//! made from the body's bytes (the first 16 bytes of their SHA-256, in hex)
//! and the route's `Cache-Control`. When the request's `If-None-Match`
//! names that tag (weak comparison, RFC 9110 §13.1.2), the answer is a `304`
//! with the same validators and no body: the page is assembled and
//! serialised once to know its tag, never again to send it. Both carry
//! `Vary: Accept-Encoding`, since the server may compress the page.
//!
//! A compressed answer is another representation, so the server stack
//! appends the coding to its tag (`"3f…9a-br"`, as Apache does; see
//! [`tag_with_coding`]), and this layer reads such a tag back as the page's
//! own. Errors keep no validator and no `Cache-Control` of the route's.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::Response,
};
use http_body_util::BodyExt;
use tower::{Layer, Service};

/// Content codings whose answers carry the tag with the coding appended.
const CODINGS: [&str; 3] = ["br", "gzip", "zstd"];

/// Tags pages and answers conditional requests; see the module docs.
#[derive(Debug, Clone)]
pub struct ConditionalLayer {
    cache_control: HeaderValue,
}

impl ConditionalLayer {
    /// Pages of the route carry `cache_control`, for example
    /// `private, max-age=30, stale-while-revalidate=60`.
    pub fn new(cache_control: &'static str) -> Self {
        Self {
            cache_control: HeaderValue::from_static(cache_control),
        }
    }
}

impl<S> Layer<S> for ConditionalLayer {
    type Service = Conditional<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Conditional {
            inner,
            cache_control: self.cache_control.clone(),
        }
    }
}

/// The service of [`ConditionalLayer`].
#[derive(Debug, Clone)]
pub struct Conditional<S> {
    inner: S,
    cache_control: HeaderValue,
}

impl<S> Service<Request> for Conditional<S>
where
    S: Service<Request, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let conditional = matches!(*request.method(), Method::GET | Method::HEAD);
        let if_none_match = request.headers().get(header::IF_NONE_MATCH).cloned();
        let cache_control = self.cache_control.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            if !conditional || response.status() != StatusCode::OK {
                return Ok(response);
            }
            let (mut parts, body) = response.into_parts();
            // A handler's page is one buffer already: collecting it copies nothing.
            let bytes = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                // A body that fails mid-way is the same failure untagged.
                Err(error) => {
                    tracing::debug!(%error, "a page's body failed before it could be tagged");
                    return Ok(Response::from_parts(
                        parts,
                        Body::new(http_body_util::Empty::new()),
                    ));
                }
            };
            let etag = etag_of(&bytes);
            parts.headers.insert(header::ETAG, etag.clone());
            parts.headers.insert(header::CACHE_CONTROL, cache_control);
            // The server may compress the page: a 304 says so as its 200 would.
            if !parts.headers.get_all(header::VARY).iter().any(|vary| {
                vary.to_str().is_ok_and(|vary| {
                    vary.split(',')
                        .any(|name| name.trim().eq_ignore_ascii_case("accept-encoding"))
                })
            }) {
                parts
                    .headers
                    .append(header::VARY, HeaderValue::from_static("accept-encoding"));
            }
            if let Some(held) = if_none_match.and_then(|tags| held_tag(&tags, &etag)) {
                // The tag of the representation the client holds (`…-br`).
                parts.headers.insert(header::ETAG, held);
                parts.status = StatusCode::NOT_MODIFIED;
                for representation in [
                    header::CONTENT_TYPE,
                    header::CONTENT_LENGTH,
                    header::CONTENT_ENCODING,
                ] {
                    parts.headers.remove(representation);
                }
                return Ok(Response::from_parts(parts, Body::empty()));
            }
            Ok(Response::from_parts(parts, Body::from(bytes)))
        })
    }
}

/// The strong tag of a page whose body is `bytes`.
fn etag_of(bytes: &[u8]) -> HeaderValue {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for byte in &digest.as_ref()[..16] {
        tag.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        tag.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    tag.push('"');
    HeaderValue::try_from(tag).expect("quoted hex is a valid header value")
}

/// The tag of `If-None-Match` (`*`, or a list of tags, weak or strong)
/// that names `etag`, or `etag` with a content coding appended: the
/// validator of the representation the client holds (`etag` for `*`).
fn held_tag(if_none_match: &HeaderValue, etag: &HeaderValue) -> Option<HeaderValue> {
    let tags = if_none_match.to_str().ok()?;
    let ours = etag.to_str().ok().and_then(opaque)?;
    tags.split(',').map(str::trim).find_map(|tag| {
        if tag == "*" {
            return Some(etag.clone());
        }
        let strong = tag.strip_prefix("W/").unwrap_or(tag);
        opaque(strong)
            .filter(|theirs| without_coding(theirs) == ours)
            .and_then(|_| HeaderValue::from_str(strong).ok())
    })
}

/// The opaque part of `"…"`, quotes removed.
fn opaque(tag: &str) -> Option<&str> {
    tag.strip_prefix('"')?.strip_suffix('"')
}

/// `tag` without a `-br`, `-gzip` or `-zstd` suffix.
fn without_coding(tag: &str) -> &str {
    CODINGS
        .iter()
        .find_map(|coding| tag.strip_suffix(coding)?.strip_suffix('-'))
        .unwrap_or(tag)
}

/// Appends the answer's content coding to its strong tag (`"…"` becomes
/// `"…-br"`): a compressed answer is another representation, and a strong
/// validator names one. The server stack calls it on every answer.
pub fn tag_with_coding(headers: &mut HeaderMap) {
    let Some(coding) = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|coding| coding.to_str().ok())
        .filter(|coding| CODINGS.contains(coding))
    else {
        return;
    };
    let Some(tag) = headers
        .get(header::ETAG)
        .and_then(|tag| tag.to_str().ok())
        .and_then(opaque)
    else {
        return;
    };
    if let Ok(tagged) = HeaderValue::try_from(format!("\"{tag}-{coding}\"")) {
        headers.insert(header::ETAG, tagged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_is_the_bodys_and_strong() {
        let tag = etag_of(b"{\"id\":1}");
        assert_eq!(tag, etag_of(b"{\"id\":1}"));
        assert_ne!(tag, etag_of(b"{\"id\":2}"));
        let text = tag.to_str().expect("ascii");
        assert!(text.starts_with('"') && text.ends_with('"') && text.len() == 34);
    }

    #[test]
    fn if_none_match_compares_weakly_and_sees_through_codings() {
        let tag = etag_of(b"page");
        let opaque = tag.to_str().expect("ascii").trim_matches('"').to_owned();
        let held = |value: String| {
            held_tag(&HeaderValue::try_from(value).expect("valid"), &tag)
                .map(|held| held.to_str().expect("ascii").to_owned())
        };
        let quoted = format!("\"{opaque}\"");
        assert_eq!(held(quoted.clone()), Some(quoted.clone()));
        assert_eq!(held(format!("W/{quoted}")), Some(quoted.clone()));
        assert_eq!(
            held(format!("\"other\", \"{opaque}-br\"")),
            Some(format!("\"{opaque}-br\""))
        );
        assert_eq!(
            held(format!("\"{opaque}-gzip\"")),
            Some(format!("\"{opaque}-gzip\""))
        );
        assert_eq!(held("*".to_owned()), Some(quoted));
        assert_eq!(held(format!("\"{opaque}-deflate\"")), None);
        assert_eq!(held("\"other\"".to_owned()), None);
        assert_eq!(held(opaque.clone()), None, "unquoted is no tag");
    }

    #[test]
    fn a_compressed_answer_carries_its_coding_in_the_tag() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, HeaderValue::from_static("\"abc\""));
        tag_with_coding(&mut headers);
        assert_eq!(headers[header::ETAG], "\"abc\"", "identity keeps the tag");
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        tag_with_coding(&mut headers);
        assert_eq!(headers[header::ETAG], "\"abc-br\"");
        headers.insert(header::ETAG, HeaderValue::from_static("W/\"weak\""));
        tag_with_coding(&mut headers);
        assert_eq!(
            headers[header::ETAG],
            "W/\"weak\"",
            "weak tags stay as they are"
        );
    }
}
