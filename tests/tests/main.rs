//! The platform's end-to-end tests, one module per concern, linked into one
//! test binary: every module shares the harness (`platform_tests`) and the
//! whole dependency graph, which fourteen binaries each linked again.
//!
//! nextest runs each test in its own process, so no test sees another's
//! global state; `cargo test` runs them as threads of one process.

mod auth;
mod cache;
mod configs;
mod degradation;
mod encoding;
mod fleet;
mod mobile;
mod mobile_screens;
mod opaque;
mod otlp;
mod partner;
mod passthrough;
mod process;
mod public_tls;
mod ratelimit;
mod ratelimit_redis;
mod repository;
mod resilience;
mod seams;
mod signed_identity;
mod slice;
mod tls;
mod web;
