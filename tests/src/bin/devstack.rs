//! `devstack`: the whole platform on one machine, with one command.
//!
//! Starts demo-services and the three BFFs on their documented ports with
//! built-in defaults (no Redis, nothing else to install), prints where
//! everything is, a demo token for each BFF, a partner API key and example
//! requests, and stops everything cleanly on Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use demo_services::ServiceName;
use gateway_core::observability::{LogFormat, ObservabilityConfig, logging};
use platform_tests::{DEMO_PARTNER_API_KEY, Layout, Platform, PlatformOptions};

/// Runs demo-services, bff-web, bff-mobile and bff-partner locally.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Log filter, for example `debug` or `info,access=warn`.
    #[arg(long, default_value = "info")]
    log: String,
    /// Free ports on 127.0.0.1 instead of the documented ones, so that it
    /// runs beside another copy (the browser checks use it).
    #[arg(long)]
    free_ports: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let logging = logging::init(
        &ObservabilityConfig {
            log_format: LogFormat::Pretty,
            log_level: args.log,
            ..ObservabilityConfig::default()
        },
        "devstack",
    );
    let mut options = PlatformOptions::dev();
    if args.free_ports {
        options.layout = Layout::Ephemeral;
    }
    let platform = match Platform::start_with(options).await {
        Ok(platform) => platform,
        Err(error) => {
            eprintln!("devstack: cannot start: {error}");
            eprintln!(
                "devstack: is another copy running, or are ports 7000-7007 / 8080-8082 / 9080-9082 taken?"
            );
            return ExitCode::FAILURE;
        }
    };
    print_banner(&platform);
    platform.shutdown().trigger_on_signals();
    platform.wait().await;
    logging.shutdown().await;
    println!("devstack: stopped");
    ExitCode::SUCCESS
}

fn print_banner(platform: &Platform) {
    let demo = platform.demo();
    let web = platform.web().public_addr().port();
    let mobile = platform.mobile().public_addr().port();
    let partner = platform.partner().public_addr().port();
    println!();
    println!("BFF platform is up. Ctrl-C stops everything.");
    println!();
    println!(
        "  bff-web      http://127.0.0.1:{web}   admin http://{}",
        platform.web().admin_addr()
    );
    println!(
        "  bff-mobile   http://127.0.0.1:{mobile}   admin http://{}",
        platform.mobile().admin_addr()
    );
    println!(
        "  bff-partner  http://127.0.0.1:{partner}   admin http://{}",
        platform.partner().admin_addr()
    );
    for service in ServiceName::ALL {
        println!("  {:<12} {}", service.as_str(), demo.url(service));
    }
    println!();
    println!(
        "Demo credentials (tokens expire in 15 minutes; get new ones from POST {}/token):",
        demo.url(ServiceName::Auth)
    );
    println!(
        "  WEB_TOKEN={}",
        platform.token_for("user-1", "bff-web", "RS256")
    );
    println!(
        "  MOBILE_TOKEN={}",
        platform.token_for("user-1", "bff-mobile", "ES256")
    );
    println!(
        "  PARTNER_TOKEN={}",
        platform.token_for("partner-acme", "bff-partner", "RS256")
    );
    println!("  PARTNER_API_KEY={DEMO_PARTNER_API_KEY}");
    println!();
    println!(
        "GraphiQL: http://127.0.0.1:{mobile}/graphiql (put {{\"Authorization\": \"Bearer $MOBILE_TOKEN\"}} in its Headers tab)"
    );
    println!(
        "Partner API reference: http://127.0.0.1:{partner}/v1/docs (Authorize with $PARTNER_API_KEY to try a request)"
    );
    println!();
    println!("Try:");
    println!(
        "  curl -s http://127.0.0.1:{web}/api/product-page/42 -H \"Authorization: Bearer $WEB_TOKEN\""
    );
    println!(
        "  curl -s http://127.0.0.1:{mobile}/graphql -H \"Authorization: Bearer $MOBILE_TOKEN\" -H 'content-type: application/json' -d '{{\"query\":\"{{ product(id: 42) {{ name price {{ formatted }} stock }} }}\"}}'"
    );
    println!(
        "  curl -s http://127.0.0.1:{partner}/v1/products/42 -H \"Authorization: Bearer $PARTNER_TOKEN\""
    );
    println!(
        "  curl -s http://127.0.0.1:{partner}/v1/products/42 -H \"X-Api-Key: $PARTNER_API_KEY\""
    );
    println!("  curl -s http://{}/metrics", platform.web().admin_addr());
    println!();
}
