//! What this node knows of the cluster's commands: every command it issued
//! or applied, with the exact bytes Redis stores for it, kept until the
//! command stops mattering.
//!
//! Two uses. A command that reaches the node twice (from the channel and
//! from a resync) is applied once. And when Redis has lost entries (a
//! restart without persistence, a failover to a replica that had not
//! caught up, a `FLUSHALL`), the node writes back what it knows, byte for
//! byte and with the original score, so that a node started later finds
//! every revocation again (anti-entropy).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use super::message::{Command, millis};

/// Which sorted set an entry lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Set {
    /// `<prefix>:revocations`.
    Revocations,
    /// `<prefix>:reauth`.
    Reauth,
}

impl Set {
    pub(super) fn of(command: &Command) -> Self {
        match command {
            Command::Revoke { .. } => Set::Revocations,
            Command::Reauthenticate { .. } => Set::Reauth,
        }
    }
}

/// One command as Redis stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) set: Set,
    /// Its score: when it stops mattering (milliseconds since the epoch).
    pub(super) keep_until_ms: u64,
    /// The member: the envelope's JSON, as published.
    pub(super) payload: Arc<[u8]>,
}

impl Entry {
    /// `command`, stored as `payload` (its envelope's JSON).
    pub(super) fn new(command: &Command, payload: &[u8]) -> Self {
        Self {
            set: Set::of(command),
            keep_until_ms: command.keep_until_ms(),
            payload: payload.into(),
        }
    }
}

/// The commands this node has issued or applied, by id, numbered in the
/// order this node learnt them.
#[derive(Debug, Default)]
pub(super) struct Known {
    entries: HashMap<Box<str>, (u64, Entry)>,
    next: u64,
}

impl Known {
    /// Records the command `id`; false if it was already known.
    pub(super) fn insert(&mut self, id: &str, entry: Entry) -> bool {
        if self.entries.contains_key(id) {
            return false;
        }
        self.entries.insert(id.into(), (self.next, entry));
        self.next += 1;
        true
    }

    /// A mark to pass to [`missing`](Self::missing): what is known from
    /// now on is not judged against a read of Redis that starts now (it
    /// may land in Redis after the read).
    pub(super) fn mark(&self) -> u64 {
        self.next
    }

    /// Forgets the commands that no longer matter.
    pub(super) fn prune(&mut self, now: SystemTime) {
        let now = millis(now);
        self.entries
            .retain(|_, (_, entry)| entry.keep_until_ms > now);
    }

    /// The entries Redis lacks: known before `mark`, not among `stored`,
    /// not waiting in the outbox (`unpublished`: the outbox stores and
    /// publishes those), and still mattering after `not_before_ms`. The
    /// margin keeps nodes whose clocks differ by less than it from writing
    /// back an entry another node has just dropped as expired.
    pub(super) fn missing(
        &self,
        mark: u64,
        stored: &HashSet<&[u8]>,
        unpublished: &HashSet<&str>,
        not_before_ms: u64,
    ) -> Vec<Entry> {
        self.entries
            .iter()
            .filter(|(id, (order, entry))| {
                *order < mark
                    && entry.keep_until_ms > not_before_ms
                    && !unpublished.contains(&***id)
                    && !stored.contains(&*entry.payload)
            })
            .map(|(_, (_, entry))| entry.clone())
            .collect()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::message::instant;

    fn entry(payload: &str, keep_until_ms: u64) -> Entry {
        Entry {
            set: Set::Revocations,
            keep_until_ms,
            payload: payload.as_bytes().into(),
        }
    }

    #[test]
    fn an_id_is_known_once_until_pruned() {
        let mut known = Known::default();
        assert!(known.insert("a", entry("A", 2_000)));
        assert!(!known.insert("a", entry("A", 2_000)));
        assert!(known.insert("b", entry("B", 5_000)));
        known.prune(instant(3_000));
        assert_eq!(known.len(), 1);
        assert!(known.insert("a", entry("A", 2_000)));
        assert!(!known.insert("b", entry("B", 5_000)));
    }

    #[test]
    fn missing_is_what_redis_lacks_and_still_matters() {
        let mut known = Known::default();
        known.insert("stored", entry("S", 10_000));
        known.insert("lost", entry("L", 10_000));
        known.insert("queued", entry("Q", 10_000));
        known.insert("ending", entry("E", 1_500));
        let stored: HashSet<&[u8]> = [&b"S"[..], b"unknown to this node"].into();
        let unpublished: HashSet<&str> = ["queued"].into();
        let mark = known.mark();
        known.insert("in flight", entry("F", 10_000));
        let missing = known.missing(mark, &stored, &unpublished, 2_000);
        assert_eq!(missing, vec![entry("L", 10_000)]);
        // Everything, when Redis is empty and nothing waits in the outbox.
        let mut all = known.missing(mark, &HashSet::new(), &HashSet::new(), 0);
        all.sort_by_key(|entry| entry.payload.clone());
        let payloads: Vec<&[u8]> = all.iter().map(|entry| &*entry.payload).collect();
        assert_eq!(payloads, [&b"E"[..], b"L", b"Q", b"S"]);
    }
}
