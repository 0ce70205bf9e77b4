//! `bff-mobile`: the mobile apps' GraphQL backend-for-frontend. See the library docs.

use std::process::ExitCode;

fn main() -> ExitCode {
    gateway_core::cli::main(
        bff_mobile::NAME,
        "Backend-for-frontend of the mobile apps: trimmed GraphQL at /graphql",
        |config: bff_mobile::MobileConfig, shutdown| async move {
            bff_mobile::start(config, shutdown).await?.wait().await;
            Ok(())
        },
    )
}
