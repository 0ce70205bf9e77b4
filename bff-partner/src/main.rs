//! `bff-partner`: the versioned REST API for partners. See the library docs.

fn main() -> std::process::ExitCode {
    gateway_core::bff::main::<bff_partner::Partner>()
}
