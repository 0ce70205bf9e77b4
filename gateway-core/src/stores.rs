//! Shared stores: state that must outlive one request and be seen by every
//! instance of a BFF.
//!
//! BFF instances are stateless; what the fleet must share (rate-limit
//! buckets, cached responses, idempotency records, persisted queries) lives
//! in Redis, behind one multiplexed connection per process opened at start.
//! [`SharedStores`] is where that connection is kept and how every concern
//! and every BFF reaches it: a BFF receives it in its parts
//! (`bff::BffParts::stores`), a concern takes it when it is built. A
//! concern that needs a store adds it here, with its readiness gate, so the
//! connection is opened once however many concerns use it.
//!
//! No concern uses a shared store yet, so a process holds none and needs no
//! Redis: the one-machine default.

/// The shared stores of one process; cheap to clone.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SharedStores {}
