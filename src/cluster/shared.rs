//! What the handle and the background task share: the node's settings,
//! its Redis store, its local mirror, what it knows of the cluster's
//! commands, the commands waiting to be published, and whether the mirror
//! is fresh. The handle (`handle.rs`) issues commands through it; the task
//! (`task.rs`) receives, syncs and republishes through it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};

use super::known::{Entry, Known};
use super::local::Mirror;
use super::message::{Command, Envelope, duration_ms, millis};
use super::store::Store;
use super::telemetry;
use crate::revocation::StalePolicy;

/// The settings the background task reads.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) stale_policy: StalePolicy,
    pub(super) retention: Duration,
    pub(super) reconnect_base: Duration,
    pub(super) reconnect_max: Duration,
    pub(super) health_check: Duration,
}

/// What the handle and the background task share.
pub(super) struct Shared {
    /// This process's node id: its own messages are already applied.
    pub(super) node: String,
    pub(super) store: Store,
    pub(super) mirror: Arc<dyn Mirror>,
    pub(super) settings: Settings,
    /// Every command issued or applied here, as Redis stores it.
    known: Mutex<Known>,
    outbox: Mutex<Vec<Envelope>>,
    pub(super) outbox_ready: Notify,
    fresh: watch::Sender<bool>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("node", &self.node)
            .field("keys", &self.store.keys)
            .field("fresh", &*self.fresh.borrow())
            .finish_non_exhaustive()
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every holder does one insert, scan or swap: the data stays whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(super) fn new(
        node: String,
        store: Store,
        mirror: Arc<dyn Mirror>,
        settings: Settings,
    ) -> Self {
        Self {
            node,
            store,
            mirror,
            settings,
            known: Mutex::default(),
            outbox: Mutex::default(),
            outbox_ready: Notify::new(),
            fresh: watch::Sender::new(false),
        }
    }

    pub(super) fn known(&self) -> MutexGuard<'_, Known> {
        lock(&self.known)
    }

    pub(super) fn prune(&self, now: SystemTime) {
        self.known().prune(now);
        let now = millis(now);
        lock(&self.outbox).retain(|envelope| envelope.command.keep_until_ms() > now);
    }

    /// Marks the mirror fresh; true if it was stale. The layer first, then
    /// the watchers: whoever sees `fresh` finds the layer taking handshakes.
    /// (Only the task calls this and [`mark_stale`](Self::mark_stale).)
    pub(super) fn mark_fresh(&self) -> bool {
        let was_fresh = *self.fresh.borrow();
        if !was_fresh {
            self.mirror.set_stale(None);
            self.fresh.send_replace(true);
        }
        !was_fresh
    }

    /// Marks the mirror stale; true if it was fresh. The layer first, as in
    /// [`mark_fresh`](Self::mark_fresh).
    pub(super) fn mark_stale(&self) -> bool {
        let was_fresh = *self.fresh.borrow();
        if was_fresh {
            self.mirror.set_stale(Some(self.settings.stale_policy));
            self.fresh.send_replace(false);
        }
        was_fresh
    }

    /// Applies `command` here, then stores and publishes it (or queues it);
    /// how many local sockets it reached, and whether Redis took it.
    /// A command about one connection is applied here only: connection ids
    /// are this node's own, and the same number names another connection
    /// on another node.
    pub(super) async fn issue(&self, command: Command, now: SystemTime) -> (usize, bool) {
        if !command.is_cluster_wide() {
            return (self.mirror.apply(&command, now), false);
        }
        let envelope = Envelope::new(&self.node, command, now);
        let entry = Entry::new(&envelope.command, envelope.to_json().as_bytes());
        let local = self.mirror.apply(&envelope.command, now);
        let published = self.publish(&envelope, now).await;
        // Known once stored or queued: a resync reading Redis while the
        // publication is under way must not count it as lost.
        let id = envelope.id.clone();
        if !published {
            lock(&self.outbox).push(envelope);
            self.outbox_ready.notify_one();
        }
        self.known().insert(&id, entry);
        (local, published)
    }

    /// The entries this node knows that Redis lacks (`stored` is what a
    /// resync read), leaving out what the outbox will publish and what
    /// stops mattering within `margin`.
    pub(super) fn missing(
        &self,
        mark: u64,
        stored: &[Vec<u8>],
        now: SystemTime,
        margin: Duration,
    ) -> Vec<Entry> {
        let stored = stored.iter().map(Vec::as_slice).collect();
        let outbox = lock(&self.outbox);
        let unpublished = outbox.iter().map(|envelope| envelope.id.as_str()).collect();
        let not_before = millis(now).saturating_add(duration_ms(margin));
        self.known()
            .missing(mark, &stored, &unpublished, not_before)
    }

    async fn publish(&self, envelope: &Envelope, now: SystemTime) -> bool {
        let kind = envelope.command.kind();
        match self.store.publish(envelope, now).await {
            Ok(()) => {
                telemetry::published(kind, &envelope.id);
                true
            }
            Err(error) => {
                telemetry::publish_failed(kind, &envelope.id, &error);
                false
            }
        }
    }

    /// How many issued commands wait for Redis.
    pub(super) fn queued(&self) -> usize {
        lock(&self.outbox).len()
    }

    /// Whether the mirror is fresh, as a watch.
    pub(super) fn fresh(&self) -> &watch::Sender<bool> {
        &self.fresh
    }

    /// Publishes what could not be published when it was issued; what
    /// fails again stays queued.
    pub(super) async fn flush_outbox(&self) {
        let queued = std::mem::take(&mut *lock(&self.outbox));
        let now = SystemTime::now();
        for envelope in queued {
            if envelope.command.keep_until_ms() > millis(now) && !self.publish(&envelope, now).await
            {
                lock(&self.outbox).push(envelope);
            }
        }
    }
}
