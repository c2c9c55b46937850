//! A layer's revocations: the bounded store every handshake and renewal
//! consults, with the staleness switch (`stale.rs`) beside it.
//!
//! The store answers "is this token revoked?" with three hash lookups and,
//! for a user with dated revocations, one ordered-map lookup: it is indexed
//! by `jti`, by `sid` and by (`iss`, `sub`); revocations of everyone's
//! tokens are one more set of cutoffs. Entries leave it once their retention has
//! passed; expired entries are found through a queue ordered by expiry, so
//! pruning costs in proportion to what it drops, never a scan of the set.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use super::cutoffs::{Cutoffs, Users};
use super::stale::{RevocationsStale, Staleness};
use super::{RevocationEntry, Selector, StalePolicy};
use crate::token::{RegisteredClaims, TokenError};

/// How the store reports changes to telemetry, which sits above this
/// module: the layer installs `telemetry`'s functions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Report {
    /// The number of entries changed by this much.
    pub(crate) entries: fn(i64),
    /// A revocation was applied: is it new here, how many sockets closed.
    pub(crate) applied: fn(&Selector, bool, usize),
    /// The staleness switch changed from the first to the second.
    pub(crate) stale: fn(Option<StalePolicy>, Option<StalePolicy>),
}

impl Report {
    /// Reports nothing (unit tests of the registry).
    #[cfg(test)]
    pub(crate) const NONE: Report = Report {
        entries: |_| {},
        applied: |_, _, _| {},
        stale: |_, _| {},
    };
}

/// A layer's revocations: the entries, their indexes and the expiry queue.
#[derive(Debug)]
pub(crate) struct RevocationStore {
    retention: Duration,
    state: RwLock<State>,
    stale: Staleness,
    report: Report,
}

#[derive(Debug, Default)]
struct State {
    /// `jti` → when it was revoked (the latest, if revoked more than once).
    tokens: HashMap<String, SystemTime>,
    /// `sid` → when the session was revoked.
    sessions: HashMap<String, SystemTime>,
    /// Everyone's dated revocations ([`Selector::All`],
    /// [`Selector::AllIssuedBefore`]).
    everyone: Cutoffs,
    /// `iss` → `sub` → that user's dated revocations.
    users: Users,
    /// Entries by expiry, earliest first: one item per entry, at or before
    /// its expiry. An entry revoked again later keeps its item, which is
    /// queued again at the later expiry when it comes up.
    expiries: BinaryHeap<Reverse<Expiry>>,
    len: usize,
    next_seq: u64,
}

#[derive(Debug)]
struct Expiry {
    at: SystemTime,
    seq: u64,
    revocation: Selector,
}

impl PartialEq for Expiry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Expiry {}

impl PartialOrd for Expiry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Expiry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl State {
    /// When the entry `revocation` was revoked, if it is stored.
    fn revoked_at(&self, revocation: &Selector) -> Option<SystemTime> {
        match revocation {
            Selector::Token { jti } => self.tokens.get(jti).copied(),
            Selector::Session { sid } => self.sessions.get(sid).copied(),
            Selector::User { iss, sub } => self.cutoffs(iss, sub)?.user,
            Selector::IssuedBefore { iss, sub, before } => {
                self.cutoffs(iss, sub)?.before.get(before).copied()
            }
            Selector::All => self.everyone.user,
            Selector::AllIssuedBefore { before } => self.everyone.before.get(before).copied(),
            Selector::Connection { .. } => None,
        }
    }

    fn cutoffs(&self, iss: &Option<String>, sub: &str) -> Option<&Cutoffs> {
        self.users.subjects(iss.as_deref())?.get(sub)
    }

    /// Stores the entry, or moves a stored one's instant later.
    fn upsert(&mut self, revocation: &Selector, revoked_at: SystemTime) -> Upsert {
        let slot = match revocation {
            Selector::Token { jti } => self.tokens.get_mut(jti.as_str()),
            Selector::Session { sid } => self.sessions.get_mut(sid.as_str()),
            Selector::All => self.everyone.user.as_mut(),
            Selector::AllIssuedBefore { before } => self.everyone.before.get_mut(before),
            // Names no token: never stored (`apply` does not get here).
            Selector::Connection { .. } => return Upsert::Known,
            Selector::User { iss, sub } => self
                .users
                .subjects_mut(iss.as_deref())
                .and_then(|subjects| subjects.get_mut(sub.as_str()))
                .and_then(|cutoffs| cutoffs.user.as_mut()),
            Selector::IssuedBefore { iss, sub, before } => self
                .users
                .subjects_mut(iss.as_deref())
                .and_then(|subjects| subjects.get_mut(sub.as_str()))
                .and_then(|cutoffs| cutoffs.before.get_mut(before)),
        };
        if let Some(at) = slot {
            if *at < revoked_at {
                *at = revoked_at;
                return Upsert::Later;
            }
            return Upsert::Known;
        }
        match revocation {
            Selector::Token { jti } => {
                self.tokens.insert(jti.clone(), revoked_at);
            }
            Selector::Session { sid } => {
                self.sessions.insert(sid.clone(), revoked_at);
            }
            Selector::All => self.everyone.user = Some(revoked_at),
            Selector::AllIssuedBefore { before } => {
                self.everyone.before.insert(*before, revoked_at);
            }
            Selector::Connection { .. } => return Upsert::Known,
            Selector::User { iss, sub } | Selector::IssuedBefore { iss, sub, .. } => {
                let cutoffs = self
                    .users
                    .subjects_entry(iss.as_deref())
                    .entry(sub.clone())
                    .or_default();
                match revocation {
                    Selector::IssuedBefore { before, .. } => {
                        cutoffs.before.insert(*before, revoked_at);
                    }
                    _ => cutoffs.user = Some(revoked_at),
                }
            }
        }
        self.len += 1;
        Upsert::New
    }

    fn remove(&mut self, revocation: &Selector) {
        let removed = match revocation {
            Selector::Token { jti } => self.tokens.remove(jti).is_some(),
            Selector::Session { sid } => self.sessions.remove(sid).is_some(),
            Selector::All => self.everyone.user.take().is_some(),
            Selector::AllIssuedBefore { before } => self.everyone.before.remove(before).is_some(),
            Selector::Connection { .. } => false,
            Selector::User { iss, sub } | Selector::IssuedBefore { iss, sub, .. } => {
                let Some(subjects) = self.users.subjects_mut(iss.as_deref()) else {
                    return;
                };
                let Some(cutoffs) = subjects.get_mut(sub.as_str()) else {
                    return;
                };
                let removed = match revocation {
                    Selector::IssuedBefore { before, .. } => {
                        cutoffs.before.remove(before).is_some()
                    }
                    _ => cutoffs.user.take().is_some(),
                };
                if cutoffs.is_empty() {
                    subjects.remove(sub.as_str());
                    self.users.prune(iss.as_deref());
                }
                removed
            }
        };
        if removed {
            self.len -= 1;
        }
    }

    fn queue(&mut self, revocation: &Selector, at: SystemTime) {
        self.next_seq += 1;
        self.expiries.push(Reverse(Expiry {
            at,
            seq: self.next_seq,
            revocation: revocation.clone(),
        }));
    }

    /// Whether some entry may have expired by `now`.
    fn due(&self, now: SystemTime) -> bool {
        self.expiries
            .peek()
            .is_some_and(|Reverse(first)| first.at <= now)
    }

    /// Drops every entry whose retention has passed by `now`; returns how
    /// many.
    fn prune(&mut self, now: SystemTime, retention: Duration) -> usize {
        let before = self.len;
        while self.due(now) {
            let Some(Reverse(item)) = self.expiries.pop() else {
                break;
            };
            let current = self
                .revoked_at(&item.revocation)
                .map(|at| item.revocation.expires_at(at, retention));
            match current {
                Some(Some(expires)) if expires <= now => self.remove(&item.revocation),
                // Revoked again since: its one item goes back in the
                // queue at the later expiry (an entry has one item, however
                // often it is revoked).
                Some(Some(expires)) => {
                    self.next_seq += 1;
                    self.expiries.push(Reverse(Expiry {
                        at: expires,
                        seq: self.next_seq,
                        revocation: item.revocation,
                    }));
                }
                _ => {}
            }
        }
        before - self.len
    }

    fn matches(&self, claims: &RegisteredClaims) -> bool {
        if let Some(jti) = &claims.jti
            && self.tokens.contains_key(jti.as_str())
        {
            return true;
        }
        if let Some(sid) = &claims.sid
            && self.sessions.contains_key(sid.as_str())
        {
            return true;
        }
        if !self.everyone.is_empty() && self.everyone.matches(claims.iat) {
            return true;
        }
        claims.sub.as_deref().is_some_and(|sub| {
            self.users
                .subjects(claims.iss.as_deref())
                .and_then(|subjects| subjects.get(sub))
                .is_some_and(|cutoffs| cutoffs.matches(claims.iat))
        })
    }

    fn entries(&self) -> Vec<RevocationEntry> {
        let mut entries = Vec::with_capacity(self.len);
        for (jti, at) in &self.tokens {
            entries.push(RevocationEntry {
                revocation: Selector::Token { jti: jti.clone() },
                revoked_at: *at,
            });
        }
        for (sid, at) in &self.sessions {
            entries.push(RevocationEntry {
                revocation: Selector::Session { sid: sid.clone() },
                revoked_at: *at,
            });
        }
        if let Some(at) = self.everyone.user {
            entries.push(RevocationEntry {
                revocation: Selector::All,
                revoked_at: at,
            });
        }
        for (before, at) in &self.everyone.before {
            entries.push(RevocationEntry {
                revocation: Selector::AllIssuedBefore { before: *before },
                revoked_at: *at,
            });
        }
        for (iss, subjects) in self.users.iter() {
            let iss = iss.map(str::to_owned);
            for (sub, cutoffs) in subjects {
                if let Some(at) = cutoffs.user {
                    entries.push(RevocationEntry {
                        revocation: Selector::User {
                            iss: iss.clone(),
                            sub: sub.clone(),
                        },
                        revoked_at: at,
                    });
                }
                for (before, at) in &cutoffs.before {
                    entries.push(RevocationEntry {
                        revocation: Selector::IssuedBefore {
                            iss: iss.clone(),
                            sub: sub.clone(),
                            before: *before,
                        },
                        revoked_at: *at,
                    });
                }
            }
        }
        entries
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upsert {
    New,
    Later,
    Known,
}

/// What applying a revocation did to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Stored, or moved later: live sockets must be checked against it.
    Changed,
    /// Already stored at this instant or later, or past its retention:
    /// nothing changed.
    Unchanged,
}

impl RevocationStore {
    pub(crate) fn new(retention: Duration, report: Report) -> Self {
        Self {
            retention,
            state: RwLock::default(),
            stale: Staleness::default(),
            report,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // Every operation leaves the indexes consistent, panic or not.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `revocation` made at `revoked_at`, as of `now`. Idempotent:
    /// applying an entry twice, or an older instant of a stored one,
    /// changes nothing.
    pub(crate) fn apply(
        &self,
        revocation: &Selector,
        revoked_at: SystemTime,
        now: SystemTime,
    ) -> Applied {
        if !revocation.is_stored() {
            // One connection: closed by the caller, nothing to keep.
            return Applied::Changed;
        }
        let expires = revocation.expires_at(revoked_at, self.retention);
        let mut state = self.write();
        let pruned = state.prune(now, self.retention);
        let upsert = if expires.is_some_and(|expires| expires <= now) {
            // Nothing it could match is still valid.
            Upsert::Known
        } else {
            state.upsert(revocation, revoked_at)
        };
        // A new entry gets its queue item; one revoked again keeps the item
        // it has, which `prune` moves to the later expiry when it comes up.
        if upsert == Upsert::New
            && let Some(expires) = expires
        {
            state.queue(revocation, expires);
        }
        drop(state);
        let added = i64::from(upsert == Upsert::New);
        let delta = added - i64::try_from(pruned).unwrap_or(i64::MAX);
        if delta != 0 {
            (self.report.entries)(delta);
        }
        match upsert {
            Upsert::Known => Applied::Unchanged,
            Upsert::New | Upsert::Later => Applied::Changed,
        }
    }

    /// Whether a token with these claims is revoked, as of `now`.
    pub(crate) fn is_revoked_at(&self, claims: &RegisteredClaims, now: SystemTime) -> bool {
        {
            let state = self.read();
            if !state.due(now) {
                return state.matches(claims);
            }
        }
        let mut state = self.write();
        let pruned = state.prune(now, self.retention);
        let revoked = state.matches(claims);
        drop(state);
        self.report_pruned(pruned);
        revoked
    }

    pub(crate) fn is_revoked(&self, claims: &RegisteredClaims) -> bool {
        self.is_revoked_at(claims, SystemTime::now())
    }

    /// The gate of `Settings::check_token`.
    pub(crate) fn check(&self, claims: &RegisteredClaims) -> Result<(), TokenError> {
        if self.is_revoked(claims) {
            Err(TokenError::Revoked)
        } else {
            Ok(())
        }
    }

    /// Every entry within its retention, as of `now`.
    pub(crate) fn entries_at(&self, now: SystemTime) -> Vec<RevocationEntry> {
        let mut state = self.write();
        let pruned = state.prune(now, self.retention);
        let entries = state.entries();
        drop(state);
        self.report_pruned(pruned);
        entries
    }

    fn report_pruned(&self, pruned: usize) {
        if pruned > 0 {
            (self.report.entries)(-i64::try_from(pruned).unwrap_or(i64::MAX));
        }
    }

    /// How many entries are stored (including any past retention not yet
    /// pruned).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.read().len
    }

    pub(crate) fn report_applied(&self, revocation: &Selector, new: bool, closed: usize) {
        (self.report.applied)(revocation, new, closed);
    }

    pub(crate) fn set_stale(&self, policy: Option<StalePolicy>) {
        let was = self.stale.set(policy);
        if was != policy {
            (self.report.stale)(was, policy);
        }
    }

    pub(crate) fn stale(&self) -> Option<StalePolicy> {
        self.stale.get()
    }

    /// Whether a new handshake may proceed.
    pub(crate) fn check_fresh(&self) -> Result<(), RevocationsStale> {
        self.stale.check_fresh()
    }
}

impl Drop for RevocationStore {
    fn drop(&mut self) {
        let len = self.state.get_mut().map_or(0, |state| state.len);
        if len > 0 {
            (self.report.entries)(-i64::try_from(len).unwrap_or(i64::MAX));
        }
        if let Some(policy) = self.stale() {
            (self.report.stale)(Some(policy), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Rng, at, revocable};

    const RETENTION: Duration = Duration::from_secs(3600);

    fn store() -> RevocationStore {
        RevocationStore::new(RETENTION, Report::NONE)
    }

    // `Some("")` beside `None`: an empty issuer is an issuer.
    const ISSUERS: [Option<&str>; 4] = [
        None,
        Some(""),
        Some("https://a.test"),
        Some("https://b.test"),
    ];
    const SUBJECTS: [Option<&str>; 3] = [None, Some("alice"), Some("bob")];
    const JTIS: [Option<&str>; 4] = [None, Some("t1"), Some("t2"), Some("")];
    const BASE: u64 = 1_700_000_000;
    const TIMES: [u64; 9] = [
        0,
        1,
        BASE - 1,
        BASE,
        BASE + 1,
        BASE + 3599,
        BASE + 3600,
        BASE + 7200,
        u64::MAX,
    ];

    const SIDS: [Option<&str>; 3] = [None, Some("s1"), Some("s2")];

    fn random_claims(rng: &mut Rng) -> RegisteredClaims {
        let iat = match rng.next() % 4 {
            0 => None,
            _ => Some(rng.pick(&TIMES)),
        };
        RegisteredClaims {
            sid: rng.pick(&SIDS).map(str::to_owned),
            ..revocable(
                rng.pick(&ISSUERS),
                rng.pick(&SUBJECTS),
                rng.pick(&JTIS),
                iat,
            )
        }
    }

    fn random_revocation(rng: &mut Rng) -> Selector {
        let iss = rng.pick(&ISSUERS);
        let sub = rng.pick(&SUBJECTS).unwrap_or("alice");
        // Everyone's revocations rarer: they match most claims.
        match rng.next() % 14 {
            0..=3 => Selector::user(iss, sub),
            4..=6 => Selector::token(rng.pick(&JTIS).unwrap_or("t1")),
            7..=9 => Selector::issued_before(iss, sub, rng.pick(&TIMES)),
            10 | 11 => Selector::session(rng.pick(&SIDS).unwrap_or("s1")),
            12 => Selector::all(),
            _ => Selector::all_issued_before(rng.pick(&TIMES)),
        }
    }

    /// The indexed store agrees with the plain rule ("some entry applied
    /// within its retention matches") for random entries, claims and
    /// clocks, including missing `iat`, `jti` and `iss`, `iat` 0 and
    /// `u64::MAX`.
    #[test]
    fn the_store_agrees_with_the_per_entry_rule() {
        for seed in 1..=300u64 {
            let mut rng = Rng(seed);
            let store = store();
            let mut applied: Vec<(Selector, SystemTime)> = Vec::new();
            let mut now = BASE;
            for _ in 0..(rng.next() % 12) {
                now += rng.next() % 2000;
                let revocation = random_revocation(&mut rng);
                let revoked_at = at(now - rng.next() % 5000);
                store.apply(&revocation, revoked_at, at(now));
                applied.push((revocation, revoked_at));
            }
            now += rng.next() % 4000;
            let live = |(revocation, revoked_at): &&(Selector, SystemTime)| {
                revocation
                    .expires_at(*revoked_at, RETENTION)
                    .is_none_or(|expires| expires > at(now))
            };
            for _ in 0..40 {
                let claims = random_claims(&mut rng);
                let expected = applied
                    .iter()
                    .filter(live)
                    .any(|(revocation, revoked_at)| revocation.matches(*revoked_at, &claims));
                assert_eq!(
                    store.is_revoked_at(&claims, at(now)),
                    expected,
                    "seed {seed}: {claims:?} against {applied:?} at {now}"
                );
            }
            // The listing holds each live entry once, at its latest instant.
            let listed = store.entries_at(at(now));
            assert_eq!(listed.len(), store.len(), "seed {seed}");
            for entry in &listed {
                let latest = applied
                    .iter()
                    .filter(live)
                    .filter(|(revocation, _)| *revocation == entry.revocation)
                    .map(|(_, revoked_at)| *revoked_at)
                    .max();
                assert_eq!(latest, Some(entry.revoked_at), "seed {seed}: {entry:?}");
            }
        }
    }

    #[test]
    fn pruning_drops_only_entries_past_their_retention() {
        let store = store();
        let t = BASE;
        let old = Selector::token("old");
        let young = Selector::token("young");
        let later = Selector::user(None, "alice");
        // A cutoff in the future keeps its entry until then plus retention.
        let future = Selector::issued_before(None, "bob", t + 7200);
        store.apply(&old, at(t), at(t));
        store.apply(&young, at(t + 10), at(t + 10));
        store.apply(&later, at(t), at(t));
        store.apply(&later, at(t + 20), at(t + 20));
        store.apply(&future, at(t), at(t));
        assert_eq!(store.len(), 4);
        let listed = |now| {
            let mut kinds: Vec<_> = store
                .entries_at(at(now))
                .into_iter()
                .map(|entry| entry.revocation)
                .collect();
            kinds.sort_by_key(|revocation| format!("{revocation:?}"));
            kinds
        };
        // One second short of `old`'s retention: all kept.
        assert_eq!(listed(t + 3599).len(), 4);
        // Exactly at it: `old` goes, and `later` (revoked again at +20) stays.
        let mut expected = vec![young.clone(), later.clone(), future.clone()];
        expected.sort_by_key(|revocation| format!("{revocation:?}"));
        assert_eq!(listed(t + 3600), expected);
        let mut expected = vec![later.clone(), future.clone()];
        expected.sort_by_key(|revocation| format!("{revocation:?}"));
        assert_eq!(listed(t + 3610), expected);
        assert_eq!(listed(t + 3620), [future]);
        assert!(store.is_revoked_at(
            &revocable(None, Some("bob"), None, Some(t + 7199)),
            at(t + 10_799)
        ));
        assert!(!store.is_revoked_at(
            &revocable(None, Some("bob"), None, Some(t + 7199)),
            at(t + 10_800)
        ));
        assert_eq!(store.len(), 0);
        assert!(store.read().users.is_empty() && store.read().tokens.is_empty());
    }

    #[test]
    fn applying_is_idempotent_and_keeps_the_latest_instant() {
        let store = store();
        let revocation = Selector::user(Some("i"), "alice");
        let now = at(BASE + 100);
        assert_eq!(
            store.apply(&revocation, at(BASE + 50), now),
            Applied::Changed
        );
        assert_eq!(
            store.apply(&revocation, at(BASE + 50), now),
            Applied::Unchanged
        );
        assert_eq!(
            store.apply(&revocation, at(BASE + 10), now),
            Applied::Unchanged
        );
        assert_eq!(
            store.apply(&revocation, at(BASE + 60), now),
            Applied::Changed
        );
        assert_eq!(store.len(), 1);
        assert_eq!(
            store.entries_at(now),
            [RevocationEntry {
                revocation: revocation.clone(),
                revoked_at: at(BASE + 60)
            }]
        );
        // An entry already past its retention is not stored at all.
        let ancient = Selector::token("ancient");
        assert_eq!(
            store.apply(&ancient, now - RETENTION, now),
            Applied::Unchanged
        );
        assert_eq!(store.len(), 1);
        // Beyond any representable time: kept, never queued.
        let forever = Selector::issued_before(None, "x", u64::MAX);
        assert_eq!(store.apply(&forever, now, now), Applied::Changed);
        assert!(store.is_revoked_at(
            &revocable(None, Some("x"), None, Some(u64::MAX - 1)),
            at(u64::MAX / 4)
        ));
    }

    /// Revoking one entry again and again (an admin endpoint hit in a
    /// loop, `revoke` stamping each call with the current instant) keeps
    /// one queue item for it, not one per call for the whole retention.
    #[test]
    fn revoking_one_entry_again_and_again_does_not_grow_the_queue() {
        let store = store();
        let alice = Selector::user(None, "alice");
        let before = Selector::issued_before(None, "bob", BASE);
        for n in 0..1000 {
            store.apply(&alice, at(BASE + n), at(BASE + n));
            store.apply(&before, at(BASE + n), at(BASE + n));
        }
        assert_eq!(store.len(), 2);
        let queued = store.read().expiries.len();
        assert!(queued <= 2, "{queued} queue items for 2 entries");
        // Each is still kept until its latest instant plus the retention.
        let last = BASE + 999 + RETENTION.as_secs();
        let alice_token = revocable(None, Some("alice"), None, Some(BASE + 999));
        let bob_token = revocable(None, Some("bob"), None, Some(BASE - 1));
        assert!(store.is_revoked_at(&alice_token, at(last - 1)));
        assert!(store.is_revoked_at(&bob_token, at(last - 1)));
        assert!(!store.is_revoked_at(&alice_token, at(last)));
        assert!(!store.is_revoked_at(&bob_token, at(last)));
        assert_eq!(store.len(), 0);
        assert!(store.read().expiries.is_empty());
    }

    #[test]
    fn the_staleness_switch() {
        let store = store();
        assert_eq!(store.check_fresh(), Ok(()));
        store.set_stale(Some(StalePolicy::FailOpen));
        assert_eq!(store.check_fresh(), Ok(()));
        assert_eq!(store.stale(), Some(StalePolicy::FailOpen));
        store.set_stale(Some(StalePolicy::FailClosed));
        assert_eq!(store.check_fresh(), Err(RevocationsStale));
        store.set_stale(None);
        assert_eq!(store.check_fresh(), Ok(()));
        assert_eq!(store.stale(), None);
    }
}
