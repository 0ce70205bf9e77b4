//! The accept loop and HTTP/1.1 connection handling.
//!
//! Built on hyper's connection builder (not `axum::serve`) so every
//! connection gets the limits a public listener needs:
//!
//! - a header-read timeout, which also closes keep-alive connections that
//!   stay silent (slowloris);
//! - a send timeout: a connection whose client stops reading (its socket
//!   buffer stays full for that long) is closed, with the response it was
//!   sending and the downstream call streaming it, instead of holding them
//!   for as long as the client likes (nginx's `send_timeout`);
//! - a cap on the number and total size of request headers (hyper answers 431);
//! - a cap on concurrent connections: past it the listener stops accepting
//!   until a connection closes, instead of running out of file descriptors.
//!
//! On shutdown the loop stops accepting, asks every connection to finish its
//! in-flight request and close, and waits up to the grace period before
//! closing whatever is left.

use std::{sync::Arc, time::Duration};

use axum::{body::Body, extract::ConnectInfo};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinSet};
use tokio_io_timeout::TimeoutStream;
use tower::{Service, ServiceExt};

use crate::lifecycle::Shutdown;

/// Per-connection limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest wait for a complete request head, also on idle keep-alive connections.
    pub header_read_timeout: Duration,
    /// Longest time a write to the client may wait for it to read.
    pub send_timeout: Duration,
    /// Most headers in one request (more is a 431).
    pub max_headers: usize,
    /// Largest request head in bytes (larger is a 431).
    pub max_header_bytes: usize,
    /// Most concurrent connections.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
            max_headers: 100,
            max_header_bytes: 16 * 1024,
            max_connections: 10_000,
        }
    }
}

/// Serves `service` on `listener` until `stop` triggers, then drains for at
/// most `grace`. A service error closes the connection without an answer.
pub async fn serve_connections<S>(
    listener: TcpListener,
    service: S,
    limits: ConnectionLimits,
    stop: Shutdown,
    grace: Duration,
) where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_headers)
        .max_header_size(limits.max_header_bytes)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = stop.triggered() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically EMFILE or a connection reset before accept: back off briefly.
                    tracing::warn!(%error, "accept failed");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                        () = stop.triggered() => break,
                    }
                }
            },
            () = stop.triggered() => break,
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let service = service.clone();
        let per_request = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            service.clone().oneshot(request)
        });
        let mut stream = TimeoutStream::new(stream);
        stream.set_write_timeout(Some(limits.send_timeout));
        let stream = TokioIo::new(Box::pin(stream));
        let connection = graceful.watch(http.serve_connection(stream, per_request));
        connections.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::debug!("all connections drained"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!(open = connections.len(), ?grace, "grace period over, closing the remaining connections");
        }
    }
    connections.abort_all();
}
