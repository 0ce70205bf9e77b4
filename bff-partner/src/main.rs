//! `bff-partner`: the versioned REST API for partners. See the library docs.

use std::process::ExitCode;

fn main() -> ExitCode {
    gateway_core::cli::main(
        bff_partner::NAME,
        "Backend-for-frontend of partner systems: stable, versioned REST under /v1",
        |config: bff_partner::PartnerConfig, shutdown| async move {
            bff_partner::start(config, shutdown).await?.wait().await;
            Ok(())
        },
    )
}
