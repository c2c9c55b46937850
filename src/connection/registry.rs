//! The set of live connections a layer has authenticated: graceful
//! shutdown and revocation of a subject's sockets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::Notify;

use super::EndReason;

/// A handle on the live connections of one [`WsAuthLayer`](crate::WsAuthLayer):
/// close them all with `1001 server shutting down`, close every socket of a
/// revoked subject with `4403 forbidden`, wait until they are gone.
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

#[derive(Debug, Default)]
struct Registry {
    live: Mutex<HashMap<u64, Entry>>,
    shutting_down: AtomicBool,
    all_closed: Notify,
}

struct Entry {
    sub: Option<Arc<str>>,
    connection: Weak<dyn Closable>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("sub", &self.sub)
            .finish_non_exhaustive()
    }
}

/// A connection the registry can ask to close.
pub(crate) trait Closable: Send + Sync {
    fn request_close(&self, reason: EndReason);
}

impl Registry {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        // The map stays consistent even if a holder panicked: every
        // operation on it is a single insert, remove or scan.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Connections {
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::default(),
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

    /// Live connections selected by `filter`, collected first so that none
    /// is asked to close while the registry is locked.
    fn matching(&self, filter: impl Fn(&Entry) -> bool) -> Vec<Arc<dyn Closable>> {
        self.inner
            .live()
            .values()
            .filter(|entry| filter(entry))
            .filter_map(|entry| entry.connection.upgrade())
            .collect()
    }

    /// Whether [`shutdown`](Self::shutdown) has been called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Closes every open socket whose token has this `sub` with
    /// `4403 forbidden`, e.g. when the user's session is revoked; returns how
    /// many were told to close. Pair it with
    /// [`revoked`](crate::WsAuthLayerBuilder::revoked) so the subject cannot
    /// reconnect or renew either.
    ///
    /// ```
    /// # fn f(layer: axum_ws_auth::WsAuthLayer<serde_json::Value>) {
    /// let closed = layer.connections().close_subject("user-42");
    /// # }
    /// ```
    pub fn close_subject(&self, sub: &str) -> usize {
        let matching = self.matching(|entry| entry.sub.as_deref() == Some(sub));
        for connection in &matching {
            connection.request_close(EndReason::Revoked);
        }
        matching.len()
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
    /// The caller stores the guard first, then closes the connection with
    /// `1001` if this returns `true` (a shutdown is under way), so the
    /// close cannot finish before the guard is in place.
    pub(crate) fn register(
        &self,
        id: u64,
        sub: Option<Arc<str>>,
        connection: Weak<dyn Closable>,
    ) -> (LiveGuard, bool) {
        self.inner.live().insert(id, Entry { sub, connection });
        let guard = LiveGuard {
            registry: Arc::clone(&self.inner),
            id,
        };
        // Checked after inserting, so a concurrent shutdown cannot miss it.
        (guard, self.is_shutting_down())
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

    #[derive(Default)]
    struct Recorder(Mutex<Vec<EndReason>>);

    impl Closable for Recorder {
        fn request_close(&self, reason: EndReason) {
            self.0.lock().unwrap().push(reason);
        }
    }

    fn connection() -> (Arc<Recorder>, Weak<dyn Closable>) {
        let recorder = Arc::new(Recorder::default());
        let weak = Arc::downgrade(&(Arc::clone(&recorder) as Arc<dyn Closable>));
        (recorder, weak)
    }

    #[tokio::test]
    async fn closed_waits_for_the_last_guard() {
        let connections = Connections::new();
        connections.closed().await;
        let (first, first_weak) = connection();
        let (_second, second_weak) = connection();
        let (first_guard, _) = connections.register(1, Some("a".into()), first_weak);
        let (second_guard, _) = connections.register(2, Some("b".into()), second_weak);
        assert_eq!(connections.count(), 2);
        connections.shutdown();
        assert_eq!(*first.0.lock().unwrap(), [EndReason::ServerShutdown]);
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
        let (_late, late_weak) = connection();
        let (_late_guard, shutting_down) = connections.register(3, None, late_weak);
        assert!(shutting_down);
    }

    #[tokio::test]
    async fn close_subject_asks_only_that_subject() {
        let connections = Connections::new();
        let (alice_phone, w1) = connection();
        let (alice_laptop, w2) = connection();
        let (bob, w3) = connection();
        let _guards = [
            connections.register(1, Some("alice".into()), w1).0,
            connections.register(2, Some("alice".into()), w2).0,
            connections.register(3, Some("bob".into()), w3).0,
        ];
        assert_eq!(connections.close_subject("alice"), 2);
        assert_eq!(connections.close_subject("nobody"), 0);
        for alice in [&alice_phone, &alice_laptop] {
            assert_eq!(*alice.0.lock().unwrap(), [EndReason::Revoked]);
        }
        assert!(bob.0.lock().unwrap().is_empty());
    }
}
