//! One timer task per layer for every connection's notice and expiry, so an
//! idle connection owns no task of its own.
//!
//! The task keeps at most one entry per connection, re-armed in place, and
//! drops it when the connection goes away: entries hold weak references,
//! which would otherwise keep a closed connection's memory until its old
//! deadline. When an entry fires, the connection acts (sends its notice, or
//! ends) and says when it next wants to be woken.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::time::DelayQueue;
use tokio_util::time::delay_queue::Key;

/// A connection the timer task can wake.
pub(crate) trait Timed: Send + Sync {
    /// Acts on the current time; returns when to be woken next, if ever.
    fn fire(self: Arc<Self>) -> Option<Instant>;
}

enum Command {
    Arm {
        id: u64,
        at: Instant,
        target: Weak<dyn Timed>,
    },
    Cancel {
        id: u64,
    },
}

/// Handle on a layer's timer task, started with the first connection.
#[derive(Default)]
pub(crate) struct Timers {
    task: Mutex<Option<mpsc::UnboundedSender<Command>>>,
}

impl Timers {
    /// Wakes connection `id` at `at` (replacing any earlier request).
    pub(crate) fn arm(&self, id: u64, at: Instant, target: Weak<dyn Timed>) {
        self.send(Command::Arm { id, at, target });
    }

    /// Forgets connection `id`.
    pub(crate) fn cancel(&self, id: u64) {
        self.send(Command::Cancel { id });
    }

    fn send(&self, command: Command) {
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = task.as_ref().filter(|sender| !sender.is_closed()) {
            let _ = sender.send(command);
            return;
        }
        if matches!(command, Command::Cancel { .. }) {
            return;
        }
        // Started (or restarted, if the runtime it ran on has gone, as with a
        // layer shared by several test runtimes) on the current runtime.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        runtime.spawn(run(receiver));
        let _ = task.insert(sender).send(command);
    }
}

impl std::fmt::Debug for Timers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timers").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Schedule {
    queue: DelayQueue<(u64, Weak<dyn Timed>)>,
    keys: HashMap<u64, Key>,
}

impl Schedule {
    fn apply(&mut self, command: Command) {
        match command {
            Command::Arm { id, at, target } => match self.keys.get(&id) {
                Some(key) => self.queue.reset_at(key, at),
                None => {
                    let key = self.queue.insert_at((id, target), at);
                    self.keys.insert(id, key);
                }
            },
            Command::Cancel { id } => {
                if let Some(key) = self.keys.remove(&id) {
                    self.queue.remove(&key);
                }
            }
        }
    }

    fn fire(&mut self, (id, target): (u64, Weak<dyn Timed>)) {
        self.keys.remove(&id);
        if let Some(connection) = target.upgrade()
            && let Some(next) = connection.fire()
        {
            let key = self.queue.insert_at((id, target), next);
            self.keys.insert(id, key);
        }
    }
}

async fn run(mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut schedule = Schedule::default();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => schedule.apply(command),
                // The layer is gone; connections it made may still be timed.
                None => break,
            },
            Some(expired) = std::future::poll_fn(|cx| schedule.queue.poll_expired(cx)), if !schedule.queue.is_empty() => {
                schedule.fire(expired.into_inner());
            }
        }
    }
    while let Some(expired) = std::future::poll_fn(|cx| schedule.queue.poll_expired(cx)).await {
        schedule.fire(expired.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Timed for Counter {
        fn fire(self: Arc<Self>) -> Option<Instant> {
            self.0.fetch_add(1, Ordering::SeqCst);
            None
        }
    }

    fn target(counter: &Arc<Counter>) -> Weak<dyn Timed> {
        let strong: Arc<dyn Timed> = Arc::clone(counter) as Arc<dyn Timed>;
        Arc::downgrade(&strong)
    }

    #[tokio::test(start_paused = true)]
    async fn one_entry_per_connection_rearmed_in_place_and_dropped_on_cancel() {
        let mut schedule = Schedule::default();
        let counter = Arc::new(Counter::default());
        let start = Instant::now();
        for seconds in [30, 10, 20] {
            schedule.apply(Command::Arm {
                id: 7,
                at: start + Duration::from_secs(seconds),
                target: target(&counter),
            });
        }
        assert_eq!((schedule.queue.len(), schedule.keys.len()), (1, 1));
        let expired = std::future::poll_fn(|cx| schedule.queue.poll_expired(cx))
            .await
            .unwrap();
        assert_eq!(Instant::now(), start + Duration::from_secs(20));
        schedule.fire(expired.into_inner());
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(
            schedule.keys.is_empty(),
            "fire returned None: nothing re-armed"
        );

        schedule.apply(Command::Arm {
            id: 8,
            at: start + Duration::from_secs(60),
            target: target(&counter),
        });
        schedule.apply(Command::Cancel { id: 8 });
        assert!(schedule.queue.is_empty() && schedule.keys.is_empty());
    }
}
