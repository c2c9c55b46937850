//! One timer task per layer for every connection's notice and expiry, so an
//! idle connection owns no task of its own.
//!
//! Entries hold weak references: a connection that is gone simply does not
//! answer. When an entry fires, the connection acts (sends its notice, or
//! ends) and says when it next wants to be woken.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::time::DelayQueue;

/// A connection the timer task can wake.
pub(crate) trait Timed: Send + Sync {
    /// Acts on the current time; returns when to be woken next, if ever.
    fn fire(self: Arc<Self>) -> Option<Instant>;
}

type Arm = (Instant, Weak<dyn Timed>);

/// Handle on a layer's timer task, started with the first connection.
#[derive(Default)]
pub(crate) struct Timers {
    task: Mutex<Option<mpsc::UnboundedSender<Arm>>>,
}

impl Timers {
    pub(crate) fn arm(&self, at: Instant, target: Weak<dyn Timed>) {
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        // Restarted if the runtime it ran on has gone (a layer shared by
        // several runtimes, as in tests).
        let sender = match task.as_ref().filter(|sender| !sender.is_closed()) {
            Some(sender) => sender,
            None => {
                let (sender, receiver) = mpsc::unbounded_channel();
                tokio::spawn(run(receiver));
                task.insert(sender)
            }
        };
        let _ = sender.send((at, target));
    }
}

impl std::fmt::Debug for Timers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timers").finish_non_exhaustive()
    }
}

async fn run(mut armed: mpsc::UnboundedReceiver<Arm>) {
    let mut queue: DelayQueue<Weak<dyn Timed>> = DelayQueue::new();
    loop {
        tokio::select! {
            next = armed.recv() => match next {
                Some((at, target)) => {
                    queue.insert_at(target, at);
                }
                // The layer is gone; connections it made may still be timed.
                None if queue.is_empty() => return,
                None => drain(&mut queue).await,
            },
            Some(expired) = std::future::poll_fn(|cx| queue.poll_expired(cx)), if !queue.is_empty() => {
                fire(&mut queue, expired.into_inner());
            }
        }
    }
}

async fn drain(queue: &mut DelayQueue<Weak<dyn Timed>>) {
    while let Some(expired) = std::future::poll_fn(|cx| queue.poll_expired(cx)).await {
        fire(queue, expired.into_inner());
    }
}

fn fire(queue: &mut DelayQueue<Weak<dyn Timed>>, target: Weak<dyn Timed>) {
    if let Some(connection) = target.upgrade()
        && let Some(next) = connection.fire()
    {
        queue.insert_at(target, next);
    }
}
