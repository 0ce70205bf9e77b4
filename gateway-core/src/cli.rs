//! The command line every binary shares, and the process lifecycle around it.
//!
//! ```text
//! bff-web [--config PATH] [--check-config]
//! ```
//!
//! [`main`] parses the arguments, loads the configuration (see
//! [`crate::config`]), and either prints it (`--check-config`: the effective
//! configuration with secrets masked, exit 0; on error the one-line reason and
//! exit 2) or installs logging, starts the runtime and runs the service until
//! SIGTERM or SIGINT has drained it.

use std::{future::Future, path::PathBuf, process::ExitCode};

use clap::Parser;

use serde::{Serialize, de::DeserializeOwned};

use crate::{
    config::{self, ConfigSource, Validate},
    lifecycle::Shutdown,
    observability::{ObservabilityConfig, logging},
};

/// Exit code of a configuration error.
const EXIT_CONFIG: u8 = 2;
/// Exit code of a failure while running.
const EXIT_FAILURE: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Configuration layers, later wins: built-in defaults, the TOML file, then BFF_* environment \
                  variables with __ between levels (BFF_SERVER__LISTEN=0.0.0.0:8080)."
)]
struct Args {
    /// TOML configuration file (default: the BFF_CONFIG variable, else built-in defaults only).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Validate the configuration, print it with secrets masked, and exit.
    #[arg(long)]
    check_config: bool,
}

/// The whole configuration of a binary: loadable, checkable, and with the
/// logging settings, which are installed before anything else starts.
pub trait ServiceConfig: Serialize + DeserializeOwned + Default + Validate {
    /// The logging settings.
    fn observability(&self) -> &ObservabilityConfig;
}

/// Runs a binary named `name`: parses the command line, loads `C`, and calls
/// `run` with it, a [`Shutdown`] that SIGTERM or SIGINT triggers, and where
/// the configuration came from (to load it again on a reload). `run`
/// should return once the service has drained.
pub fn main<C, F, Fut>(name: &'static str, about: &'static str, run: F) -> ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C, Shutdown, ConfigSource) -> Fut,
    Fut: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
{
    let command = <Args as clap::CommandFactory>::command()
        .name(name)
        .about(about);
    let matches = command.get_matches();
    let args = <Args as clap::FromArgMatches>::from_arg_matches(&matches)
        .unwrap_or_else(|error| error.exit());

    let source = ConfigSource::new(args.config.as_deref());
    let config: C = match source.load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{name}: invalid configuration: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.check_config {
        println!("# {name}: configuration is valid; effective values (secrets masked):");
        print!("{}", config::render_masked(&config));
        return ExitCode::SUCCESS;
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{name}: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(async move {
        let logging = logging::init(config.observability(), name);
        let shutdown = Shutdown::new();
        shutdown.trigger_on_signals();
        let outcome = run(config, shutdown, source).await;
        if let Err(error) = &outcome {
            tracing::error!(%error, "{name} failed");
        }
        // The last lines and spans leave before the process does.
        logging.shutdown().await;
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("{name}: {error}");
                ExitCode::from(EXIT_FAILURE)
            }
        }
    })
}
