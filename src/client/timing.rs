//! When to renew: the server's clock over the client's own.
//!
//! The client needs "how long until the server considers the token
//! expired". Its own wall clock may be hours off, so it keeps an estimate of
//! the server's clock instead: from each `auth.expiring` (`exp - expires_in`
//! was the server's time when it sent the notice) and, on each connection
//! until its first notice, from the `Date` header of the upgrade response
//! (which errs early, by up to a second plus the upgrade's round trip).
//! Only without either does it fall back to its own clock. Whatever the
//! estimate says, a token the server has just accepted but that looks
//! (nearly) expired arms no timer: the client then waits for the server's
//! notice, which every server of the contract sends, instead of renewing in
//! a loop.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::Backoff;

/// The wall clock the client reads (injectable, for tests and for
/// applications with a better time source).
pub(super) type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The longest delay the client ever arms: no connection lives a century
/// without renewing, and every instant up to here is representable.
pub(super) const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A token whose remaining life looks shorter than this arms no local
/// renewal timer: the server's notice decides instead.
const MIN_TRUSTED_LIFETIME: Duration = Duration::from_secs(1);

/// The client's estimate of the server's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ServerClock {
    /// Server time minus local time, in milliseconds, once known.
    offset_ms: Option<i128>,
}

impl ServerClock {
    /// An `auth.expiring`: the server sent it at `exp - expires_in`
    /// (`expires_in` is rounded down, so this errs towards renewing early).
    pub(super) fn observe_notice(&mut self, exp: u64, expires_in: u64, local_now: SystemTime) {
        let server_now = (i128::from(exp) - i128::from(expires_in)) * 1000;
        self.offset_ms = Some(server_now - millis(local_now));
    }

    /// The `Date` of the upgrade response (whole seconds, truncated), and
    /// the local time the request was sent. The server stamped it after
    /// that, while its clock read less than `date` + 1 s, so its clock read
    /// less than that at `sent`: taking that bound errs towards renewing
    /// early (by at most a second and the handshake's duration). The time
    /// the response was read would err late by however long it waited to
    /// be read, as it does in a connection storm.
    pub(super) fn observe_date(&mut self, date: u64, sent: SystemTime) {
        let server_at_sent = (i128::from(date) + 1) * 1000;
        self.offset_ms = Some(server_at_sent - millis(sent));
    }

    /// How long until `exp` on the server's clock, within `[0, FAR_FUTURE]`.
    pub(super) fn remaining(&self, exp: u64, local_now: SystemTime) -> Duration {
        let server_now = millis(local_now) + self.offset_ms.unwrap_or(0);
        let left = i128::from(exp) * 1000 - server_now;
        let far = FAR_FUTURE.as_millis() as i128;
        Duration::from_millis(left.clamp(0, far) as u64)
    }
}

/// Milliseconds since the epoch, negative before it.
fn millis(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_millis()).unwrap_or(i128::MAX / 4),
        Err(before) => -i128::try_from(before.duration().as_millis()).unwrap_or(i128::MAX / 4),
    }
}

/// When to renew a token with `remaining` life left, by the client's own
/// timer: `renew_before` ahead of expiry (at most halfway through a shorter
/// life), moved earlier by up to `jitter` (at most half the wait), where
/// `unit` in `[0, 1]` picks the point in that window. `None` when the token
/// looks (nearly) expired: then the server's notice decides.
pub(super) fn renewal_delay(
    remaining: Duration,
    renew_before: Duration,
    jitter: Duration,
    unit: f64,
) -> Option<Duration> {
    if remaining < MIN_TRUSTED_LIFETIME {
        return None;
    }
    let remaining = remaining.min(FAR_FUTURE);
    let ahead = renew_before.min(remaining / 2);
    let latest = remaining - ahead;
    let window = jitter.min(latest / 2);
    Some(latest - window.mul_f64(unit_or_zero(unit)))
}

/// How long to wait before answering an `auth.expiring` whose token ends in
/// `expires_in` seconds: up to `jitter`, but at most a quarter of the time
/// left, so that a slow provider and a retry still fit.
pub(super) fn notice_delay(expires_in: u64, jitter: Duration, unit: f64) -> Duration {
    let window = jitter.min(Duration::from_secs(expires_in).min(FAR_FUTURE) / 4);
    window.mul_f64(unit_or_zero(unit))
}

fn unit_or_zero(unit: f64) -> f64 {
    if (0.0..=1.0).contains(&unit) {
        unit
    } else {
        0.0
    }
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110
/// section 5.6.7), the only form a current server sends, into seconds since
/// the epoch.
pub(super) fn parse_http_date(text: &str) -> Option<u64> {
    let (_weekday, rest) = text.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: i64 = parts.next().filter(|d| d.len() == 2)?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next().filter(|y| y.len() == 4)?.parse().ok()?;
    let mut clock = parts.next()?.split(':');
    let mut field = |max: i64| -> Option<i64> {
        let value: i64 = clock.next().filter(|f| f.len() == 2)?.parse().ok()?;
        (0..=max).contains(&value).then_some(value)
    };
    let (hour, minute, second) = (field(23)?, field(59)?, field(60)?);
    if parts.next()? != "GMT" || parts.next().is_some() || !(1..=31).contains(&day) {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    u64::try_from(seconds).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Renewals the server may reject per token before the client lets the
/// connection expire and reconnects (each one counts against the server's
/// rate limit); also the attempts per token when its deadline is unknown.
pub(super) const MAX_RENEW_RETRIES: u32 = 3;

/// Renewal attempts stop this close to the deadline: the connection then
/// ends with 4401 and the client reconnects with a fresh token.
pub(super) const RENEW_MARGIN: Duration = Duration::from_secs(1);

/// When to try a renewal again after `failures` failed attempts, given the
/// token's `deadline`: with capped, jittered backoff (`unit` in `[0, 1)`
/// picks the point), each wait at most a quarter of the time left, until
/// `RENEW_MARGIN` before the deadline. A `counted` failure (a rejection by
/// the server) is retried at most `MAX_RENEW_RETRIES` times per token, the
/// attempts spread over the time left. Without a known deadline, at most
/// `MAX_RENEW_RETRIES` attempts. Never panics, whatever the backoff.
pub(super) fn retry_at(
    now: Instant,
    deadline: Option<Instant>,
    failures: u32,
    counted: bool,
    backoff: Backoff,
    unit: f64,
) -> Option<Instant> {
    let unit = if (0.0..1.0).contains(&unit) {
        unit
    } else {
        0.0
    };
    let Some(deadline) = deadline else {
        return (failures < MAX_RENEW_RETRIES)
            .then(|| at_or_far(now, backoff.ceiling(failures).mul_f64(unit)));
    };
    if counted && failures >= MAX_RENEW_RETRIES {
        return None;
    }
    let budget = deadline
        .checked_duration_since(now)?
        .checked_sub(RENEW_MARGIN)?;
    let spread = if counted {
        budget / (MAX_RENEW_RETRIES - failures + 1)
    } else {
        Duration::ZERO
    };
    // Equal jitter: at least half the step, so that retries never bunch up.
    let step = backoff.ceiling(failures).max(spread).min(budget / 4);
    let delay = step / 2 + (step / 2).mul_f64(unit);
    (!budget.is_zero()).then(|| at_or_far(now, delay))
}

/// `now + delay`, or a far-future instant where that does not fit.
pub(super) fn at_or_far(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Rng, at};

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_notice_corrects_a_clock_that_is_hours_off_either_way() {
        let server_now: u64 = 1_764_000_000;
        for skew in [-3 * 3600_i64, 3 * 3600, 0, 50] {
            let local_now = at(server_now.checked_add_signed(skew).unwrap());
            let mut clock = ServerClock::default();
            // Without a reference the local clock decides: hours off.
            let naive = clock.remaining(server_now + 60, local_now);
            if skew > 60 {
                assert_eq!(naive, Duration::ZERO);
                assert_eq!(renewal_delay(naive, S(60), S(30), 0.5), None);
            }
            clock.observe_notice(server_now + 30, 30, local_now);
            assert_eq!(
                clock.remaining(server_now + 3600, local_now),
                S(3600),
                "{skew}"
            );
            let mut by_date = ServerClock::default();
            by_date.observe_date(server_now, local_now);
            let left = by_date.remaining(server_now + 3600, local_now);
            assert!(left <= S(3600) && left >= S(3599), "{skew}: {left:?}");
        }
    }

    /// The server stamps the upgrade response somewhere between the
    /// request and the moment the client reads it, which in a connection
    /// storm can be seconds later: the estimate never puts the renewal
    /// after the true moment, and errs early by at most a second plus the
    /// handshake.
    #[test]
    fn a_date_read_late_never_delays_the_renewal() {
        let at_ms = |ms: i64| UNIX_EPOCH + Duration::from_millis(ms as u64);
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let mut next = |bound: usize| rng.below(bound) as i64;
        for _ in 0..10_000 {
            let skew = next(7_200_000) - 3_600_000; // server - local, within an hour
            let sent = 1_764_000_000_000 + next(1000);
            let stamped = sent + next(10_000); // a handshake of up to 10 s
            let read = stamped + next(10_000); // read up to 10 s after that
            let date = ((stamped + skew) / 1000) as u64;
            let exp = date + 3600;
            let mut clock = ServerClock::default();
            clock.observe_date(date, at_ms(sent));
            let truth = exp as i64 * 1000 - (read + skew);
            let left = clock.remaining(exp, at_ms(read)).as_millis() as i64;
            assert!(left <= truth, "{left} ms left, truly {truth}");
            assert!(
                left >= truth - 1000 - (stamped - sent),
                "{left} ms left, truly {truth}: too early"
            );
        }
    }

    #[test]
    fn renewal_delays_stay_in_range_for_any_exp() {
        let now = at(1_764_000_000);
        let clock = ServerClock::default();
        for exp in [
            0,
            1,
            1_764_000_000 - 3600,
            1_764_000_000,
            1 << 53,
            (1 << 53) + 1,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let remaining = clock.remaining(exp, now);
            assert!(remaining <= FAR_FUTURE);
            for unit in [0.0, 0.5, 1.0, f64::NAN, -1.0, 2.0] {
                if let Some(delay) = renewal_delay(remaining, S(60), S(30), unit) {
                    assert!(delay <= remaining && delay >= remaining / 4, "{exp} {unit}");
                    // The instant is representable.
                    assert!(tokio::time::Instant::now().checked_add(delay).is_some());
                } else {
                    assert!(remaining < MIN_TRUSTED_LIFETIME, "{exp}");
                }
            }
        }
        // Extreme clocks too.
        for local in [UNIX_EPOCH - S(1 << 40), UNIX_EPOCH, at(1 << 40)] {
            for exp in [0, u64::MAX] {
                assert!(clock.remaining(exp, local) <= FAR_FUTURE);
            }
        }
        assert!(notice_delay(u64::MAX, Duration::MAX, 1.0) <= FAR_FUTURE);
        assert_eq!(notice_delay(0, S(30), 1.0), Duration::ZERO);
    }

    #[test]
    fn renewal_is_spread_over_the_jitter_window() {
        // An hour-long token, renew 60 s ahead, 30 s of jitter.
        let earliest = renewal_delay(S(3600), S(60), S(30), 1.0).unwrap();
        let latest = renewal_delay(S(3600), S(60), S(30), 0.0).unwrap();
        assert_eq!((earliest, latest), (S(3510), S(3540)));
        let spread: std::collections::HashSet<_> = (0..100)
            .map(|i| renewal_delay(S(3600), S(60), S(30), f64::from(i) / 100.0).unwrap())
            .collect();
        assert_eq!(spread.len(), 100);
        // A short token: halfway, the window shrunk to fit.
        assert_eq!(renewal_delay(S(4), S(60), S(30), 0.0), Some(S(2)));
        assert_eq!(renewal_delay(S(4), S(60), S(30), 1.0), Some(S(1)));
        // No jitter: exactly `renew_before` ahead.
        assert_eq!(
            renewal_delay(S(600), S(60), Duration::ZERO, 0.7),
            Some(S(540))
        );
        // Answering a notice: within a quarter of what is left.
        assert_eq!(notice_delay(30, S(30), 1.0), Duration::from_millis(7500));
        assert_eq!(notice_delay(3600, S(10), 0.5), S(5));
    }

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(1_835_481_599)
        );
        for bad in [
            "",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Wed, 31 Dec 1969 23:59:59 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn renewal_retries_spread_over_the_remaining_life_until_the_deadline() {
        let now = Instant::now();
        let backoff = Backoff {
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
        };
        let deadline = Some(now + Duration::from_secs(60));
        // Provider failures: retried with capped backoff as long as life is left.
        for failures in [1, 5, 50, u32::MAX] {
            for unit in [0.0, 0.5, 0.999] {
                let at = retry_at(now, deadline, failures, false, backoff, unit).expect("a retry");
                assert!(
                    at > now && at <= now + Duration::from_secs(15),
                    "{failures} {unit}"
                );
            }
        }
        // Not within the last second.
        let close = Some(now + Duration::from_millis(900));
        assert_eq!(retry_at(now, close, 1, false, backoff, 0.5), None);
        assert_eq!(retry_at(now, Some(now), 1, false, backoff, 0.5), None);
        // Server rejections: three per token, spread out (not all in ~3 s).
        let first = retry_at(now, deadline, 1, true, backoff, 0.0).expect("a retry");
        assert!(first >= now + Duration::from_secs(7), "{:?}", first - now);
        assert!(retry_at(now, deadline, 2, true, backoff, 0.0).is_some());
        assert_eq!(retry_at(now, deadline, 3, true, backoff, 0.0), None);
        // No deadline known: a few attempts.
        assert!(retry_at(now, None, 2, false, backoff, 0.5).is_some());
        assert_eq!(retry_at(now, None, 3, false, backoff, 0.5), None);
    }

    #[test]
    fn an_extreme_backoff_never_overflows_the_retry_instant() {
        let now = Instant::now();
        let backoff = Backoff {
            base: Duration::MAX,
            max: Duration::MAX,
        };
        for deadline in [
            None,
            Some(now + Duration::from_secs(60)),
            Some(at_or_far(now, Duration::MAX)),
        ] {
            for failures in [0, 1, 2, 31, u32::MAX] {
                for counted in [false, true] {
                    if let Some(at) = retry_at(now, deadline, failures, counted, backoff, 0.999) {
                        assert!(at >= now);
                    }
                }
            }
        }
        assert!(at_or_far(now, Duration::MAX) > now);
        assert_eq!(
            at_or_far(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
    }
}
