//! The local side: what a node does with a command, on its own
//! [`Connections`], without waiting on Redis.

use std::collections::HashMap;
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

/// The ids of the commands this node has applied, each kept until its
/// command stops mattering, so that the same command coming from the
/// channel and from a resync is applied once.
#[derive(Debug, Default)]
pub(super) struct Applied {
    until: HashMap<String, u64>,
}

impl Applied {
    /// Records `id`; false if it was already there.
    pub(super) fn insert(&mut self, id: &str, keep_until_ms: u64) -> bool {
        if self.until.contains_key(id) {
            return false;
        }
        self.until.insert(id.to_owned(), keep_until_ms);
        true
    }

    /// Forgets the ids whose commands no longer matter.
    pub(super) fn prune(&mut self, now: SystemTime) {
        let now = millis(now);
        self.until.retain(|_, until| *until > now);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.until.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_applied_once_until_pruned() {
        let mut applied = Applied::default();
        assert!(applied.insert("a", 2_000));
        assert!(!applied.insert("a", 2_000));
        assert!(applied.insert("b", 5_000));
        applied.prune(instant(3_000));
        assert_eq!(applied.len(), 1);
        assert!(applied.insert("a", 2_000));
        assert!(!applied.insert("b", 5_000));
    }
}
