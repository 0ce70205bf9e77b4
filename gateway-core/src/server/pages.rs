//! Pages of files built into the binary: a BFF's in-browser tools
//! (bff-mobile's GraphiQL, bff-partner's API reference), served by the BFF
//! itself so they work where no CDN can be reached.
//!
//! A [`BuiltInPage`] is an HTML page at its route and the files it loads at
//! `{route}/{file}`, each with its media type, all under the page's own
//! Content-Security-Policy (which replaces the API's `default-src 'none'`)
//! and cached for an hour: the files change with the binary only. An
//! unknown file is a 404 problem.

use axum::{
    Router,
    extract::Path,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::Error;

/// The files change with the binary only: kept an hour, then revalidated.
const CACHE: HeaderValue = HeaderValue::from_static("public, max-age=3600");

/// One file a page loads.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Its name under the page's route.
    pub name: &'static str,
    /// Its `Content-Type`.
    pub media_type: &'static str,
    /// Its bytes (`include_bytes!`).
    pub bytes: &'static [u8],
}

impl Asset {
    /// The file `name` holding `bytes`, its media type told by its
    /// extension (`.js`, `.css`, `.json`, `.svg`, `.png`; else bytes).
    pub const fn new(name: &'static str, bytes: &'static [u8]) -> Self {
        const TYPES: [(&str, &str); 5] = [
            (".js", "text/javascript; charset=utf-8"),
            (".css", "text/css; charset=utf-8"),
            (".json", "application/json"),
            (".svg", "image/svg+xml"),
            (".png", "image/png"),
        ];
        let mut media_type = "application/octet-stream";
        let mut index = 0;
        while index < TYPES.len() {
            if ends_with(name, TYPES[index].0) {
                media_type = TYPES[index].1;
            }
            index += 1;
        }
        Self {
            name,
            media_type,
            bytes,
        }
    }
}

/// Whether `text` ends with `suffix` (`str::ends_with` is not `const`).
const fn ends_with(text: &str, suffix: &str) -> bool {
    let (text, suffix) = (text.as_bytes(), suffix.as_bytes());
    if suffix.len() > text.len() {
        return false;
    }
    let mut index = 0;
    while index < suffix.len() {
        if text[text.len() - suffix.len() + index] != suffix[index] {
            return false;
        }
        index += 1;
    }
    true
}

/// A page and its files; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct BuiltInPage {
    /// What the page is, in the 404 of an unknown file (`GraphiQL file`).
    pub what: &'static str,
    /// The page's HTML.
    pub html: &'static [u8],
    /// The files it loads.
    pub files: &'static [Asset],
    /// Its Content-Security-Policy.
    pub policy: &'static str,
}

impl BuiltInPage {
    /// The page at `route` and its files at `files_route`
    /// (`"{route}/{file}"`, spelt out so it can be listed among a BFF's
    /// public routes).
    pub fn routes(self, route: &str, files_route: &str) -> Router {
        Router::new()
            .route(
                route,
                get(move || async move { self.served("text/html; charset=utf-8", self.html) }),
            )
            .route(
                files_route,
                get(move |Path(name): Path<String>| async move { self.file(name) }),
            )
    }

    fn file(&self, name: String) -> Result<Response, Error> {
        let asset = self
            .files
            .iter()
            .find(|asset| asset.name == name)
            .ok_or(Error::NotFound {
                resource: self.what,
                id: name,
            })?;
        Ok(self.served(asset.media_type, asset.bytes))
    }

    fn served(&self, media_type: &'static str, bytes: &'static [u8]) -> Response {
        (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(media_type)),
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(self.policy),
                ),
                (header::CACHE_CONTROL, CACHE),
            ],
            bytes,
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, extract::Request, http::StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    const PAGE: BuiltInPage = BuiltInPage {
        what: "tool file",
        html: b"<!doctype html><script src=\"/tool/tool.js\"></script>",
        files: &[Asset::new("tool.js", b"console.log('tool');")],
        policy: "default-src 'none'; script-src 'self'",
    };

    async fn get(path: &str) -> (StatusCode, http::HeaderMap, Vec<u8>) {
        let response = PAGE
            .routes("/tool", "/tool/{file}")
            .oneshot(Request::get(path).body(Body::empty()).expect("a request"))
            .await
            .expect("answered");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("a body").to_bytes().to_vec();
        (parts.status, parts.headers, body)
    }

    #[tokio::test]
    async fn the_page_and_its_files_are_served_under_the_pages_policy() {
        let (status, headers, body) = get("/tool").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], PAGE.policy);
        assert_eq!(body, PAGE.html);
        let (status, headers, body) = get("/tool/tool.js").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=3600");
        assert_eq!(body, b"console.log('tool');");
        let (status, _, _) = get("/tool/secrets.env").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_files_media_type_follows_its_extension() {
        assert_eq!(
            Asset::new("a.min.css", b"").media_type,
            "text/css; charset=utf-8"
        );
        assert_eq!(
            Asset::new("a.js", b"").media_type,
            "text/javascript; charset=utf-8"
        );
        assert_eq!(Asset::new("js", b"").media_type, "application/octet-stream");
        assert_eq!(Asset::new("a.json", b"").media_type, "application/json");
    }
}
