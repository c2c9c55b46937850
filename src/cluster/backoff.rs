//! How long the subscriber waits before it reconnects: capped exponential
//! backoff with jitter, so that every node of a cluster cut off by the same
//! Redis restart does not reconnect in the same millisecond.

use std::time::Duration;

/// The `attempt`-th delay (0-based): uniform in `[ceiling / 2, ceiling]`,
/// where the ceiling is `base * 2^attempt`, at most `max`.
pub(super) fn delay(base: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
    let ceiling = base.saturating_mul(factor).min(max);
    ceiling.mul_f64(0.5 + unit_random() / 2.0)
}

/// A uniform value in `[0, 1)` from the standard library's random hash
/// keys: spread, not cryptographic strength.
fn unit_random() -> f64 {
    let id = super::message::random_id();
    let bits = u64::from_str_radix(&id[..16], 16).unwrap_or_default();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(5));
        for attempt in [0, 1, 3, 6, 40, u32::MAX] {
            let ceiling = (base * 2u32.saturating_pow(attempt.min(31))).min(max);
            let delay = delay(base, max, attempt);
            assert!(
                delay <= ceiling && delay >= ceiling / 2,
                "{attempt}: {delay:?}"
            );
        }
    }
}
