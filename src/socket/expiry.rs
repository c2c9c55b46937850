//! The timer task's visit: the notice before `exp`, the close at the
//! deadline, and the next wake-up.

use std::sync::{Arc, TryLockError};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::core::Shared;
use crate::config::SessionConfig;
use crate::connection::AuthEvent;
use crate::protocol::ServerMessage;
use crate::telemetry;
use crate::timers::{Fired, Timed};

impl<C> Timed for Shared<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    fn fire(self: Arc<Self>, fired: Instant) -> Fired {
        // Never wait for a connection's lock here: the timer task serves
        // every connection of the layer.
        let mut core = match self.core.try_lock() {
            Ok(core) => core,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Fired::Busy,
        };
        // Every entry at or before the one firing has left the schedule.
        if core.armed_at.is_some_and(|armed| armed <= fired) {
            core.armed_at = None;
        }
        if core.ending.is_some() {
            return Fired::Done;
        }
        // Every token gets its notice, even one whose notice and deadline
        // fall together (no notice window, no leeway).
        let exp_at = self.deadline.exp_at();
        // The notice instant first: a lead the clock cannot reach back to
        // makes it "now" as it is computed, which a clock read before it
        // would never reach (the timer would re-arm every millisecond and
        // the notice never go out).
        let notice_at = self.notice_at(&core.settings.session);
        if !core.notice_sent && Instant::now() >= notice_at {
            let expires_in = exp_at.saturating_duration_since(Instant::now()).as_secs();
            let notice = ServerMessage::Expiring {
                exp: self.deadline.exp(),
                expires_in,
            };
            self.send_control(&mut core, &notice);
            self.notice_sent(&mut core);
            core.emit(AuthEvent::Expiring {
                exp: self.deadline.exp(),
                expires_in,
            });
            // Last: a panicking log or metrics hook must not lose the notice.
            telemetry::expiring(&self.identity, self.deadline.exp(), expires_in);
        }
        if self.deadline.has_passed() {
            self.end(&mut core, self.deadline.ending());
            return Fired::Done;
        }
        self.arm(&mut core);
        Fired::Done
    }
}

impl<C> Shared<C> {
    /// When to send `auth.expiring` for the current token: `notify_before`
    /// ahead of `exp` (not of the leeway-extended deadline), plus this
    /// connection's share of the notice jitter window, or at once if that
    /// moment has passed.
    pub(super) fn notice_at(&self, session: &SessionConfig) -> Instant {
        // Fixed per connection and token: re-arming never moves it, and
        // tokens minted in the same second spread over the window.
        let seed = self.identity.connection_id() ^ self.deadline.exp().rotate_left(32);
        let ahead = session
            .notify_before
            .saturating_add(share_of(session.notice_jitter, seed));
        self.deadline
            .exp_at()
            .checked_sub(ahead)
            .unwrap_or_else(Instant::now)
    }
}

/// A point in `[0, window)`, spread evenly over seeds (the spread
/// matters, not unpredictability).
fn share_of(window: Duration, seed: u64) -> Duration {
    let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(crate::jitter::mix(seed) % nanos)
}
