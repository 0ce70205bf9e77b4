//! Where the contracts are served: the downstream services and the
//! resources they serve by id.
//!
//! A [`ServiceSpec`] names a service the way every BFF configures it
//! (`[downstream.<name>]`, the `service` label of the downstream metrics)
//! and gives the port `demo-services` serves it on, which is where a BFF
//! looks for it when run on one machine with no configuration. A
//! [`Resource`] says which service owns a type and at which path, so every
//! BFF asks for a product the same way.

use serde::de::DeserializeOwned;

/// A downstream service: its configuration name and its local port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceSpec {
    /// The name in `[downstream.<name>]`, metrics and errors (`products`).
    pub name: &'static str,
    /// The port it listens on in a one-machine run (`demo-services`).
    pub local_port: u16,
}

impl ServiceSpec {
    /// The service `name`, served locally on `local_port`.
    pub const fn new(name: &'static str, local_port: u16) -> Self {
        Self { name, local_port }
    }
}

/// A resource a service serves by numeric id.
pub trait Resource: DeserializeOwned {
    /// The service that owns it.
    const SERVICE: ServiceSpec;

    /// `GET` path of resource `id`, for example `/products/42`.
    fn path(id: u64) -> String;
}
