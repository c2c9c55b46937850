//! The set of live connections a layer has authenticated, for graceful
//! shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};

/// A handle on the live connections of one [`WsAuthLayer`](crate::WsAuthLayer),
/// used to close them all with `1001 server shutting down` and to wait until
/// they are gone.
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
    shutdown: watch::Sender<bool>,
    live: AtomicUsize,
    all_closed: Notify,
}

impl Connections {
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::new(Registry {
                shutdown: watch::Sender::new(false),
                live: AtomicUsize::new(0),
                all_closed: Notify::new(),
            }),
        }
    }

    /// How many authenticated sockets are open.
    pub fn count(&self) -> usize {
        self.inner.live.load(Ordering::Acquire)
    }

    /// Closes every open socket, and every socket still being upgraded, with
    /// `1001 server shutting down`.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Whether [`shutdown`](Self::shutdown) has been called.
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
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
    pub(crate) fn register(&self) -> (LiveGuard, watch::Receiver<bool>) {
        self.inner.live.fetch_add(1, Ordering::AcqRel);
        (
            LiveGuard {
                registry: Arc::clone(&self.inner),
            },
            self.inner.shutdown.subscribe(),
        )
    }
}

/// Keeps a connection counted while its driver runs.
#[derive(Debug)]
pub(crate) struct LiveGuard {
    registry: Arc<Registry>,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.registry.live.fetch_sub(1, Ordering::AcqRel) == 1 {
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
        let (first, _) = connections.register();
        let (second, shutdown) = connections.register();
        assert_eq!(connections.count(), 2);
        connections.shutdown();
        assert!(*shutdown.borrow());
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
    }
}
