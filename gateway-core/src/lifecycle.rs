//! The life of a process: when it may take traffic, and when it must stop.
//!
//! [`Shutdown`] is the one drain signal of a process: SIGTERM or SIGINT
//! trigger it, every listener and background task waits on it. [`Readiness`]
//! is what `/readyz` reports: named gates that the concerns owning them open
//! (the JWKS once its keys are loaded, a shared store once it is reachable)
//! and the draining flag.
//!
//! This module depends on no other module of the crate, so every concern may
//! use it without creating a cycle.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::sync::watch;

/// Triggered once to start a graceful drain; every clone sees it.
#[derive(Debug, Clone)]
pub struct Shutdown {
    sender: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        Self {
            sender: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Starts the drain; later calls do nothing.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    /// Whether the drain has started.
    pub fn is_triggered(&self) -> bool {
        *self.sender.borrow()
    }

    /// Completes once the drain has started.
    pub async fn triggered(&self) {
        let mut receiver = self.sender.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = receiver.wait_for(|triggered| *triggered).await;
    }

    /// Triggers on SIGTERM or SIGINT (Ctrl-C). A second signal exits the
    /// process at once, for an operator who does not want to wait.
    pub fn trigger_on_signals(&self) {
        let shutdown = self.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received, draining");
            shutdown.trigger();
            wait_for_signal().await;
            tracing::warn!("second shutdown signal, exiting without waiting for the drain");
            std::process::exit(130);
        });
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate =
            signal(SignalKind::terminate()).expect("SIGTERM handler can be installed");
        let mut interrupt =
            signal(SignalKind::interrupt()).expect("SIGINT handler can be installed");
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// What `/readyz` reports: a set of named gates and the draining flag.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    inner: Arc<ReadinessInner>,
}

#[derive(Debug, Default)]
struct ReadinessInner {
    draining: AtomicBool,
    /// Gates by name; registered at start-up, read per probe.
    gates: Mutex<BTreeMap<&'static str, Arc<GateState>>>,
}

#[derive(Debug, Default)]
struct GateState {
    ready: AtomicBool,
    /// Why it is closed, for an operator reading `/readyz`.
    reason: Mutex<Option<String>>,
}

/// One condition readiness waits for, opened by the module that owns it.
#[derive(Debug, Clone)]
pub struct ReadinessGate(Arc<GateState>);

impl ReadinessGate {
    /// Marks the condition met (`true`) or lost (`false`).
    pub fn set(&self, ready: bool) {
        self.0.ready.store(ready, Ordering::Release);
    }

    /// Whether the condition is met.
    pub fn is_open(&self) -> bool {
        self.0.ready.load(Ordering::Acquire)
    }

    /// Says why the gate is closed (shown by `/readyz` while it is).
    pub fn explain(&self, reason: impl Into<String>) {
        *self
            .0
            .reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason.into());
    }
}

/// What a process waits for before it is ready: a gate, and why, when its
/// owner said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The gate (`jwks`, `rate_limit_redis`), or `draining`.
    pub name: &'static str,
    /// Why it is closed.
    pub reason: Option<String>,
}

impl Readiness {
    /// Registers a gate, initially closed; `/readyz` stays 503 until it opens.
    pub fn gate(&self, name: &'static str) -> ReadinessGate {
        let state = Arc::new(GateState::default());
        self.inner
            .gates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name, state.clone());
        ReadinessGate(state)
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
        self.waiting_for()
            .into_iter()
            .map(|pending| pending.name)
            .collect()
    }

    /// What keeps the process from being ready, with the reasons given;
    /// empty when it is ready.
    pub fn waiting_for(&self) -> Vec<Pending> {
        let mut pending = Vec::new();
        if self.inner.draining.load(Ordering::Acquire) {
            pending.push(Pending {
                name: "draining",
                reason: None,
            });
        }
        let gates = self
            .inner
            .gates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pending.extend(
            gates
                .iter()
                .filter(|(_, gate)| !gate.ready.load(Ordering::Acquire))
                .map(|(name, gate)| Pending {
                    name,
                    reason: gate
                        .reason
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone(),
                }),
        );
        pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger() {
        let shutdown = Shutdown::new();
        let waiter = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move { shutdown.triggered().await })
        };
        assert!(!shutdown.is_triggered());
        shutdown.clone().trigger();
        waiter.await.expect("waiter completes");
        assert!(shutdown.is_triggered());
        shutdown.triggered().await;
    }

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

    #[test]
    fn a_closed_gate_says_why() {
        let readiness = Readiness::default();
        let redis = readiness.gate("rate_limit_redis");
        redis.explain("waiting for Redis");
        assert_eq!(
            readiness.waiting_for(),
            vec![Pending {
                name: "rate_limit_redis",
                reason: Some("waiting for Redis".to_owned())
            }]
        );
        redis.set(true);
        assert!(readiness.waiting_for().is_empty());
    }
}
