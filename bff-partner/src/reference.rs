//! The API reference at `/v1/docs`, when `[partner] docs = true` (devstack
//! turns it on): Swagger UI over `/v1/openapi.json`, for people reading the
//! contract.
//!
//! Its files are built into the binary (`bff-partner/reference/`, licences
//! in `bff-partner/reference/LICENSES.md`), so the page works where no CDN
//! can be reached. The page needs no credential; its Content-Security-Policy
//! allows only this origin's scripts and requests, and Swagger UI's inline
//! styles and `data:` images.

use axum::Router;
use gateway_core::server::pages::{Asset, BuiltInPage};

/// The page's route, and its files'.
pub(crate) const PAGE: &str = "/v1/docs";
pub(crate) const FILES: &str = "/v1/docs/{file}";

const REFERENCE: BuiltInPage = BuiltInPage {
    what: "reference file",
    html: include_bytes!("../reference/index.html"),
    files: &[
        Asset::new(
            "swagger-ui-bundle.js",
            include_bytes!("../reference/swagger-ui-bundle.js"),
        ),
        Asset::new(
            "swagger-ui.css",
            include_bytes!("../reference/swagger-ui.css"),
        ),
        Asset::new(
            "reference-init.js",
            include_bytes!("../reference/reference-init.js"),
        ),
        Asset::new(
            "reference-page.css",
            include_bytes!("../reference/reference-page.css"),
        ),
    ],
    policy: "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

/// The page and its files.
pub(crate) fn routes() -> Router {
    REFERENCE.routes(PAGE, FILES)
}
