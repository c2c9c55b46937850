//! Time for a connection: the deadline shared with the application's
//! halves (the token's, or an earlier one a re-authentication request
//! set), wall-clock `exp` mapped onto the monotonic clock, and the renewal
//! rate window.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::connection::EndReason;

/// The connection's current `exp`, the monotonic instant it stands for,
/// and its deadline (that instant plus the leeway, or the earlier deadline
/// of a pending re-authentication request), readable without locks from
/// every half of the application's socket so none hands out a frame after
/// the deadline. Written only under the connection's lock.
#[derive(Debug)]
pub(crate) struct SharedDeadline {
    base: Instant,
    leeway: Duration,
    exp_at_nanos: AtomicU64,
    exp: AtomicU64,
    /// A pending re-authentication request's deadline, in nanoseconds after
    /// `base` ([`NONE`] without one, or when it is the token's own).
    reauth_at_nanos: AtomicU64,
    /// The `exp` that request announced, when earlier than the token's.
    reauth_exp: AtomicU64,
    /// The whole second of the latest request: a renewal answering it
    /// carries a token with `iat` at or after it.
    reauth_since: AtomicU64,
}

/// No pending re-authentication.
const NONE: u64 = u64::MAX;

impl SharedDeadline {
    pub(crate) fn new(exp: u64, leeway: Duration) -> Self {
        let shared = Self {
            base: Instant::now(),
            leeway,
            exp_at_nanos: AtomicU64::new(0),
            exp: AtomicU64::new(exp),
            reauth_at_nanos: AtomicU64::new(NONE),
            reauth_exp: AtomicU64::new(NONE),
            reauth_since: AtomicU64::new(NONE),
        };
        shared.set(exp);
        shared
    }

    /// Takes `exp` as the connection's expiry: a new token, which also
    /// answers any pending re-authentication request.
    pub(crate) fn set(&self, exp: u64) {
        let exp_at = monotonic_instant_of(exp);
        self.exp_at_nanos
            .store(self.nanos_of(exp_at), Ordering::Release);
        self.exp.store(exp, Ordering::Release);
        self.reauth_at_nanos.store(NONE, Ordering::Release);
        self.reauth_exp.store(NONE, Ordering::Release);
        self.reauth_since.store(NONE, Ordering::Release);
    }

    fn nanos_of(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.base).as_nanos();
        u64::try_from(nanos).unwrap_or(NONE - 1).min(NONE - 1)
    }

    /// Records a re-authentication request made in the second `since` that
    /// wants the connection to end at `wanted` (a NumericDate) without a
    /// renewal. The deadline moves there, but never later than the token's
    /// own or an earlier request's. Returns the `exp` to announce and the
    /// monotonic instant it stands for.
    pub(crate) fn request_reauth(&self, since: u64, wanted: u64) -> (u64, Instant) {
        let own = self.exp();
        let previous = self.reauth_exp.load(Ordering::Acquire);
        let exp = wanted.min(own).min(previous);
        if exp == previous
            && let Some(at) = self.reauth_at()
        {
            // An earlier request already set this deadline: keep it to the
            // nanosecond.
            self.reauth_since.fetch_max(since, Ordering::AcqRel);
            return (exp, at);
        }
        let latest = match self.reauth_since.load(Ordering::Acquire) {
            NONE => since,
            earlier => earlier.max(since),
        };
        self.reauth_since.store(latest, Ordering::Release);
        if exp >= own {
            // The token ends first: its own notice, early.
            return (own, self.exp_at());
        }
        let at = monotonic_instant_of(exp);
        let nanos = self.nanos_of(at);
        self.reauth_at_nanos.fetch_min(nanos, Ordering::AcqRel);
        self.reauth_exp.store(exp, Ordering::Release);
        (exp, at)
    }

    /// The second of the pending re-authentication request, if any.
    pub(crate) fn reauth_since(&self) -> Option<u64> {
        match self.reauth_since.load(Ordering::Acquire) {
            NONE => None,
            since => Some(since),
        }
    }

    fn reauth_at(&self) -> Option<Instant> {
        match self.reauth_at_nanos.load(Ordering::Acquire) {
            NONE => None,
            nanos => Some(
                self.base
                    .checked_add(Duration::from_nanos(nanos))
                    .unwrap_or(self.base + FAR_FUTURE),
            ),
        }
    }

    /// The token's own deadline, `exp + leeway`.
    fn token_deadline(&self) -> Instant {
        self.exp_at() + self.leeway.min(FAR_FUTURE)
    }

    /// Why the connection ends once [`has_passed`](Self::has_passed): the
    /// token expired, or a re-authentication request went unanswered.
    pub(crate) fn ending(&self) -> EndReason {
        match self.reauth_at() {
            Some(at) if at < self.token_deadline() => EndReason::NotReauthenticated,
            _ => EndReason::Expired,
        }
    }

    /// The monotonic instant of `exp`.
    pub(crate) fn exp_at(&self) -> Instant {
        let nanos = Duration::from_nanos(self.exp_at_nanos.load(Ordering::Acquire));
        self.base
            .checked_add(nanos)
            .unwrap_or(self.base + FAR_FUTURE)
    }

    /// `exp + leeway`, or a pending re-authentication request's earlier
    /// deadline: no application frame passes after it.
    pub(crate) fn deadline(&self) -> Instant {
        let own = self.token_deadline();
        self.reauth_at().map_or(own, |at| at.min(own))
    }

    pub(crate) fn exp(&self) -> u64 {
        self.exp.load(Ordering::Acquire)
    }

    pub(crate) fn has_passed(&self) -> bool {
        Instant::now() >= self.deadline()
    }
}

/// Where an `exp` further ahead than any clock can hold is placed: no
/// connection lives a century without renewing, and every instant up to
/// here is representable and schedulable.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 86400);

/// The monotonic instant at which the wall clock reads `exp`, at most a
/// century ahead. Sub-second precision comes from the wall clock's own
/// nanoseconds; after this conversion, only the monotonic clock is
/// consulted.
pub(crate) fn monotonic_instant_of(exp: u64) -> Instant {
    let now = Instant::now();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let exp = Duration::from_secs(exp);
    match exp.checked_sub(wall) {
        Some(ahead) => now + ahead.min(FAR_FUTURE),
        None => now.checked_sub(wall - exp).unwrap_or(now),
    }
}

/// Sliding-window limiter: at most `limit` attempts in any `window` (the
/// layer's, passed in rather than copied into every connection).
#[derive(Debug, Default)]
pub(crate) struct RenewLimiter {
    attempts: VecDeque<Instant>,
}

impl RenewLimiter {
    /// Records an attempt at `now`; false when it is one too many.
    pub(crate) fn attempt(&mut self, now: Instant, limit: u32, window: Duration) -> bool {
        while self
            .attempts
            .front()
            .is_some_and(|first| now.duration_since(*first) >= window)
        {
            self.attempts.pop_front();
        }
        if self.attempts.len() >= limit as usize {
            return false;
        }
        self.attempts.push_back(now);
        // Held for the window, on every connection that renewed: exactly
        // the attempts, not a growth reserve (renewals are rare).
        self.attempts.shrink_to_fit();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limiter_allows_r_attempts_in_any_window() {
        let mut limiter = RenewLimiter::default();
        let start = Instant::now();
        let mut attempt_at = |secs| {
            limiter.attempt(
                start + Duration::from_secs(secs),
                3,
                Duration::from_secs(60),
            )
        };
        assert!(attempt_at(0));
        assert!(attempt_at(10));
        assert!(attempt_at(20));
        assert!(!attempt_at(59));
        // The first attempt leaves the window at exactly 60 s.
        assert!(attempt_at(60));
        assert!(!attempt_at(61));
        assert_eq!(limiter.attempts.len(), 3);
        assert_eq!(limiter.attempts.capacity(), 3, "no growth reserve is kept");
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_is_exp_plus_leeway_on_the_monotonic_clock() {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let exp = wall.as_secs() + 10;
        let shared = SharedDeadline::new(exp, Duration::from_secs(2));
        let deadline = shared.deadline();
        assert_eq!(deadline - shared.exp_at(), Duration::from_secs(2));
        tokio::time::advance(deadline - Instant::now() - Duration::from_millis(1)).await;
        assert!(!shared.has_passed());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(shared.has_passed());
        shared.set(exp + 60);
        assert!(!shared.has_passed());
        assert_eq!(shared.exp(), exp + 60);
    }

    #[tokio::test(start_paused = true)]
    async fn extreme_exp_values_give_usable_instants() {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        for exp in [
            0,
            1,
            wall - 1,
            wall,
            wall + 1,
            1 << 53,
            (1 << 53) + 1,
            u64::MAX / 2,
            u64::MAX,
        ] {
            for leeway in [Duration::ZERO, Duration::from_secs(5), Duration::MAX] {
                let shared = SharedDeadline::new(exp, leeway);
                let (exp_at, deadline) = (shared.exp_at(), shared.deadline());
                assert!(deadline >= exp_at, "{exp}");
                assert!(exp_at <= Instant::now() + FAR_FUTURE, "{exp}");
                assert_eq!(shared.exp(), exp);
                assert_eq!(
                    shared.has_passed(),
                    exp <= wall && leeway.is_zero(),
                    "{exp} {leeway:?}"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn wall_clock_exp_maps_to_the_monotonic_clock() {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let exp = wall.as_secs() + 30;
        let ahead = monotonic_instant_of(exp) - Instant::now();
        let expected = Duration::from_secs(exp) - wall;
        let drift = ahead.abs_diff(expected);
        assert!(
            drift < Duration::from_millis(50),
            "{ahead:?} vs {expected:?}"
        );
        assert!(monotonic_instant_of(wall.as_secs() - 10) < Instant::now());
    }
}
