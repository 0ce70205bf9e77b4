//! `bff-mobile`: the mobile apps' GraphQL backend-for-frontend. See the library docs.

fn main() -> std::process::ExitCode {
    gateway_core::bff::main::<bff_mobile::Mobile>()
}
