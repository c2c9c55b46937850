//! Noticing that Redis lost the cluster's data, from what Redis says
//! rather than a guess.
//!
//! The cluster keeps one key, `<prefix>:epoch`, holding a random value
//! stamped with the `run_id` of the Redis process that it was set under.
//! Each node remembers the value it last saw. Redis losing its data (a
//! restart without persistence, a `FLUSHALL`) loses the key with it; a
//! Redis that comes back with *older* data (a restart from a snapshot, a
//! failover to a replica that had not caught up) has another `run_id`, so
//! its epoch is not trusted either:
//!
//! - **gone**, where this node had seen one: data loss. The node writes
//!   back every entry it knows that Redis lacks, then sets a new epoch.
//! - **set under another Redis run**: maybe data loss. The node resyncs,
//!   writes back what Redis lacks (a loss only if anything was missing),
//!   and stamps a new epoch.
//! - **changed**: another node re-seeded (or lost and re-created it); this
//!   node resyncs and writes back what it still knows that Redis lacks.
//! - **absent, and never seen by this node**: a node that just started
//!   cannot tell a new cluster from one whose Redis lost everything. It
//!   stays stale for a settling time (long enough for every live node to
//!   reconnect and notice the loss) and, while a node is re-seeding
//!   (`<prefix>:seeding`, a short-lived lease), for as long as that lasts.
//!   If no node claimed the epoch by then, it starts one itself.
//!
//! Only the background task reads and writes an [`Epoch`]: it owns it.

use std::time::{Duration, Instant};

/// What the Redis keys said at one look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Observed {
    /// `<prefix>:epoch`, if it was set under this Redis run.
    pub(super) epoch: Option<Vec<u8>>,
    /// An epoch is there, set under another Redis run: the data may be
    /// older than the nodes' (a snapshot, a replica).
    pub(super) other_run: bool,
    /// Whether `<prefix>:seeding` is held: a node is writing entries back.
    pub(super) seeding: bool,
    /// This Redis run's id, to stamp a new epoch with.
    pub(super) run_id: Vec<u8>,
}

impl Observed {
    pub(super) fn new(epoch: Option<Vec<u8>>, seeding: bool, run_id: &[u8]) -> Self {
        let this_run = |epoch: &Vec<u8>| {
            epoch
                .rsplit(|byte| *byte == b'@')
                .next()
                .is_some_and(|stamp| stamp == run_id)
                && epoch.contains(&b'@')
        };
        let this = epoch.as_ref().map(this_run);
        Self {
            epoch: epoch.filter(|_| this == Some(true)),
            other_run: this == Some(false),
            seeding,
            run_id: run_id.to_vec(),
        }
    }

    /// A new epoch value for this Redis run: `random` stamped with it.
    pub(super) fn stamp(&self, random: &str) -> Vec<u8> {
        let mut epoch = format!("{random}@").into_bytes();
        epoch.extend_from_slice(&self.run_id);
        epoch
    }
}

/// Why this node concluded Redis lost entries, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Loss {
    /// The epoch this node had seen is gone.
    EpochMissing,
    /// Entries this node knows were stored are not (and still matter).
    EntriesMissing,
}

impl Loss {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Loss::EpochMissing => "epoch_missing",
            Loss::EntriesMissing => "entries_missing",
        }
    }
}

/// What to do after a look at the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Nothing changed since the last sync.
    Current,
    /// Read everything stored and write back what Redis lacks; `lost` when
    /// the epoch this node had seen is gone.
    Sync { lost: bool },
    /// Redis holds no epoch and this node never saw one: stay stale, and
    /// look again later.
    Wait,
}

/// The epoch this node last saw, and since when it has found none.
#[derive(Debug, Default)]
pub(super) struct Epoch {
    seen: Option<Vec<u8>>,
    absent_since: Option<Instant>,
}

impl Epoch {
    /// Judges one look at the keys. `synced`: this node's mirror is fresh
    /// (a sync completed on this connection). `settle`: how long a node
    /// that never saw an epoch waits for another to re-seed.
    pub(super) fn assess(
        &mut self,
        observed: &Observed,
        synced: bool,
        now: Instant,
        settle: Duration,
    ) -> Step {
        match (&observed.epoch, &self.seen) {
            (Some(current), Some(seen)) if current == seen && synced => {
                self.absent_since = None;
                Step::Current
            }
            (Some(_), _) => {
                self.absent_since = None;
                Step::Sync { lost: false }
            }
            // Set under another run: resync, and a loss only if entries
            // are found missing.
            (None, Some(_)) if observed.other_run => Step::Sync { lost: false },
            (None, Some(_)) => Step::Sync { lost: true },
            (None, None) => {
                if observed.seeding {
                    // Someone is writing entries back: wait for them,
                    // however long it takes.
                    self.absent_since = Some(now);
                }
                let since = *self.absent_since.get_or_insert(now);
                if now.saturating_duration_since(since) < settle {
                    Step::Wait
                } else {
                    Step::Sync { lost: false }
                }
            }
        }
    }

    /// Records the epoch Redis holds after a sync (the one this node found,
    /// or the one it set).
    pub(super) fn saw(&mut self, epoch: Vec<u8>) {
        self.seen = Some(epoch);
        self.absent_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(epoch: Option<&str>, seeding: bool) -> Observed {
        let epoch = epoch.map(|epoch| format!("{epoch}@run-1").into_bytes());
        Observed::new(epoch, seeding, b"run-1")
    }

    fn stamped(epoch: &str) -> Vec<u8> {
        format!("{epoch}@run-1").into_bytes()
    }

    #[test]
    fn an_epoch_counts_only_under_the_redis_run_that_set_it() {
        let here = Observed::new(Some(b"e1@run-1".to_vec()), false, b"run-1");
        assert_eq!(here.epoch.as_deref(), Some(&b"e1@run-1"[..]));
        assert!(!here.other_run);
        for foreign in [&b"e1@run-0"[..], b"e1", b"e1@", b"run-1", b"\xff@run-2"] {
            let there = Observed::new(Some(foreign.to_vec()), false, b"run-1");
            assert_eq!(there.epoch, None, "{foreign:?}");
            assert!(there.other_run, "{foreign:?}");
        }
        let none = Observed::new(None, true, b"run-1");
        assert!(none.epoch.is_none() && !none.other_run && none.seeding);
        assert_eq!(here.stamp("e2"), b"e2@run-1");
        // A server without a run id: stamps still compare.
        let bare = Observed::new(Some(b"e1@".to_vec()), false, b"");
        assert_eq!(bare.epoch.as_deref(), Some(&b"e1@"[..]));
    }

    #[test]
    fn a_node_that_saw_the_epoch_resyncs_when_redis_runs_anew() {
        let t = Instant::now();
        let mut epoch = Epoch::default();
        epoch.saw(stamped("e1"));
        // Redis restarted from a snapshot: the old epoch, another run.
        let restored = Observed::new(Some(stamped("e1")), false, b"run-2");
        assert_eq!(
            epoch.assess(&restored, true, t, SETTLE),
            Step::Sync { lost: false }
        );
        // A new node treats it as no epoch at all: it waits.
        assert_eq!(
            Epoch::default().assess(&restored, false, t, SETTLE),
            Step::Wait
        );
    }

    const SETTLE: Duration = Duration::from_secs(10);

    #[test]
    fn a_node_that_saw_the_epoch_detects_its_loss_and_its_change() {
        let t = Instant::now();
        let mut epoch = Epoch::default();
        // A first look: sync, whatever the value.
        assert_eq!(
            epoch.assess(&observed(Some("e1"), false), false, t, SETTLE),
            Step::Sync { lost: false }
        );
        epoch.saw(stamped("e1"));
        assert_eq!(
            epoch.assess(&observed(Some("e1"), false), true, t, SETTLE),
            Step::Current
        );
        // Same value, but this connection has not synced yet: sync.
        assert_eq!(
            epoch.assess(&observed(Some("e1"), false), false, t, SETTLE),
            Step::Sync { lost: false }
        );
        // Gone: data loss, at once (no settling for a node that knows).
        assert_eq!(
            epoch.assess(&observed(None, false), true, t, SETTLE),
            Step::Sync { lost: true }
        );
        assert_eq!(
            epoch.assess(&observed(None, true), true, t, SETTLE),
            Step::Sync { lost: true }
        );
        // Changed by another node: resync, not a loss of this node's own.
        assert_eq!(
            epoch.assess(&observed(Some("e2"), false), true, t, SETTLE),
            Step::Sync { lost: false }
        );
    }

    #[test]
    fn a_new_node_waits_for_the_settling_time_and_for_any_reseeding() {
        let t = Instant::now();
        let mut epoch = Epoch::default();
        let empty = observed(None, false);
        assert_eq!(epoch.assess(&empty, false, t, SETTLE), Step::Wait);
        assert_eq!(
            epoch.assess(&empty, false, t + SETTLE - Duration::from_millis(1), SETTLE),
            Step::Wait
        );
        // A node re-seeds: the wait starts again from there.
        assert_eq!(
            epoch.assess(&observed(None, true), false, t + SETTLE, SETTLE),
            Step::Wait
        );
        assert_eq!(
            epoch.assess(
                &empty,
                false,
                t + SETTLE * 2 - Duration::from_millis(1),
                SETTLE
            ),
            Step::Wait
        );
        // Nobody claimed the epoch: this node starts the cluster.
        assert_eq!(
            epoch.assess(&empty, false, t + SETTLE * 2, SETTLE),
            Step::Sync { lost: false }
        );
        // An epoch appearing ends the wait at once.
        let mut other = Epoch::default();
        assert_eq!(other.assess(&empty, false, t, SETTLE), Step::Wait);
        assert_eq!(
            other.assess(&observed(Some("e1"), false), false, t, SETTLE),
            Step::Sync { lost: false }
        );
        other.saw(stamped("e1"));
        // And a later wait starts afresh.
        let mut third = Epoch::default();
        assert_eq!(third.assess(&empty, false, t, SETTLE), Step::Wait);
        third.saw(stamped("e1"));
        assert_eq!(
            third.assess(&empty, true, t + SETTLE * 5, SETTLE),
            Step::Sync { lost: true }
        );
    }
}
