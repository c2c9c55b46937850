//! Stand-ins for the local revocation model of branch `h-revoke`, until it
//! lands: the same shapes, so that the cluster code only changes its imports.
#![allow(missing_docs, dead_code, unreachable_pub)]

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::Connections;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revocation {
    User { iss: Option<String>, sub: String },
    Token { jti: String },
    IssuedBefore { iss: Option<String>, sub: String, before: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StalePolicy {
    FailOpen,
    FailClosed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReauthSelector {
    All,
    User { iss: Option<String>, sub: String },
}

pub(crate) fn apply_revocation(
    connections: &Connections,
    revocation: Revocation,
    _revoked_at: SystemTime,
) -> usize {
    match revocation {
        Revocation::User { sub, .. } => connections.close_subject(&sub),
        _ => 0,
    }
}

pub(crate) fn reauthenticate(
    _connections: &Connections,
    _selector: ReauthSelector,
    _grace: Duration,
) -> usize {
    0
}

pub(crate) fn set_stale(_connections: &Connections, _policy: Option<StalePolicy>) {}
