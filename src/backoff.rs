//! The one backoff of the crate: the Rust client's reconnections and the
//! cluster's resubscriptions draw their delays from it. Public as
//! `client::Backoff`; with only the `redis` feature, it is the cluster's.
#![cfg_attr(not(feature = "client"), allow(unreachable_pub))]

use std::time::Duration;

use crate::jitter::unit_random;

/// Exponential backoff with "full jitter": the n-th delay is uniform in
/// `[0, min(max, base * 2^n)]`, so a fleet of clients told to reconnect at
/// once (a server restart, 1001) spreads out instead of stampeding.
///
/// The client takes one in its builder; a cluster's
/// `reconnect_backoff(base, max)` builds one.
///
/// ```
/// # #[cfg(feature = "client")] {
/// use std::time::Duration;
/// use axum_ws_auth::client::Backoff;
///
/// let backoff = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(1) };
/// assert_eq!(backoff.ceiling(3), Duration::from_millis(800));
/// assert!(backoff.delay(3) <= Duration::from_millis(800));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first delay.
    pub base: Duration,
    /// The largest delay ever used.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The ceiling for attempt `attempt` (0-based).
    ///
    /// ```
    /// # #[cfg(feature = "client")] {
    /// use axum_ws_auth::client::Backoff;
    ///
    /// let backoff = Backoff::default();
    /// assert_eq!(backoff.ceiling(0), backoff.base);
    /// assert_eq!(backoff.ceiling(u32::MAX), backoff.max);
    /// # }
    /// ```
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// A random delay for attempt `attempt`, uniform in
    /// `[0, ceiling(attempt)]`.
    ///
    /// ```
    /// # #[cfg(feature = "client")] {
    /// use axum_ws_auth::client::Backoff;
    ///
    /// let backoff = Backoff::default();
    /// assert!(backoff.delay(2) <= backoff.ceiling(2));
    /// # }
    /// ```
    pub fn delay(&self, attempt: u32) -> Duration {
        self.ceiling(attempt).mul_f64(unit_random())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_max_and_delays_stay_below_them() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let ceilings: Vec<u128> = (0..6).map(|n| backoff.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..200).map(|_| backoff.delay(3)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(800)));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 150, "jitter must spread delays");
    }
}
