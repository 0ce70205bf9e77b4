//! `Server-Timing` on every response: how long the whole request took and
//! each downstream part of it, so a client developer sees which backend
//! was slow (browsers show it in their network panel).
//!
//! The [`server_timing`] middleware gives each request a [`ServerTiming`] (in its
//! extensions, and in its [`crate::RequestContext`]); every downstream call
//! records one entry there, with a `desc` when it did not simply succeed
//! (`retried`, `timeout`, `circuit_open`...). On the way out the layer
//! writes them, after a `total` entry:
//!
//! ```text
//! Server-Timing: total;dur=12.4, products;dur=3.1, reviews;dur=11.0;desc="timeout"
//! ```
//!
//! A call dropped while still under way (by the request's deadline, or
//! because a required part failed first) is recorded as it is dropped,
//! with `desc="cancelled"`.

use std::{
    fmt::Write,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use axum::{extract::Request, middleware::Next, response::Response};
use http::{HeaderName, HeaderValue};
use tokio::time::Instant;

/// The `Server-Timing` response header.
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// The parts of one request and how long each took; shared by the calls
/// the request makes.
#[derive(Debug, Default)]
pub struct ServerTiming {
    parts: Mutex<Vec<Part>>,
}

#[derive(Debug)]
struct Part {
    name: &'static str,
    duration: Duration,
    desc: Option<&'static str>,
}

impl ServerTiming {
    /// Records part `name` (a service name, a metric-name-safe token) as
    /// having taken `duration`; `desc` says what was special about it.
    pub fn record(&self, name: &'static str, duration: Duration, desc: Option<&'static str>) {
        self.parts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Part {
                name,
                duration,
                desc,
            });
    }

    /// The header value: `total` first, then the parts in the order they ended.
    fn header_value(&self, total: Duration) -> HeaderValue {
        let parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut value = String::with_capacity(24 + parts.len() * 32);
        write_entry(&mut value, "total", total, None);
        for part in parts.iter() {
            value.push_str(", ");
            write_entry(&mut value, part.name, part.duration, part.desc);
        }
        HeaderValue::try_from(value).expect("service names and descriptions are header-safe")
    }
}

/// `name;dur=1.2` in milliseconds, with `;desc="…"` when there is one.
fn write_entry(value: &mut String, name: &str, duration: Duration, desc: Option<&str>) {
    let millis = duration.as_secs_f64() * 1000.0;
    let _ = write!(value, "{name};dur={millis:.1}");
    if let Some(desc) = desc {
        let _ = write!(value, ";desc=\"{desc}\"");
    }
}

/// Middleware giving each request a [`ServerTiming`] and writing it on the
/// response (`axum::middleware::from_fn`).
pub(crate) async fn server_timing(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let timing = Arc::new(ServerTiming::default());
    request.extensions_mut().insert(timing.clone());
    let mut response = next.run(request).await;
    let value = timing.header_value(started.elapsed());
    response.headers_mut().insert(SERVER_TIMING, value);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_first_then_each_part_with_its_description() {
        let timing = ServerTiming::default();
        timing.record("products", Duration::from_micros(3_140), None);
        timing.record("reviews", Duration::from_millis(11), Some("timeout"));
        assert_eq!(
            timing.header_value(Duration::from_micros(12_449)),
            "total;dur=12.4, products;dur=3.1, reviews;dur=11.0;desc=\"timeout\""
        );
    }

    #[test]
    fn a_request_without_parts_has_its_total() {
        assert_eq!(
            ServerTiming::default().header_value(Duration::from_micros(250)),
            "total;dur=0.2"
        );
    }
}
