//! The admin listener: `/healthz`, `/readyz` and `/metrics`.
//!
//! It listens on its own port, which is never exposed publicly. `/healthz`
//! answers 200 while the process runs; `/readyz` answers 200 only when every
//! readiness gate is open (keys loaded, Redis reachable or fallback active...)
//! and the process is not draining, so a load balancer stops sending traffic
//! the moment a drain starts.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;

use crate::observability::Telemetry;

/// What `/readyz` reports: a set of named gates and the draining flag.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    inner: Arc<ReadinessInner>,
}

#[derive(Debug, Default)]
struct ReadinessInner {
    draining: AtomicBool,
    /// Gates by name; registered at start-up, read per probe.
    gates: Mutex<BTreeMap<&'static str, Arc<AtomicBool>>>,
}

/// One condition readiness waits for, opened by the module that owns it.
#[derive(Debug, Clone)]
pub struct ReadinessGate(Arc<AtomicBool>);

impl ReadinessGate {
    /// Marks the condition met (`true`) or lost (`false`).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }
}

impl Readiness {
    /// Registers a gate, initially closed; `/readyz` stays 503 until it opens.
    pub fn gate(&self, name: &'static str) -> ReadinessGate {
        let flag = Arc::new(AtomicBool::new(false));
        self.inner
            .gates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name, flag.clone());
        ReadinessGate(flag)
    }

    /// Marks the process as draining: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::Release);
    }

    /// Whether the process should receive traffic.
    pub fn is_ready(&self) -> bool {
        self.pending().is_empty()
    }

    /// What keeps the process from being ready; empty when it is ready.
    pub fn pending(&self) -> Vec<&'static str> {
        let mut pending = Vec::new();
        if self.inner.draining.load(Ordering::Acquire) {
            pending.push("draining");
        }
        let gates = self
            .inner
            .gates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pending.extend(
            gates
                .iter()
                .filter(|(_, ready)| !ready.load(Ordering::Acquire))
                .map(|(name, _)| *name),
        );
        pending
    }
}

#[derive(Clone)]
struct AdminState {
    readiness: Readiness,
    telemetry: Telemetry,
}

/// The admin routes.
pub(crate) fn router(readiness: Readiness, telemetry: Telemetry) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AdminState {
            readiness,
            telemetry,
        })
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let pending = state.readiness.pending();
    if pending.is_empty() {
        (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "waiting_for": pending })),
        )
            .into_response()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_gate_is_open_and_not_draining() {
        let readiness = Readiness::default();
        assert!(readiness.is_ready());
        let keys = readiness.gate("signing_keys");
        assert_eq!(readiness.pending(), vec!["signing_keys"]);
        keys.set(true);
        assert!(readiness.is_ready());
        readiness.start_draining();
        assert_eq!(readiness.pending(), vec!["draining"]);
    }
}
