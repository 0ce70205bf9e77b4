//! GraphiQL at `/graphiql`, when `[mobile] graphiql = true` (devstack turns
//! it on): the in-browser IDE for `/graphql`, for the app's developers.
//!
//! Its files are built into the binary (`bff-mobile/graphiql/`, licences in
//! `bff-mobile/graphiql/LICENSES.md`), so the page works where no CDN can be reached. The page
//! itself needs no credential; the queries it sends do: the bearer token
//! goes in GraphiQL's Headers tab. Its own Content-Security-Policy allows
//! only this origin's scripts (no inline script) and GraphiQL's inline
//! styles, fonts and images (`data:`).

use axum::{
    Router,
    extract::Path,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use gateway_core::Error;

/// The page's route, and its files' (`/graphiql/{file}`).
pub(crate) const PAGE: &str = "/graphiql";
pub(crate) const FILES: &str = "/graphiql/{file}";

/// What the page may load: this origin's scripts, styles and queries, and
/// the fonts and images GraphiQL inlines.
const POLICY: HeaderValue = HeaderValue::from_static(
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     font-src data:; img-src 'self' data:; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
);
/// The files change with the binary only: kept an hour, then revalidated.
const CACHE: HeaderValue = HeaderValue::from_static("public, max-age=3600");

/// Each file by name, with its media type.
const ASSETS: [(&str, &str, &[u8]); 6] = [
    (
        "graphiql-init.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../graphiql/graphiql-init.js"),
    ),
    (
        "graphiql-page.css",
        "text/css; charset=utf-8",
        include_bytes!("../graphiql/graphiql-page.css"),
    ),
    (
        "graphiql.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../graphiql/graphiql.min.js"),
    ),
    (
        "graphiql.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../graphiql/graphiql.min.css"),
    ),
    (
        "react.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../graphiql/react.production.min.js"),
    ),
    (
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../graphiql/react-dom.production.min.js"),
    ),
];

/// The page and its files.
pub(crate) fn routes() -> Router {
    Router::new()
        .route(
            PAGE,
            get(|| async {
                served(
                    "text/html; charset=utf-8",
                    include_bytes!("../graphiql/index.html"),
                )
            }),
        )
        .route(FILES, get(file))
}

async fn file(Path(name): Path<String>) -> Result<Response, Error> {
    let (_, media_type, bytes) =
        ASSETS
            .iter()
            .find(|(file, _, _)| *file == name)
            .ok_or(Error::NotFound {
                resource: "GraphiQL file",
                id: name,
            })?;
    Ok(served(media_type, bytes))
}

fn served(media_type: &'static str, bytes: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(media_type)),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::CACHE_CONTROL, CACHE),
        ],
        bytes,
    )
        .into_response()
}
