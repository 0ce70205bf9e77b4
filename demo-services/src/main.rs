//! `demo-services`: every downstream service and the dev token issuer in one process.
//!
//! See the library docs for the services, ports and admin API.

use std::process::ExitCode;

use demo_services::{DemoConfig, DemoServices};

fn main() -> ExitCode {
    gateway_core::cli::main(
        "demo-services",
        "The downstream services and dev token issuer of the BFF platform, for local runs, tests and benchmarks",
        |config: DemoConfig, shutdown, _source| async move {
            let services = DemoServices::start(config, shutdown).await?;
            services.wait().await;
            Ok(())
        },
    )
}
