//! The store's dated revocations (`store.rs`): one user's, or everyone's,
//! as cutoffs on `iat`, and the users' keyed by issuer and subject so that
//! a lookup borrows the token's own strings.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::time::SystemTime;

use super::revocation::seconds;

/// Users' revocations by `iss`, then `sub`. Tokens with an issuer are
/// keyed by it and tokens without one kept apart, so that every lookup
/// (each handshake and renewal) borrows the token's own strings: an
/// `Option<String>` key would need the token's `iss` copied into one.
#[derive(Debug, Default)]
pub(super) struct Users {
    pub(super) by_issuer: HashMap<String, HashMap<String, Cutoffs>>,
    pub(super) no_issuer: HashMap<String, Cutoffs>,
}

impl Users {
    pub(super) fn subjects(&self, iss: Option<&str>) -> Option<&HashMap<String, Cutoffs>> {
        match iss {
            Some(iss) => self.by_issuer.get(iss),
            None => Some(&self.no_issuer),
        }
    }

    pub(super) fn subjects_mut(
        &mut self,
        iss: Option<&str>,
    ) -> Option<&mut HashMap<String, Cutoffs>> {
        match iss {
            Some(iss) => self.by_issuer.get_mut(iss),
            None => Some(&mut self.no_issuer),
        }
    }

    /// The issuer's subjects, made if it has none yet.
    pub(super) fn subjects_entry(&mut self, iss: Option<&str>) -> &mut HashMap<String, Cutoffs> {
        match iss {
            Some(iss) => self.by_issuer.entry(iss.to_owned()).or_default(),
            None => &mut self.no_issuer,
        }
    }

    /// Forgets an issuer with no subject left.
    pub(super) fn prune(&mut self, iss: Option<&str>) {
        if let Some(iss) = iss
            && self.by_issuer.get(iss).is_some_and(HashMap::is_empty)
        {
            self.by_issuer.remove(iss);
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (Option<&str>, &HashMap<String, Cutoffs>)> {
        self.by_issuer
            .iter()
            .map(|(iss, subjects)| (Some(iss.as_str()), subjects))
            .chain(std::iter::once((None, &self.no_issuer)))
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.by_issuer.is_empty() && self.no_issuer.is_empty()
    }
}

/// One user's dated revocations, or everyone's.
#[derive(Debug, Default)]
pub(super) struct Cutoffs {
    /// The latest [`Selector::User`] (or [`Selector::All`]).
    pub(super) user: Option<SystemTime>,
    /// [`Selector::IssuedBefore`] (or [`Selector::AllIssuedBefore`])
    /// entries: `before` → revoked at.
    pub(super) before: BTreeMap<u64, SystemTime>,
}

impl Cutoffs {
    pub(super) fn is_empty(&self) -> bool {
        self.user.is_none() && self.before.is_empty()
    }

    /// Whether a token of this user issued at `iat` is revoked; the
    /// struct only exists with at least one entry, which matches a token
    /// without `iat`.
    pub(super) fn matches(&self, iat: Option<u64>) -> bool {
        let Some(iat) = iat else {
            return !self.is_empty();
        };
        self.user.is_some_and(|at| iat <= seconds(at))
            || self
                .before
                .range((Bound::Excluded(iat), Bound::Unbounded))
                .next()
                .is_some()
    }
}
