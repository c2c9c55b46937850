//! The set of live connections a layer has authenticated: graceful
//! shutdown, revocation, closing one connection, and re-authentication.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use super::stale::RevocationsStale;
use super::store::{Applied, Report, RevocationStore};
use super::{EndReason, Identity, RevocationEntry, Selector, StalePolicy};
use crate::protocol::CloseReason;
use crate::token::{RegisteredClaims, TokenError};

/// A handle on the live connections of one [`WsAuthLayer`](crate::WsAuthLayer)
/// and on its revocations: close them all with `1001 server shutting down`,
/// revoke a user or a token ([`revoke`](Self::revoke): refused from then
/// on, live sockets closed with `4403 forbidden`), close one connection,
/// ask connections to re-authenticate, wait until they are gone.
///
/// Hyper's graceful shutdown does not see upgraded connections, so a server
/// calls [`shutdown`](Self::shutdown) when its shutdown signal fires and
/// awaits [`closed`](Self::closed) before exiting:
///
/// ```no_run
/// # use axum_ws_auth::{JwtValidator, WsAuthLayer};
/// # async fn run(app: axum::Router, layer: WsAuthLayer<serde_json::Value>) -> std::io::Result<()> {
/// let connections = layer.connections();
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let stop = connections.clone();
/// axum::serve(listener, app)
///     .with_graceful_shutdown(async move {
///         let _ = tokio::signal::ctrl_c().await;
///         stop.shutdown();
///     })
///     .await?;
/// let _ = tokio::time::timeout(std::time::Duration::from_secs(10), connections.closed()).await;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Connections {
    inner: Arc<Registry>,
}

#[derive(Debug)]
struct Registry {
    /// Each live connection by id. Nothing else per connection: its
    /// identity and token are read from the connection when a scan needs
    /// them, which keeps the map at 24 bytes an entry.
    live: Mutex<HashMap<u64, Weak<dyn Closable>>>,
    shutting_down: AtomicBool,
    all_closed: Notify,
    revocations: RevocationStore,
}

/// A connection the registry can ask to close or to re-authenticate,
/// judged by its current token.
pub(crate) trait Closable: Send + Sync {
    /// Who is on the other end: fixed for the connection's life.
    fn identity(&self) -> &Identity;

    /// Ends the connection with `reason` if the registered claims of its
    /// current token satisfy `matches`; true if this call ended it (false
    /// when it did not match or had ended already).
    fn close_if(&self, matches: &dyn Fn(&RegisteredClaims) -> bool, reason: EndReason) -> bool;

    /// Asks the peer for a fresh token within `grace` if the claims of the
    /// current token satisfy `matches`; true if it was asked.
    fn reauthenticate_if(
        &self,
        matches: &dyn Fn(&RegisteredClaims) -> bool,
        grace: Duration,
    ) -> bool;

    /// Ends the connection with `reason`; true if this call ended it.
    fn request_close(&self, reason: EndReason) -> bool {
        self.close_if(&|_| true, reason)
    }
}

impl Registry {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Weak<dyn Closable>>> {
        // The map stays consistent even if a holder panicked: every
        // operation on it is a single insert, remove or scan.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Connections {
    /// The registry of a layer whose revocations are kept for `retention`,
    /// reporting to telemetry through `report`.
    pub(crate) fn new(retention: Duration, report: Report) -> Self {
        Self {
            inner: Arc::new(Registry {
                live: Mutex::default(),
                shutting_down: AtomicBool::new(false),
                all_closed: Notify::new(),
                revocations: RevocationStore::new(retention, report),
            }),
        }
    }

    /// How many authenticated sockets are open.
    pub fn count(&self) -> usize {
        self.inner.live().len()
    }

    /// Closes every open socket, and every socket opened from now on, with
    /// `1001 server shutting down`.
    pub fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        for connection in self.matching(|_| true) {
            connection.request_close(EndReason::ServerShutdown);
        }
    }

    /// The live connection with this id, if it is open.
    fn connection(&self, id: u64) -> Option<Arc<dyn Closable>> {
        self.inner.live().get(&id).and_then(Weak::upgrade)
    }

    /// Live connections whose identity `filter` selects, collected first so
    /// that none is asked anything while the registry is locked.
    fn matching(&self, filter: impl Fn(&Identity) -> bool) -> Vec<Arc<dyn Closable>> {
        let live: Vec<Arc<dyn Closable>> = self
            .inner
            .live()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        // Judged (and the others let go) once the lock is released:
        // letting go of a connection's last handle unregisters it, which
        // takes the lock.
        live.into_iter()
            .filter(|connection| filter(connection.identity()))
            .collect()
    }

    /// Whether [`shutdown`](Self::shutdown) has been called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Revokes tokens as of now: from this moment the tokens `revocation`
    /// matches are refused at the handshake (401 `invalid_token`, "token
    /// revoked") and on renewal (`auth.renew_rejected`), and every live
    /// socket whose *current* token it matches is closed with
    /// `4403 forbidden` ([`EndReason::Revoked`]). Returns how many sockets
    /// this call closed. [`Selector::Connection`] names no token: that one
    /// connection is closed, and nothing is stored.
    ///
    /// The entry is kept for the layer's
    /// [`revocation_retention`](crate::WsAuthLayerBuilder::revocation_retention)
    /// (default 24 h), which must be at least the longest lifetime of your
    /// tokens: after it, every token the entry could match has expired
    /// anyway, and the entry is dropped. Each layer (each
    /// [`WsAuthLayer::builder`](crate::WsAuthLayer::builder)`.build()`) has
    /// its own list; clones share it.
    ///
    /// ```
    /// use axum_ws_auth::{JwtValidator, WsAuthLayer, revocation::Selector};
    ///
    /// let layer = WsAuthLayer::<serde_json::Value>::builder(JwtValidator::hs256([42u8; 32])?).build()?;
    /// let connections = layer.connections();
    /// // The user's account was locked: every token issued so far.
    /// let closed = connections.revoke(Selector::user(Some("https://issuer.example"), "alice"));
    /// assert_eq!(closed, 0, "no socket was open");
    /// assert_eq!(connections.revocations().len(), 1);
    /// # Ok::<_, axum_ws_auth::ConfigError>(())
    /// ```
    pub fn revoke(&self, revocation: Selector) -> usize {
        self.apply_revocation(revocation, SystemTime::now())
    }

    /// Applies a revocation made at `revoked_at`, e.g. on another node of a
    /// cluster: it is stored with that instant (for
    /// [`Selector::User`], the cutoff for `iat`), and matching live
    /// sockets are closed with `4403`, as by [`revoke`](Self::revoke).
    /// Returns how many sockets this call closed.
    ///
    /// Idempotent and order-free: an entry already stored at this instant or
    /// later changes nothing (the later of two instants of one revocation
    /// covers all the earlier one does), and one whose retention has
    /// passed by now is not stored. An instant ahead of this node's clock
    /// is taken as it is.
    ///
    /// A cluster revokes with this method too, on the node where the
    /// revocation is made, and publishes the same instant to the others.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use axum_ws_auth::{JwtValidator, WsAuthLayer, revocation::Selector};
    ///
    /// let layer = WsAuthLayer::<serde_json::Value>::builder(JwtValidator::hs256([42u8; 32])?).build()?;
    /// let connections = layer.connections();
    /// let revoked_at = SystemTime::now() - Duration::from_secs(5);
    /// // Delivered twice by the message bus: applied once.
    /// connections.apply_revocation(Selector::token("t-1"), revoked_at);
    /// connections.apply_revocation(Selector::token("t-1"), revoked_at);
    /// let entries = connections.revocations();
    /// assert_eq!(entries.len(), 1);
    /// assert_eq!(entries[0].revoked_at, revoked_at);
    /// # Ok::<_, axum_ws_auth::ConfigError>(())
    /// ```
    pub fn apply_revocation(&self, revocation: Selector, revoked_at: SystemTime) -> usize {
        let store = &self.inner.revocations;
        let applied = store.apply(&revocation, revoked_at, SystemTime::now());
        let mut closed = 0;
        if applied == Applied::Changed {
            // Stored first, then the live sockets: a socket registering
            // meanwhile checks the store itself (see `register`).
            let matches = |claims: &RegisteredClaims| revocation.matches(revoked_at, claims);
            closed = self
                .candidates(&revocation)
                .iter()
                .filter(|connection| connection.close_if(&matches, EndReason::Revoked))
                .count();
        }
        store.report_applied(&revocation, applied == Applied::Changed, closed);
        closed
    }

    /// The revocations within their retention, each with the instant it
    /// was made: what a cluster publishes for a node that resyncs. The
    /// order is unspecified.
    ///
    /// ```
    /// # use axum_ws_auth::{JwtValidator, WsAuthLayer};
    /// # let layer = WsAuthLayer::<serde_json::Value>::builder(JwtValidator::hs256([42u8; 32])?).build()?;
    /// for entry in layer.connections().revocations() {
    ///     println!("{} at {:?}", serde_json::to_string(&entry.revocation).unwrap(), entry.revoked_at);
    /// }
    /// # Ok::<_, axum_ws_auth::ConfigError>(())
    /// ```
    pub fn revocations(&self) -> Vec<RevocationEntry> {
        self.inner.revocations.entries_at(SystemTime::now())
    }

    /// Whether a token with these registered claims is revoked: the check
    /// the handshake and every renewal make, for the application's own
    /// endpoints.
    ///
    /// ```
    /// use axum_ws_auth::{AuthWebSocket, Connections};
    ///
    /// fn still_allowed(connections: &Connections, socket: &AuthWebSocket<serde_json::Value>) -> bool {
    ///     !connections.is_revoked(&socket.registered())
    /// }
    /// ```
    pub fn is_revoked(&self, claims: &RegisteredClaims) -> bool {
        self.inner.revocations.is_revoked(claims)
    }

    /// Marks this node's revocation list as possibly behind (`Some`) or
    /// current (`None`); a cluster layer sets it while it cannot hear the
    /// other nodes. With [`StalePolicy::FailClosed`], new handshakes are
    /// refused with `503 Service Unavailable` (with `Retry-After`, no
    /// `WWW-Authenticate`); renewals and live sockets are unaffected. The
    /// state is a `tracing` event at each change and the
    /// `ws_auth_revocations_stale` gauge (how many layers of the process
    /// are stale).
    ///
    /// ```
    /// # use axum_ws_auth::{JwtValidator, WsAuthLayer, revocation::StalePolicy};
    /// # let layer = WsAuthLayer::<serde_json::Value>::builder(JwtValidator::hs256([42u8; 32])?).build()?;
    /// let connections = layer.connections();
    /// connections.set_revocations_stale(Some(StalePolicy::FailOpen));
    /// assert_eq!(connections.revocations_stale(), Some(StalePolicy::FailOpen));
    /// # Ok::<_, axum_ws_auth::ConfigError>(())
    /// ```
    pub fn set_revocations_stale(&self, policy: Option<StalePolicy>) {
        self.inner.revocations.set_stale(policy);
    }

    /// What [`set_revocations_stale`](Self::set_revocations_stale) last
    /// set; `None` while the list is current.
    pub fn revocations_stale(&self) -> Option<StalePolicy> {
        self.inner.revocations.stale()
    }

    /// Closes the connection with this id
    /// ([`Identity::connection_id`](crate::Identity::connection_id)) with
    /// `reason`'s code and phrase; its
    /// [`end_reason`](crate::AuthWebSocket::end_reason) is
    /// [`EndReason::CloseRequested`]. Returns whether this call closed it
    /// (false when no such connection is open, or it is already ending).
    ///
    /// The contract's codes mean: 4401 get a fresh token and reconnect,
    /// 4403 do not reconnect with these credentials, 4400 the client is
    /// broken, 4429 back off, 1001 reconnect with backoff. Nothing is
    /// stored: to keep a token out, [`revoke`](Self::revoke) it.
    ///
    /// ```
    /// use axum_ws_auth::{AuthWebSocket, Connections, protocol::CloseReason};
    ///
    /// fn kick(connections: &Connections, socket: &AuthWebSocket<serde_json::Value>) {
    ///     let id = socket.identity().connection_id();
    ///     connections.close_connection(id, CloseReason::Forbidden);
    /// }
    /// ```
    pub fn close_connection(&self, id: u64, reason: CloseReason) -> bool {
        self.connection(id).is_some_and(|connection| {
            connection.request_close(EndReason::CloseRequested { reason })
        })
    }

    /// Asks the selected connections to re-authenticate within `grace`
    /// (the user's roles changed, a signing key is retired); returns how
    /// many were asked.
    ///
    /// Each gets an early `auth.expiring` whose `exp` is now plus `grace`
    /// (whole seconds, rounded up), never later than its token's own `exp`,
    /// and whose `expires_in` counts down to it. Unless a renewal is
    /// accepted by then, the connection closes at that `exp` with
    /// `4401 token expired`
    /// ([`EndReason::NotReauthenticated`]). A renewal answering the request
    /// must carry a token issued at or after it (`iat` at or after the
    /// request's second); the current token, or one minted before the
    /// request, is refused (`auth.renew_rejected`, `invalid_token`), and so
    /// is a token without `iat`: an issuer that omits `iat` cannot answer a
    /// re-authentication request, and its connections close at the
    /// deadline. The check has no leeway: a token minted earlier in the
    /// request's own second answers it; an issuer whose clock is a second
    /// behind is refused (the clients fetch again and retry).
    /// The application sees [`AuthEvent::ReauthRequested`](crate::AuthEvent::ReauthRequested).
    ///
    /// A second request never moves a connection's deadline later.
    ///
    /// ```
    /// use std::time::Duration;
    /// use axum_ws_auth::{JwtValidator, WsAuthLayer, revocation::Selector};
    ///
    /// let layer = WsAuthLayer::<serde_json::Value>::builder(JwtValidator::hs256([42u8; 32])?).build()?;
    /// let asked = layer
    ///     .connections()
    ///     .reauthenticate(Selector::user(Some("https://issuer.example"), "alice"), Duration::from_secs(30));
    /// assert_eq!(asked, 0, "no socket was open");
    /// # Ok::<_, axum_ws_auth::ConfigError>(())
    /// ```
    pub fn reauthenticate(&self, selector: Selector, grace: Duration) -> usize {
        let selects = |claims: &RegisteredClaims| selector.selects(claims);
        self.candidates(&selector)
            .iter()
            .filter(|connection| connection.reauthenticate_if(&selects, grace))
            .count()
    }

    /// The live connections `selector` may pick, before their current
    /// token is read: one by its id, the others by identity.
    fn candidates(&self, selector: &Selector) -> Vec<Arc<dyn Closable>> {
        match selector {
            Selector::Connection { id } => self.connection(*id).into_iter().collect(),
            _ => self.matching(|identity| selector.may_select(identity)),
        }
    }

    /// The revocation gate of every handshake and renewal.
    pub(crate) fn check_revocation(&self, claims: &RegisteredClaims) -> Result<(), TokenError> {
        self.inner.revocations.check(claims)
    }

    /// Whether a new handshake may proceed while the list is stale.
    pub(crate) fn check_fresh(&self) -> Result<(), RevocationsStale> {
        self.inner.revocations.check_fresh()
    }

    /// Resolves once no authenticated socket is open.
    pub async fn closed(&self) {
        loop {
            let notified = self.inner.all_closed.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Registers a new connection; it counts as live until the guard drops.
    /// The caller stores the guard first, then ends the connection if this
    /// returns a reason: a shutdown is under way (`1001`), or its token was
    /// revoked since the handshake checked it (`4403`). Both are checked
    /// after inserting, so a concurrent shutdown or revocation, which
    /// records itself before scanning the registry, cannot miss it.
    pub(crate) fn register(
        &self,
        id: u64,
        registered: &RegisteredClaims,
        connection: Weak<dyn Closable>,
    ) -> (LiveGuard, Option<EndReason>) {
        self.inner.live().insert(id, connection);
        let guard = LiveGuard {
            registry: Arc::clone(&self.inner),
            id,
        };
        let ending = if self.is_shutting_down() {
            Some(EndReason::ServerShutdown)
        } else if self.inner.revocations.is_revoked(registered) {
            Some(EndReason::Revoked)
        } else {
            None
        };
        (guard, ending)
    }
}

/// Keeps a connection registered until its closing handshake is over.
#[derive(Debug)]
pub(crate) struct LiveGuard {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let mut live = self.registry.live();
        live.remove(&self.id);
        if live.is_empty() {
            drop(live);
            self.registry.all_closed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection that records what it was asked, with a current token.
    struct Recorder {
        identity: Identity,
        claims: Mutex<RegisteredClaims>,
        closes: Mutex<Vec<EndReason>>,
        reauths: Mutex<Vec<Duration>>,
    }

    impl Recorder {
        fn closes(&self) -> Vec<EndReason> {
            self.closes.lock().unwrap().clone()
        }
    }

    impl Recorder {
        fn new(id: u64, claims: RegisteredClaims) -> Self {
            Self {
                identity: Identity::new(
                    id,
                    claims.iss.clone(),
                    claims.sub.clone(),
                    crate::token::TokenSource::Header,
                    None,
                ),
                claims: Mutex::new(claims),
                closes: Mutex::default(),
                reauths: Mutex::default(),
            }
        }
    }

    impl Closable for Recorder {
        fn identity(&self) -> &Identity {
            &self.identity
        }

        fn close_if(&self, matches: &dyn Fn(&RegisteredClaims) -> bool, reason: EndReason) -> bool {
            let mut closes = self.closes.lock().unwrap();
            if !closes.is_empty() || !matches(&self.claims.lock().unwrap()) {
                return false;
            }
            closes.push(reason);
            true
        }

        fn reauthenticate_if(
            &self,
            matches: &dyn Fn(&RegisteredClaims) -> bool,
            grace: Duration,
        ) -> bool {
            if !matches(&self.claims.lock().unwrap()) {
                return false;
            }
            self.reauths.lock().unwrap().push(grace);
            true
        }
    }

    fn connections() -> Connections {
        Connections::new(Duration::from_secs(3600), Report::NONE)
    }

    fn claims(iss: Option<&str>, sub: &str, jti: &str, iat: u64) -> RegisteredClaims {
        let mut claims = RegisteredClaims::for_tests(iss, Some(sub), u64::MAX);
        claims.jti = Some(jti.to_owned());
        claims.iat = Some(iat);
        claims
    }

    /// Registers a connection whose current token has `claims`.
    fn open(
        connections: &Connections,
        id: u64,
        claims: RegisteredClaims,
    ) -> (Arc<Recorder>, LiveGuard) {
        let registered = claims.clone();
        let recorder = Arc::new(Recorder::new(id, claims));
        let weak = Arc::downgrade(&(Arc::clone(&recorder) as Arc<dyn Closable>));
        let (guard, ending) = connections.register(id, &registered, weak);
        assert_eq!(ending, None);
        (recorder, guard)
    }

    fn now() -> u64 {
        super::super::revocation::seconds(SystemTime::now())
    }

    #[tokio::test]
    async fn closed_waits_for_the_last_guard() {
        let connections = connections();
        connections.closed().await;
        let (first, first_guard) = open(&connections, 1, claims(None, "a", "1", 0));
        let (_second, second_guard) = open(&connections, 2, claims(None, "b", "2", 0));
        assert_eq!(connections.count(), 2);
        connections.shutdown();
        assert_eq!(first.closes(), [EndReason::ServerShutdown]);
        let waiter = tokio::spawn({
            let connections = connections.clone();
            async move { connections.closed().await }
        });
        drop(first_guard);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(second_guard);
        waiter.await.unwrap();
        assert_eq!(connections.count(), 0);
        // Registered after shutdown: told to close at once.
        let (_late, late_weak) = {
            let recorder: Arc<dyn Closable> = Arc::new(Recorder::new(3, claims(None, "c", "3", 0)));
            let weak = Arc::downgrade(&recorder);
            (recorder, weak)
        };
        let (_late_guard, ending) = connections.register(3, &claims(None, "c", "3", 0), late_weak);
        assert_eq!(ending, Some(EndReason::ServerShutdown));
    }

    #[tokio::test]
    async fn revoking_a_user_asks_only_that_users_connections_once() {
        let connections = connections();
        let (alice_phone, _g1) = open(&connections, 1, claims(None, "alice", "1", 0));
        let (alice_laptop, _g2) = open(&connections, 2, claims(Some("i"), "alice", "2", 0));
        let (bob, _g3) = open(&connections, 3, claims(None, "bob", "3", 0));
        // A user is (iss, sub): each issuer's alice is revoked on her own.
        assert_eq!(connections.revoke(Selector::user(None, "alice")), 1);
        assert_eq!(connections.revoke(Selector::user(Some("i"), "alice")), 1);
        assert_eq!(connections.revoke(Selector::user(None, "nobody")), 0);
        // Already closing: not counted again.
        assert_eq!(connections.revoke(Selector::user(None, "alice")), 0);
        for alice in [&alice_phone, &alice_laptop] {
            assert_eq!(alice.closes(), [EndReason::Revoked]);
        }
        assert!(bob.closes().is_empty());
    }

    #[tokio::test]
    async fn revoke_closes_exactly_the_connections_whose_current_token_matches() {
        let connections = connections();
        let t = now();
        let (alice, _g1) = open(&connections, 1, claims(Some("i"), "alice", "a1", t - 10));
        let (alice_other_issuer, _g2) =
            open(&connections, 2, claims(Some("j"), "alice", "a2", t - 10));
        let (bob, _g3) = open(&connections, 3, claims(Some("i"), "bob", "b1", t - 10));
        let (carol, _g4) = open(&connections, 4, claims(Some("i"), "carol", "c1", t - 10));
        // Carol renewed: her current token is c2, issued later.
        *carol.claims.lock().unwrap() = claims(Some("i"), "carol", "c2", t + 5);

        assert_eq!(connections.revoke(Selector::user(Some("i"), "alice")), 1);
        assert_eq!(alice.closes(), [EndReason::Revoked]);
        assert!(alice_other_issuer.closes().is_empty());
        assert_eq!(connections.revoke(Selector::token("c1")), 0);
        assert_eq!(
            connections.revoke(Selector::issued_before(Some("i"), "carol", t)),
            0,
            "c2 was issued after the cutoff"
        );
        assert_eq!(connections.revoke(Selector::token("c2")), 1);
        assert_eq!(carol.closes(), [EndReason::Revoked]);
        assert_eq!(
            connections.revoke(Selector::issued_before(Some("i"), "bob", t - 9)),
            1
        );
        assert_eq!(bob.closes(), [EndReason::Revoked]);
        assert_eq!(connections.revocations().len(), 5);

        // A connection registering with a token revoked meanwhile is told
        // to end at once.
        let recorder: Arc<dyn Closable> =
            Arc::new(Recorder::new(9, claims(Some("i"), "alice", "a3", t - 1)));
        let (_guard, ending) = connections.register(
            9,
            &claims(Some("i"), "alice", "a3", t - 1),
            Arc::downgrade(&recorder),
        );
        assert_eq!(ending, Some(EndReason::Revoked));
    }

    #[tokio::test]
    async fn close_connection_and_reauthenticate_select_as_asked() {
        let connections = connections();
        let t = now();
        let (one, _g1) = open(&connections, 1, claims(Some("i"), "alice", "a1", t - 100));
        let (two, _g2) = open(&connections, 2, claims(Some("i"), "alice", "a2", t));
        let (three, _g3) = open(&connections, 3, claims(None, "bob", "b1", t));
        let grace = Duration::from_secs(7);
        let asked = |selector| connections.reauthenticate(selector, grace);
        assert_eq!(asked(Selector::All), 3);
        assert_eq!(asked(Selector::user(Some("i"), "alice")), 2);
        assert_eq!(asked(Selector::user(None, "alice")), 0);
        assert_eq!(asked(Selector::token("b1")), 1);
        assert_eq!(asked(Selector::all_issued_before(t)), 1);
        assert_eq!(asked(Selector::connection(2)), 1);
        assert_eq!(asked(Selector::connection(99)), 0);
        assert_eq!(one.reauths.lock().unwrap().len(), 3);
        assert_eq!(two.reauths.lock().unwrap().len(), 3);
        assert_eq!(three.reauths.lock().unwrap().len(), 2);

        assert!(connections.close_connection(2, CloseReason::TooManyRenewals));
        assert!(!connections.close_connection(2, CloseReason::Forbidden));
        assert!(!connections.close_connection(99, CloseReason::Forbidden));
        assert_eq!(
            two.closes(),
            [EndReason::CloseRequested {
                reason: CloseReason::TooManyRenewals
            }]
        );
        assert!(one.closes().is_empty() && three.closes().is_empty());
    }

    #[tokio::test]
    async fn every_selector_revokes_as_its_docs_say_and_one_connection_stores_nothing() {
        let connections = connections();
        let t = now();
        let with_sid = |mut claims: RegisteredClaims, sid: &str| {
            claims.sid = Some(sid.to_owned());
            claims
        };
        let (one, _g1) = open(
            &connections,
            1,
            with_sid(claims(Some("i"), "alice", "a1", t - 100), "s-1"),
        );
        let (two, _g2) = open(
            &connections,
            2,
            with_sid(claims(Some("i"), "alice", "a2", t), "s-2"),
        );
        let (three, _g3) = open(&connections, 3, claims(None, "bob", "b1", t - 100));
        let (four, _g4) = open(&connections, 4, claims(None, "carol", "c1", t));
        // A session: only its own connection, and the entry is kept.
        assert_eq!(connections.revoke(Selector::session("s-2")), 1);
        assert_eq!(two.closes(), [EndReason::Revoked]);
        // One connection: closed, nothing stored (its token stays usable).
        assert_eq!(connections.revoke(Selector::connection(4)), 1);
        assert_eq!(four.closes(), [EndReason::Revoked]);
        assert_eq!(connections.revocations().len(), 1);
        assert!(!connections.is_revoked(&claims(None, "carol", "c1", t)));
        // Everyone's tokens issued before t: one and three.
        assert_eq!(connections.revoke(Selector::all_issued_before(t)), 2);
        assert_eq!(one.closes(), [EndReason::Revoked]);
        assert_eq!(three.closes(), [EndReason::Revoked]);
        assert!(connections.is_revoked(&claims(None, "dave", "d1", t - 1)));
        assert!(!connections.is_revoked(&claims(None, "dave", "d1", t)));
        // Everyone up to now: a token issued this second is refused too.
        assert_eq!(connections.revoke(Selector::all()), 0);
        assert!(connections.is_revoked(&claims(None, "erin", "e1", t)));
        assert!(!connections.is_revoked(&claims(None, "erin", "e1", t + 2)));
        assert_eq!(connections.revocations().len(), 3);
    }
}
