//! Time for a connection: the deadline shared with the application's
//! halves, wall-clock `exp` mapped onto the monotonic clock, and the renewal
//! rate window.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// The connection's current `exp` and its monotonic deadline
/// (`exp + leeway`), readable without locks from both halves of the
/// application's socket so neither hands out a frame after the deadline.
#[derive(Debug)]
pub(crate) struct SharedDeadline {
    base: Instant,
    deadline_nanos: AtomicU64,
    exp: AtomicU64,
}

impl SharedDeadline {
    pub(crate) fn new(exp: u64, deadline: Instant) -> Self {
        let base = Instant::now();
        let shared = Self {
            base,
            deadline_nanos: AtomicU64::new(0),
            exp: AtomicU64::new(exp),
        };
        shared.set(exp, deadline);
        shared
    }

    pub(crate) fn set(&self, exp: u64, deadline: Instant) {
        let nanos = deadline.saturating_duration_since(self.base).as_nanos();
        self.deadline_nanos
            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Release);
        self.exp.store(exp, Ordering::Release);
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.base + Duration::from_nanos(self.deadline_nanos.load(Ordering::Acquire))
    }

    pub(crate) fn exp(&self) -> u64 {
        self.exp.load(Ordering::Acquire)
    }

    pub(crate) fn has_passed(&self) -> bool {
        Instant::now() >= self.deadline()
    }
}

/// The monotonic instant at which the wall clock reads `exp`. Sub-second
/// precision comes from the wall clock's own nanoseconds; after this
/// conversion, only the monotonic clock is consulted.
pub(crate) fn monotonic_instant_of(exp: u64) -> Instant {
    let now = Instant::now();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let exp = Duration::from_secs(exp);
    match exp.checked_sub(wall) {
        Some(ahead) => now
            .checked_add(ahead)
            .unwrap_or(now + Duration::from_secs(86400 * 365 * 100)),
        None => now.checked_sub(wall - exp).unwrap_or(now),
    }
}

/// Sliding-window limiter: at most `limit` attempts in any `window`.
#[derive(Debug)]
pub(crate) struct RenewLimiter {
    limit: usize,
    window: Duration,
    attempts: VecDeque<Instant>,
}

impl RenewLimiter {
    pub(crate) fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: limit as usize,
            window,
            attempts: VecDeque::new(),
        }
    }

    /// Records an attempt at `now`; false when it is one too many.
    pub(crate) fn attempt(&mut self, now: Instant) -> bool {
        while self
            .attempts
            .front()
            .is_some_and(|first| now.duration_since(*first) >= self.window)
        {
            self.attempts.pop_front();
        }
        if self.attempts.len() >= self.limit {
            return false;
        }
        self.attempts.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limiter_allows_r_attempts_in_any_window() {
        let mut limiter = RenewLimiter::new(3, Duration::from_secs(60));
        let start = Instant::now();
        assert!(limiter.attempt(start));
        assert!(limiter.attempt(start + Duration::from_secs(10)));
        assert!(limiter.attempt(start + Duration::from_secs(20)));
        assert!(!limiter.attempt(start + Duration::from_secs(59)));
        // The first attempt leaves the window at exactly 60 s.
        assert!(limiter.attempt(start + Duration::from_secs(60)));
        assert!(!limiter.attempt(start + Duration::from_secs(61)));
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_is_shared_and_monotonic() {
        let start = Instant::now();
        let shared = SharedDeadline::new(100, start + Duration::from_millis(1500));
        assert!(!shared.has_passed());
        tokio::time::advance(Duration::from_millis(1499)).await;
        assert!(!shared.has_passed());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(shared.has_passed());
        shared.set(200, start + Duration::from_secs(10));
        assert!(!shared.has_passed());
        assert_eq!(shared.exp(), 200);
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
