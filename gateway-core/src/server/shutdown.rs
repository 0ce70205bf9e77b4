//! The shutdown signal shared by a process's listeners.

use std::sync::Arc;

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
}
