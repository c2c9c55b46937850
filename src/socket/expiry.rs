//! The timer task's visit: the notice before `exp`, the close at the
//! deadline, and the next wake-up.

use std::sync::{Arc, TryLockError};

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
        if !core.notice_sent && Instant::now() >= notice_at(exp_at, &core.settings.session) {
            let expires_in = exp_at.saturating_duration_since(Instant::now()).as_secs();
            let notice = ServerMessage::Expiring {
                exp: self.deadline.exp(),
                expires_in,
            };
            self.send_control(&mut core, &notice);
            core.notice_sent = true;
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

/// When to send `auth.expiring`: `notify_before` ahead of `exp` (not of the
/// leeway-extended deadline), or at once if that moment has passed.
pub(super) fn notice_at(exp_at: Instant, session: &SessionConfig) -> Instant {
    exp_at
        .checked_sub(session.notify_before)
        .unwrap_or_else(Instant::now)
}
