//! The set of live connections a layer has authenticated: graceful
//! shutdown and revocation of a subject's sockets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

use crate::protocol::CloseReason;

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

#[derive(Debug)]
struct Entry {
    sub: Option<Arc<str>>,
    signal: Arc<CloseSignal>,
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
        for entry in self.inner.live().values() {
            entry.signal.request(CloseReason::ServerShutdown);
        }
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
        let live = self.inner.live();
        let matching = live
            .values()
            .filter(|entry| entry.sub.as_deref() == Some(sub));
        let mut closed = 0;
        for entry in matching {
            entry.signal.request(CloseReason::Forbidden);
            closed += 1;
        }
        closed
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
    pub(crate) fn register(&self, id: u64, sub: Option<Arc<str>>) -> LiveGuard {
        let signal = Arc::new(CloseSignal::default());
        self.inner.live().insert(
            id,
            Entry {
                sub,
                signal: Arc::clone(&signal),
            },
        );
        // Checked after inserting, so a concurrent shutdown cannot miss it.
        if self.is_shutting_down() {
            signal.request(CloseReason::ServerShutdown);
        }
        LiveGuard {
            registry: Arc::clone(&self.inner),
            id,
            signal,
        }
    }
}

/// A request, from outside the connection, that it close. Polled on every
/// turn of the driver's loop, so it is an atomic and a waker slot, not a
/// lock.
#[derive(Debug, Default)]
pub(crate) struct CloseSignal {
    /// 0 while none; otherwise the close code of the first request.
    code: AtomicU16,
    waker: AtomicWaker,
}

impl CloseSignal {
    fn request(&self, reason: CloseReason) {
        let _ = self
            .code
            .compare_exchange(0, reason.code(), Ordering::AcqRel, Ordering::Acquire);
        self.waker.wake();
    }

    pub(crate) fn poll_requested(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<CloseReason> {
        self.waker.register(cx.waker());
        match CloseReason::from_code(self.code.load(Ordering::Acquire)) {
            Some(reason) => std::task::Poll::Ready(reason),
            None => std::task::Poll::Pending,
        }
    }

    /// Resolves with the first requested reason.
    #[cfg(test)]
    pub(crate) async fn requested(&self) -> CloseReason {
        std::future::poll_fn(|cx| self.poll_requested(cx)).await
    }
}

/// Keeps a connection registered while its driver runs.
#[derive(Debug)]
pub(crate) struct LiveGuard {
    registry: Arc<Registry>,
    id: u64,
    signal: Arc<CloseSignal>,
}

impl LiveGuard {
    pub(crate) fn signal(&self) -> &CloseSignal {
        &self.signal
    }
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

    #[tokio::test]
    async fn closed_waits_for_the_last_guard() {
        let connections = Connections::new();
        connections.closed().await;
        let first = connections.register(1, Some("a".into()));
        let second = connections.register(2, Some("b".into()));
        assert_eq!(connections.count(), 2);
        connections.shutdown();
        assert_eq!(
            first.signal().requested().await,
            CloseReason::ServerShutdown
        );
        let waiter = tokio::spawn({
            let connections = connections.clone();
            async move { connections.closed().await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(second);
        waiter.await.unwrap();
        assert_eq!(connections.count(), 0);
        // Registered after shutdown: told to close at once.
        let late = connections.register(3, None);
        assert_eq!(late.signal().requested().await, CloseReason::ServerShutdown);
    }

    #[tokio::test]
    async fn close_subject_signals_only_that_subject() {
        let connections = Connections::new();
        let alice = [
            connections.register(1, Some("alice".into())),
            connections.register(2, Some("alice".into())),
        ];
        let bob = connections.register(3, Some("bob".into()));
        assert_eq!(connections.close_subject("alice"), 2);
        assert_eq!(connections.close_subject("nobody"), 0);
        for guard in &alice {
            assert_eq!(guard.signal().requested().await, CloseReason::Forbidden);
        }
        let pending = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            bob.signal().requested(),
        )
        .await;
        assert!(pending.is_err(), "bob must not be closed");
    }
}
