//! GraphiQL at `/graphiql`, when `[mobile] graphiql = true` (devstack turns
//! it on): the in-browser IDE for `/graphql`, for the app's developers.
//!
//! Its files are built into the binary (`bff-mobile/graphiql/`, licences in
//! `bff-mobile/graphiql/LICENSES.md`), so the page works where no CDN can be reached. The page
//! itself needs no credential; the queries it sends do: the bearer token
//! goes in GraphiQL's Headers tab. Its own Content-Security-Policy allows
//! only this origin's scripts (no inline script) and GraphiQL's inline
//! styles, fonts and images (`data:`).

use axum::Router;
use gateway_core::server::pages::{Asset, BuiltInPage};

/// The page's route, and its files' (`/graphiql/{file}`).
pub(crate) const PAGE: &str = "/graphiql";
pub(crate) const FILES: &str = "/graphiql/{file}";

/// The page: what it may load is this origin's scripts, styles and
/// queries, and the fonts and images GraphiQL inlines.
const GRAPHIQL: BuiltInPage = BuiltInPage {
    what: "GraphiQL file",
    html: include_bytes!("../graphiql/index.html"),
    files: &[
        Asset::new(
            "graphiql-init.js",
            include_bytes!("../graphiql/graphiql-init.js"),
        ),
        Asset::new(
            "graphiql-page.css",
            include_bytes!("../graphiql/graphiql-page.css"),
        ),
        Asset::new(
            "graphiql.min.js",
            include_bytes!("../graphiql/graphiql.min.js"),
        ),
        Asset::new(
            "graphiql.min.css",
            include_bytes!("../graphiql/graphiql.min.css"),
        ),
        Asset::new(
            "react.production.min.js",
            include_bytes!("../graphiql/react.production.min.js"),
        ),
        Asset::new(
            "react-dom.production.min.js",
            include_bytes!("../graphiql/react-dom.production.min.js"),
        ),
    ],
    policy: "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             font-src data:; img-src 'self' data:; connect-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

/// The page and its files.
pub(crate) fn routes() -> Router {
    GRAPHIQL.routes(PAGE, FILES)
}
