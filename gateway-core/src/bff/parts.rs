//! What a BFF is built from at start.

use crate::{
    clock::Clock,
    downstream::Downstreams,
    idempotency::IdempotencyLayer,
    lifecycle::{Readiness, Shutdown},
    observability::Telemetry,
    stores::SharedStores,
};

/// The parts a BFF's routes and layers are built from, handed to
/// [`super::Bff::routes`] and [`super::Bff::layers`] once, at start.
#[derive(Debug)]
pub struct BffParts {
    pub(super) downstreams: Downstreams,
    pub(super) telemetry: Telemetry,
    pub(super) readiness: Readiness,
    pub(super) shutdown: Shutdown,
    pub(super) stores: SharedStores,
    pub(super) idempotency: IdempotencyLayer,
    pub(super) clock: Clock,
}

impl BffParts {
    /// The clients of the services the BFF calls ([`super::Bff::SERVICES`]).
    pub fn downstreams(&self) -> &Downstreams {
        &self.downstreams
    }

    /// The metrics registry: register the BFF's own metrics here, at start.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// What `/readyz` reports: add a gate for anything the BFF must have
    /// before it takes traffic (a warm cache, a loaded document).
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// The drain signal: background tasks of the BFF stop when it triggers.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// The process's shared stores.
    pub fn stores(&self) -> &SharedStores {
        &self.stores
    }

    /// The route layer that makes a route's requests idempotent
    /// (`Idempotency-Key`), over the records of `[idempotency]`: in Redis
    /// when the process has one, else in process.
    pub fn idempotency(&self) -> &IdempotencyLayer {
        &self.idempotency
    }

    /// The time of day, for calendar rules (a route's sunset date): the
    /// system's, or the one a test gave [`super::start_at`].
    pub fn clock(&self) -> &Clock {
        &self.clock
    }
}
