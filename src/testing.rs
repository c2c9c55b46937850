//! Helpers shared by the crate's unit tests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::token::RegisteredClaims;

/// `secs` seconds after the Unix epoch.
pub(crate) fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A token's identity, `jti` and `iat`: what revocations match.
pub(crate) fn revocable(
    iss: Option<&str>,
    sub: Option<&str>,
    jti: Option<&str>,
    iat: Option<u64>,
) -> RegisteredClaims {
    RegisteredClaims {
        jti: jti.map(str::to_owned),
        iat,
        ..RegisteredClaims::for_tests(iss, sub, u64::MAX)
    }
}

/// splitmix64: a small, seeded, reproducible source of test cases.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// One of `items`.
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}
