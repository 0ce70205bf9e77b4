//! `bff-web`: the web app's backend-for-frontend. See the library docs.

fn main() -> std::process::ExitCode {
    gateway_core::bff::main::<bff_web::Web>()
}
