//! The crate's one source of spread: a seeded mix for what must be fixed
//! per input (a connection's notice point, test cases), and a fresh random
//! value for what must differ per draw (backoff delays, renewal jitter,
//! ids). Spread, not secrecy: nothing here is a credential.

use std::hash::{BuildHasher, Hasher};

/// splitmix64's output function: `seed` spread evenly over `u64`. The same
/// seed gives the same value.
pub(crate) fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A fresh random value, from the standard library's per-process random
/// hash keys and the clock.
#[cfg_attr(
    not(any(feature = "client", feature = "redis")),
    allow(dead_code, reason = "used by the client and the cluster")
)]
pub(crate) fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

/// A fresh value uniform in `[0, 1)`.
#[cfg_attr(
    not(any(feature = "client", feature = "redis")),
    allow(dead_code, reason = "used by the client and the cluster")
)]
pub(crate) fn unit_random() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_values_are_fixed_per_seed_and_spread() {
        assert_eq!(mix(7), mix(7));
        let buckets = (0..10_000u64).fold([0u32; 16], |mut buckets, seed| {
            buckets[(mix(seed) >> 60) as usize] += 1;
            buckets
        });
        // 625 expected per bucket.
        assert!(
            buckets.iter().all(|n| (500..750).contains(n)),
            "{buckets:?}"
        );
    }

    #[test]
    fn random_values_differ_and_stay_in_the_unit_interval() {
        let draws: Vec<f64> = (0..1_000).map(|_| unit_random()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let distinct: std::collections::HashSet<u64> = draws.iter().map(|x| x.to_bits()).collect();
        assert!(distinct.len() > 990);
    }
}
