//! The local side: what a node does with a command, on its own
//! [`Connections`], without waiting on Redis.

use std::time::{Duration, SystemTime};

use super::message::{Command, instant, millis};
use crate::{Connections, revocation::StalePolicy};

/// Where commands are applied: the layer's [`Connections`], or a recorder
/// in the unit tests.
pub(super) trait Mirror: Send + Sync + 'static {
    /// Applies a command; returns how many local sockets it reached.
    fn apply(&self, command: &Command, now: SystemTime) -> usize;
    /// `Some(policy)` while the mirror may be missing commands.
    fn set_stale(&self, policy: Option<StalePolicy>);
}

impl Mirror for Connections {
    fn apply(&self, command: &Command, now: SystemTime) -> usize {
        match command {
            Command::Revoke {
                revocation,
                revoked_at_ms,
                ..
            } => self.apply_revocation(revocation.clone(), instant(*revoked_at_ms)),
            Command::Reauthenticate {
                selector,
                deadline_ms,
            } => {
                // The deadline is absolute: a node that hears of the
                // request late (a resync) gives what is left of the grace.
                let grace = Duration::from_millis(deadline_ms.saturating_sub(millis(now)));
                Connections::reauthenticate(self, selector.clone(), grace)
            }
        }
    }

    fn set_stale(&self, policy: Option<StalePolicy>) {
        self.set_revocations_stale(policy);
    }
}
