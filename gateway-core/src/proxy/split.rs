//! Weighted canary choice, sticky per caller.
//!
//! Each caller (tenant and subject) falls in one bucket of the route's
//! total weight, by a hash of who they are and the route's prefix: one user
//! sees one version on every request and every instance, while different
//! routes split their callers independently. A tester forces a side with
//! the `BFF-Canary` header naming one of the route's services. Choosing
//! hashes a few bytes and walks a short list: no I/O, no allocation.

use http::{HeaderName, HeaderValue};

use crate::Error;

/// The request header that forces a side of a route's split (testers).
pub const BFF_CANARY: HeaderName = HeaderName::from_static("bff-canary");

/// The sides of a route and their weights, built once at start.
#[derive(Debug)]
pub(crate) struct Split<T> {
    /// Each side with the upper end (exclusive) of its range of buckets.
    sides: Vec<(Side<T>, u64)>,
    total: u64,
    /// Mixed into every caller's hash, so routes split independently.
    salt: u64,
}

/// One side of a split: a service and what serves it.
#[derive(Debug)]
pub(crate) struct Side<T> {
    pub(crate) name: String,
    pub(crate) target: T,
}

impl<T> Split<T> {
    /// `sides` with their weights, salted with `salt` (the route's prefix);
    /// the weights add up to more than 0 (checked by the configuration).
    pub(crate) fn new(salt: &str, sides: impl IntoIterator<Item = (Side<T>, u32)>) -> Self {
        let mut total = 0;
        let sides = sides
            .into_iter()
            .map(|(side, weight)| {
                total += u64::from(weight);
                (side, total)
            })
            .collect();
        Self {
            sides,
            total,
            salt: stable_hash(0, salt.as_bytes()),
        }
    }

    /// The side of caller `tenant`/`subject`, or the one `forced` names.
    pub(crate) fn choose(
        &self,
        tenant: &str,
        subject: &str,
        forced: Option<&HeaderValue>,
    ) -> Result<&Side<T>, Error> {
        if let Some(forced) = forced {
            return self
                .sides
                .iter()
                .map(|(side, _)| side)
                .find(|side| side.name.as_bytes() == forced.as_bytes())
                .ok_or_else(|| {
                    let names: Vec<&str> = self.sides.iter().map(|(side, _)| &*side.name).collect();
                    Error::BadRequest(format!(
                        "BFF-Canary must name a service of this route: {}",
                        names.join(", ")
                    ))
                });
        }
        let caller = stable_hash(
            stable_hash(self.salt, tenant.as_bytes()),
            subject.as_bytes(),
        );
        let bucket = caller % self.total;
        Ok(self
            .sides
            .iter()
            .find(|(_, upto)| bucket < *upto)
            .map(|(side, _)| side)
            .expect("the last side ends at the total"))
    }
}

/// FNV-1a over `bytes` from `seed`, finished with a 64-bit mixer so that
/// every bit of the result depends on every input bit. Hand-written because
/// stickiness needs a hash that never changes between instances and
/// releases, which std's `DefaultHasher` does not promise.
fn stable_hash(seed: u64, bytes: &[u8]) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET ^ seed;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    // The finaliser of MurmurHash3 (fmix64).
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary(prefix: &str) -> Split<()> {
        Split::new(
            prefix,
            [("products", 95), ("products-v2", 5)].map(|(name, weight)| {
                (
                    Side {
                        name: name.to_owned(),
                        target: (),
                    },
                    weight,
                )
            }),
        )
    }

    fn side<'a>(split: &'a Split<()>, subject: &str) -> &'a str {
        &split
            .choose("acme", subject, None)
            .expect("not forced")
            .name
    }

    #[test]
    fn ten_thousand_callers_split_by_the_weights() {
        let split = canary("/api/catalog");
        let on_canary = (0..10_000)
            .filter(|n| side(&split, &format!("user-{n}")) == "products-v2")
            .count();
        assert!(
            (400..=600).contains(&on_canary),
            "5% of 10,000 within 4-6%: {on_canary}"
        );
    }

    #[test]
    fn a_caller_always_lands_on_the_same_side_and_routes_split_apart() {
        let catalog = canary("/api/catalog");
        let search = canary("/api/search");
        let mut differs = 0;
        for n in 0..1_000 {
            let subject = format!("user-{n}");
            let first = side(&catalog, &subject);
            assert!((0..5).all(|_| side(&catalog, &subject) == first));
            differs += usize::from(first != side(&search, &subject));
        }
        assert!(differs > 0, "the canary population differs per route");
        // The hash is fixed: the same caller picks the same side in every
        // instance and every release.
        assert_eq!(stable_hash(0, b"user-1"), 0x41a2_fca5_c684_01c5);
    }

    #[test]
    fn the_canary_header_forces_a_named_side_or_is_refused() {
        let split = canary("/api/catalog");
        for name in ["products", "products-v2"] {
            let forced = HeaderValue::from_static(name);
            for n in 0..20 {
                let chosen = split
                    .choose("acme", &format!("user-{n}"), Some(&forced))
                    .expect("a side of the route");
                assert_eq!(chosen.name, name);
            }
        }
        let unknown = split
            .choose("acme", "user-1", Some(&HeaderValue::from_static("orders")))
            .expect_err("not a side");
        assert_eq!(
            unknown.to_string(),
            "bad request: BFF-Canary must name a service of this route: products, products-v2"
        );
    }
}
