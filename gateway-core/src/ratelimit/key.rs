//! Whose bucket a request draws from.
//!
//! A verified caller draws from its tenant's and subject's bucket (for a
//! partner API key the subject is the key's name); anyone else from their
//! client address. Keys are namespaced by BFF and tenant, so two tenants
//! never share a bucket, and written `rl:{<bff>:<tenant>:<kind>:<id>}`: the
//! braces are a Redis Cluster hash tag, keeping every key of a bucket in one
//! slot.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use shared_schema::AuthMethod;

use crate::identity::VerifiedIdentity;

/// The header proxies append the address they received a request from to.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The tenant part of the key of a caller without one.
const NO_TENANT: &str = "-";

/// The address of the client: the socket peer, unless the peer is a trusted
/// proxy, in which case the right-most `X-Forwarded-For` entry that is not a
/// trusted proxy (entries to its left were written by the client itself and
/// prove nothing). When every entry is trusted, the left-most is the client.
/// An entry that is not an address ends the walk at the last trusted hop, so
/// garbage can only put its sender in that proxy's bucket, never in another's.
pub(crate) fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |address: &IpAddr| trusted.iter().any(|net| net.contains(address));
    if !is_trusted(&peer) {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        match entry.parse::<IpAddr>() {
            Ok(address) if is_trusted(&address) => client = address,
            Ok(address) => return address,
            Err(_) => return client,
        }
    }
    client
}

/// The bucket key of a request from `identity` (verified) or else `address`,
/// served by `bff`.
pub(crate) fn bucket_key(
    bff: &str,
    identity: Option<&VerifiedIdentity>,
    address: Option<IpAddr>,
) -> String {
    match (identity, address) {
        (Some(identity), _) => {
            let kind = match identity.auth_method {
                AuthMethod::ApiKey => "key",
                AuthMethod::Jwt | AuthMethod::Opaque => "sub",
            };
            format!(
                "rl:{{{bff}:{}:{kind}:{}}}",
                identity.tenant, identity.subject
            )
        }
        (None, Some(address)) => format!("rl:{{{bff}:{NO_TENANT}:ip:{address}}}"),
        (None, None) => format!("rl:{{{bff}:{NO_TENANT}:ip:unknown}}"),
    }
}

#[cfg(test)]
mod tests {
    use shared_schema::Identity;

    use super::*;

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(X_FORWARDED_FOR, value.parse().expect("a header value"));
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn nets(cidrs: &[&str]) -> Vec<IpNet> {
        cidrs
            .iter()
            .map(|cidr| cidr.parse().expect("a CIDR"))
            .collect()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let headers = forwarded(&["203.0.113.9"]);
        assert_eq!(
            client_address(ip("198.51.100.7"), &headers, &[]),
            ip("198.51.100.7")
        );
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_address(ip("198.51.100.7"), &headers, &trusted),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_entry_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "fd00::/8"]);
        // The client wrote "1.1.1.1" itself; the edge proxy appended its real address.
        let headers = forwarded(&["1.1.1.1, 203.0.113.9", "10.1.2.3"]);
        assert_eq!(
            client_address(ip("10.0.0.5"), &headers, &trusted),
            ip("203.0.113.9")
        );
        let headers = forwarded(&["203.0.113.9, fd00::1"]);
        assert_eq!(
            client_address(ip("fd00::2"), &headers, &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_trusted_peer_without_forwarding_or_with_garbage_keys_by_the_last_trusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_address(ip("10.0.0.5"), &HeaderMap::new(), &trusted),
            ip("10.0.0.5")
        );
        let headers = forwarded(&["203.0.113.9, not-an-address, 10.9.9.9"]);
        assert_eq!(
            client_address(ip("10.0.0.5"), &headers, &trusted),
            ip("10.9.9.9")
        );
        let all_trusted = forwarded(&["10.7.7.7, 10.8.8.8"]);
        assert_eq!(
            client_address(ip("10.0.0.5"), &all_trusted, &trusted),
            ip("10.7.7.7")
        );
    }

    #[test]
    fn keys_are_namespaced_by_bff_tenant_and_kind() {
        let identity = |tenant: &str, method| {
            VerifiedIdentity::new(Identity {
                subject: "user-1".to_owned(),
                tenant: tenant.to_owned(),
                scopes: Vec::new(),
                client: None,
                auth_method: method,
            })
            .expect("a valid identity")
        };
        let acme = identity("acme", AuthMethod::Jwt);
        assert_eq!(
            bucket_key("bff-web", Some(&acme), None),
            "rl:{bff-web:acme:sub:user-1}"
        );
        let globex = identity("globex", AuthMethod::Jwt);
        assert_ne!(
            bucket_key("bff-web", Some(&acme), None),
            bucket_key("bff-web", Some(&globex), None)
        );
        assert_ne!(
            bucket_key("bff-web", Some(&acme), None),
            bucket_key("bff-mobile", Some(&acme), None)
        );
        let key = identity("acme", AuthMethod::ApiKey);
        assert_eq!(
            bucket_key("bff-partner", Some(&key), None),
            "rl:{bff-partner:acme:key:user-1}"
        );
        assert_eq!(
            bucket_key("bff-web", None, Some(ip("203.0.113.9"))),
            "rl:{bff-web:-:ip:203.0.113.9}"
        );
    }
}
