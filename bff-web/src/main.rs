//! `bff-web`: the web app's backend-for-frontend. See the library docs.

use std::process::ExitCode;

fn main() -> ExitCode {
    gateway_core::cli::main(
        bff_web::NAME,
        "Backend-for-frontend of the web app: rich, nested JSON pages under /api",
        |config: bff_web::WebConfig, shutdown| async move {
            bff_web::start(config, shutdown).await?.wait().await;
            Ok(())
        },
    )
}
