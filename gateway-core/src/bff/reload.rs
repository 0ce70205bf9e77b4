//! Configuration reloaded without a restart.
//!
//! On SIGHUP, or when the configuration file changes (checked every
//! second), the configuration is loaded again from the same file and
//! environment and validated whole. A configuration that does not load is
//! refused: the running one stays, one log line names the key and why,
//! and `config_reloads_total{result="rejected"}` counts it. Otherwise what
//! can change while serving is swapped in at once: `[[auth.api_keys]]` and
//! the rate-limit plans, tenants and default plan. Each swap is whole and
//! lock-free for readers, so a request under way finishes with the keys
//! and plan it started with. Any other change (listeners, TLS paths, Redis,
//! services...) needs a restart: the reload applies what it can, and one
//! log line names the sections that did not take effect.

use std::{collections::BTreeSet, time::SystemTime};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use tokio::signal::unix::{SignalKind, signal};

use super::{Bff, BffConfig};
use crate::{
    auth::Authenticator,
    config::{ConfigError, ConfigSource},
    lifecycle::Shutdown,
    observability::Telemetry,
    ratelimit::RateLimiter,
};

/// How often the configuration file's modification time is looked at.
const FILE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

/// What a reload changes, and how the running configuration looks.
pub(super) struct Reloader<B: Bff> {
    source: ConfigSource,
    running: BffConfig<B>,
    authenticator: Authenticator,
    limiter: Option<RateLimiter>,
    reloads: Family<ReloadLabels, Counter>,
}

impl<B: Bff> Reloader<B> {
    pub(super) fn new(
        source: ConfigSource,
        running: BffConfig<B>,
        authenticator: Authenticator,
        limiter: Option<RateLimiter>,
        telemetry: &Telemetry,
    ) -> Self {
        let reloads = Family::<ReloadLabels, Counter>::default();
        telemetry.register(
            "config_reloads",
            "Configuration reloads by result (applied, rejected)",
            reloads.clone(),
        );
        Self {
            source,
            running,
            authenticator,
            limiter,
            reloads,
        }
    }

    /// Reloads on SIGHUP and when the file changes, until `shutdown`.
    pub(super) async fn watch(mut self, shutdown: Shutdown) {
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => Some(hangups),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP: the configuration reloads only when its file changes");
                None
            }
        };
        let mut ticks = tokio::time::interval(FILE_CHECK_INTERVAL);
        let mut modified = self.file_modified();
        loop {
            let hangup = async {
                match &mut hangups {
                    Some(hangups) => hangups.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = hangup => self.reload("SIGHUP"),
                _ = ticks.tick() => {
                    let now = self.file_modified();
                    if now != modified {
                        modified = now;
                        self.reload("the configuration file changed");
                    }
                }
                () = shutdown.triggered() => return,
            }
        }
    }

    fn file_modified(&self) -> Option<SystemTime> {
        let file = self.source.file()?;
        std::fs::metadata(file)
            .and_then(|meta| meta.modified())
            .ok()
    }

    fn reload(&mut self, trigger: &'static str) {
        match self.apply() {
            Ok(needs_restart) => {
                self.reloads
                    .get_or_create(&ReloadLabels { result: "applied" })
                    .inc();
                if needs_restart.is_empty() {
                    tracing::info!(trigger, "configuration reloaded");
                } else {
                    tracing::warn!(
                        trigger,
                        needs_restart = ?needs_restart,
                        "configuration reloaded; changes to these sections need a restart and did not take effect"
                    );
                }
            }
            Err(error) => {
                self.reloads
                    .get_or_create(&ReloadLabels { result: "rejected" })
                    .inc();
                tracing::error!(trigger, %error, "configuration reload refused: still running the previous configuration");
            }
        }
    }

    /// Loads the configuration again and swaps in what can change while
    /// serving; returns the sections whose changes need a restart.
    fn apply(&mut self) -> Result<BTreeSet<String>, ConfigError> {
        let loaded: BffConfig<B> = self.source.load()?;
        let loaded = loaded.with_deprecated_names_moved();
        if let Some(limiter) = &self.limiter {
            // First: the one swap that can still refuse.
            limiter.replace_plans(&loaded.rate_limit)?;
        }
        self.authenticator.replace_api_keys(&loaded.auth.api_keys)?;
        let needs_restart = restart_only_changes(&self.running, &loaded);
        // Only what took effect joins the running configuration, so the
        // next reload reports the rest again until a restart.
        let running = &mut self.running;
        running.auth.api_keys = loaded.auth.api_keys;
        running.rate_limit.plans = loaded.rate_limit.plans;
        running.rate_limit.tenants = loaded.rate_limit.tenants;
        running.rate_limit.default_plan = loaded.rate_limit.default_plan;
        Ok(needs_restart)
    }
}

/// The keys a reload swaps in, as paths in the configuration.
const RELOADABLE: [(&str, &str); 4] = [
    ("auth", "api_keys"),
    ("rate_limit", "plans"),
    ("rate_limit", "tenants"),
    ("rate_limit", "default_plan"),
];

/// The configuration as data, the reloadable keys taken out.
fn without_reloadable<B: Bff>(config: &BffConfig<B>) -> serde_json::Map<String, serde_json::Value> {
    let mut value = match serde_json::to_value(config) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    for (section, key) in RELOADABLE {
        if let Some(serde_json::Value::Object(section)) = value.get_mut(section) {
            section.remove(key);
        }
    }
    value
}

/// The top-level sections that differ between `running` and `loaded`,
/// beyond what a reload swaps in.
fn restart_only_changes<B: Bff>(running: &BffConfig<B>, loaded: &BffConfig<B>) -> BTreeSet<String> {
    let (before, after) = (without_reloadable(running), without_reloadable(loaded));
    before
        .keys()
        .chain(after.keys())
        .filter(|section| before.get(*section) != after.get(*section))
        .cloned()
        .collect()
}
