//! What travels between nodes: one JSON envelope per command, published on
//! the channel and stored, byte for byte, as a member of a sorted set.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::revocation::Selector;

/// The envelope's format version; a node ignores (with a warning) the
/// versions it does not know.
pub(super) const VERSION: u8 = 1;

/// One command from one node to every node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Envelope {
    pub(super) v: u8,
    /// The node that issued it: its own messages are already applied.
    pub(super) node: String,
    /// Unique per command: a node applies each id once, from the channel
    /// or from a resync, whichever comes first.
    pub(super) id: String,
    /// When it was issued (milliseconds since the epoch): the start of the
    /// propagation lag.
    pub(super) sent_at_ms: u64,
    pub(super) command: Command,
}

/// What a node is asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Command {
    /// Store the revocation with its original instant and close the
    /// matching sockets (4403).
    Revoke {
        revocation: Selector,
        revoked_at_ms: u64,
        /// When every node may forget it (the Redis entry's score).
        drop_at_ms: u64,
    },
    /// Ask the matching sockets to renew before `deadline_ms`.
    Reauthenticate {
        selector: Selector,
        deadline_ms: u64,
    },
}

impl Command {
    /// Who it is about.
    pub(super) fn selector(&self) -> &Selector {
        match self {
            Command::Revoke { revocation, .. } => revocation,
            Command::Reauthenticate { selector, .. } => selector,
        }
    }

    /// Whether it may travel between nodes: not when it names one
    /// connection, whose id is one node's own.
    pub(super) fn is_cluster_wide(&self) -> bool {
        !matches!(self.selector(), Selector::Connection { .. })
    }

    /// A label for metrics and events.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Command::Revoke { .. } => "revoke",
            Command::Reauthenticate { .. } => "reauthenticate",
        }
    }

    /// Until when the command matters: a stored entry's score, and how long
    /// a node remembers that it applied it.
    pub(super) fn keep_until_ms(&self) -> u64 {
        match self {
            Command::Revoke { drop_at_ms, .. } => *drop_at_ms,
            Command::Reauthenticate { deadline_ms, .. } => *deadline_ms,
        }
    }
}

/// Why a payload from Redis was not applied.
#[derive(Debug, thiserror::Error)]
pub(super) enum Malformed {
    #[error("not a command envelope: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unknown envelope version {0}")]
    Version(u8),
}

impl Envelope {
    pub(super) fn new(node: &str, command: Command, now: SystemTime) -> Self {
        Self {
            v: VERSION,
            node: node.to_owned(),
            id: random_id(),
            sent_at_ms: millis(now),
            command,
        }
    }

    pub(super) fn to_json(&self) -> String {
        // A struct of strings, integers and enums: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a payload from the channel or the store. Never panics: any
    /// byte string is either an envelope or a [`Malformed`].
    pub(super) fn parse(payload: &[u8]) -> Result<Self, Malformed> {
        #[derive(Deserialize)]
        struct Version {
            v: u8,
        }
        // The version first, so that a later format is reported as such
        // and not as a parse error.
        let Version { v } = serde_json::from_slice(payload)?;
        if v != VERSION {
            return Err(Malformed::Version(v));
        }
        Ok(serde_json::from_slice(payload)?)
    }

    /// How long ago it was issued, by this machine's clock (zero if the
    /// clocks disagree the other way).
    pub(super) fn age(&self, now: SystemTime) -> Duration {
        Duration::from_millis(millis(now).saturating_sub(self.sent_at_ms))
    }
}

/// Milliseconds since the epoch (zero before it).
pub(super) fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// A duration in whole milliseconds (saturating).
pub(super) fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The instant `ms` milliseconds after the epoch.
pub(super) fn instant(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// 128 random bits as 32 hex digits: unique ids, not secrets.
pub(super) fn random_id() -> String {
    use crate::jitter::random_u64;
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revoke() -> Envelope {
        Envelope::new(
            "node-a",
            Command::Revoke {
                revocation: Selector::Token { jti: "j1".into() },
                revoked_at_ms: 1_000,
                drop_at_ms: 2_000,
            },
            instant(1_000),
        )
    }

    #[test]
    fn an_envelope_survives_the_round_trip() {
        let envelope = revoke();
        assert_eq!(
            Envelope::parse(envelope.to_json().as_bytes()).unwrap(),
            envelope
        );
        assert_eq!(envelope.command.kind(), "revoke");
        assert_eq!(envelope.command.keep_until_ms(), 2_000);
        assert_eq!(envelope.age(instant(1_250)), Duration::from_millis(250));
        assert_eq!(envelope.age(instant(0)), Duration::ZERO);
    }

    #[test]
    fn ids_differ() {
        let (a, b) = (random_id(), random_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn anything_else_is_malformed_not_a_panic() {
        let valid = revoke().to_json();
        let payloads: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"null".to_vec(),
            b"{}".to_vec(),
            b"\xff\xfe".to_vec(),
            br#"{"v":1}"#.to_vec(),
            br#"{"v":300}"#.to_vec(),
            valid.replace("\"revoke\"", "\"launch\"").into_bytes(),
            valid.as_bytes()[..valid.len() / 2].to_vec(),
        ];
        for payload in payloads {
            assert!(Envelope::parse(&payload).is_err(), "{payload:?}");
        }
        assert!(matches!(
            Envelope::parse(valid.replace("\"v\":1", "\"v\":2").as_bytes()),
            Err(Malformed::Version(2))
        ));
    }
}
