//! The admin listener: `/healthz`, `/readyz` and `/metrics`, and the admin
//! routes of other concerns (the response cache's `DELETE /cache/tags/{tag}`).
//!
//! It listens on its own port, which is never exposed publicly. `/healthz`
//! answers 200 while the process runs; `/readyz` answers 200 only when every
//! readiness gate is open (keys loaded, Redis reachable or fallback active...)
//! and the process is not draining, so a load balancer stops sending traffic
//! the moment a drain starts.

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;

use crate::{error::ProblemLayer, lifecycle::Readiness, observability::Telemetry};

#[derive(Clone)]
struct AdminState {
    readiness: Readiness,
    telemetry: Telemetry,
}

/// The admin routes, `others` included; their errors are problem+json.
pub(crate) fn router(readiness: Readiness, telemetry: Telemetry, others: Router) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AdminState {
            readiness,
            telemetry,
        })
        .merge(others.layer(ProblemLayer))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 when ready; else 503 naming each closed gate in `waiting_for`, and
/// in `reasons` why, for the gates whose owner said.
async fn readyz(State(state): State<AdminState>) -> Response {
    let pending = state.readiness.waiting_for();
    if pending.is_empty() {
        return (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response();
    }
    let names: Vec<&str> = pending.iter().map(|pending| pending.name).collect();
    let reasons: serde_json::Map<String, serde_json::Value> = pending
        .into_iter()
        .filter_map(|pending| Some((pending.name.to_owned(), pending.reason?.into())))
        .collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "not_ready", "waiting_for": names, "reasons": reasons })),
    )
        .into_response()
}

async fn metrics(State(state): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        state.telemetry.encode(),
    )
        .into_response()
}
