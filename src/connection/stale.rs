//! The staleness switch of a layer's revocation list: set by a cluster
//! while its copy may be behind, read by every new handshake.

use std::sync::atomic::{AtomicU8, Ordering};

use super::StalePolicy;

/// New handshakes are refused while the revocation list is stale
/// ([`StalePolicy::FailClosed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RevocationsStale;

const FRESH: u8 = 0;
const STALE_OPEN: u8 = 1;
const STALE_CLOSED: u8 = 2;

/// `None` (fresh) or the policy while stale, in one atomic: a handshake
/// reads it without a lock.
#[derive(Debug, Default)]
pub(super) struct Staleness(AtomicU8);

impl Staleness {
    /// Sets it; returns what it was.
    pub(super) fn set(&self, policy: Option<StalePolicy>) -> Option<StalePolicy> {
        let value = match policy {
            None => FRESH,
            Some(StalePolicy::FailOpen) => STALE_OPEN,
            Some(StalePolicy::FailClosed) => STALE_CLOSED,
        };
        policy_of(self.0.swap(value, Ordering::AcqRel))
    }

    pub(super) fn get(&self) -> Option<StalePolicy> {
        policy_of(self.0.load(Ordering::Acquire))
    }

    /// Whether a new handshake may proceed.
    pub(super) fn check_fresh(&self) -> Result<(), RevocationsStale> {
        if self.0.load(Ordering::Acquire) == STALE_CLOSED {
            Err(RevocationsStale)
        } else {
            Ok(())
        }
    }
}

fn policy_of(value: u8) -> Option<StalePolicy> {
    match value {
        STALE_OPEN => Some(StalePolicy::FailOpen),
        STALE_CLOSED => Some(StalePolicy::FailClosed),
        _ => None,
    }
}
