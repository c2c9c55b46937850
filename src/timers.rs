//! One timer task per layer for every connection's notice and expiry, so an
//! idle connection owns no task of its own.
//!
//! The schedule is an ordered set of `(instant, connection id)` entries
//! shared between the layer and its task, one entry per connection. A
//! connection re-arms its own entry, always under its own lock, so the
//! entry it remembers is the one in the schedule. Entries hold weak
//! references: a closed connection's memory is not kept until its old
//! deadline.
//!
//! Nothing here has a single point of failure. Any instant is accepted, a
//! century ahead included (the task sleeps in bounded steps). A connection
//! whose timer work panics is retried shortly after, and the others fire on
//! time. If the task itself dies, a supervisor starts a new one, which finds
//! every pending entry where the old one left it.
//!
//! A layer served from several runtimes (a thread-per-core server, tests
//! sharing one layer) has one task on each runtime that arms: all of them
//! serve the one schedule, so no runtime's connections depend on another
//! runtime staying alive and driven.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
#[cfg(test)]
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::runtime::{Handle, Id};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The longest the task sleeps in one go; far deadlines are reached in
/// steps, so no instant is too far for the runtime's timer.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// How soon a connection whose timer work panicked is tried again.
const RETRY_AFTER_PANIC: Duration = Duration::from_millis(100);

/// How soon a connection whose lock was taken is tried again.
const RETRY_WHEN_BUSY: Duration = Duration::from_millis(1);

/// A connection the timer task can wake.
pub(crate) trait Timed: Send + Sync {
    /// Acts on the current time. `fired` is the entry's instant; the
    /// connection re-arms itself (through [`Timers::arm`]) if it wants to
    /// be woken again.
    fn fire(self: Arc<Self>, fired: Instant) -> Fired;
}

/// What became of a wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fired {
    /// Acted on.
    Done,
    /// The connection was busy (its lock held elsewhere): try again
    /// shortly, without holding up any other connection.
    Busy,
}

type Entries = BTreeMap<(Instant, u64), Weak<dyn Timed>>;

#[derive(Default)]
struct Schedule {
    entries: Mutex<Entries>,
    /// Wakes the tasks when an entry earlier than their current sleep
    /// arrives.
    earlier: Notify,
    /// The runtimes a supervisor is running on.
    running: Mutex<Vec<Id>>,
    /// Tests hold the task back, as a starved runtime would.
    #[cfg(test)]
    stalled: AtomicBool,
}

impl Schedule {
    fn entries(&self) -> MutexGuard<'_, Entries> {
        // Every operation on the map is a single insert, remove or split.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn running(&self) -> MutexGuard<'_, Vec<Id>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Handle on a layer's timer task, started with the first connection.
#[derive(Default)]
pub(crate) struct Timers {
    schedule: Arc<Schedule>,
}

impl Timers {
    /// Wakes connection `id` at `at`, replacing its entry at `previous`.
    pub(crate) fn arm(
        &self,
        id: u64,
        previous: Option<Instant>,
        at: Instant,
        target: Weak<dyn Timed>,
    ) {
        let earliest = {
            let mut entries = self.schedule.entries();
            if let Some(previous) = previous {
                entries.remove(&(previous, id));
            }
            entries.insert((at, id), target);
            entries
                .first_key_value()
                .is_some_and(|(key, _)| *key == (at, id))
        };
        if earliest {
            self.schedule.earlier.notify_waiters();
        }
        self.ensure_running();
    }

    /// Forgets connection `id`'s entry at `at`.
    pub(crate) fn cancel(&self, id: u64, at: Instant) {
        self.schedule.entries().remove(&(at, id));
    }

    /// Holds the timer task back (or lets it go), as a starved runtime
    /// would: nothing fires while stalled.
    #[cfg(test)]
    pub(crate) fn stall(&self, stalled: bool) {
        self.schedule.stalled.store(stalled, Ordering::SeqCst);
        self.schedule.earlier.notify_waiters();
    }

    /// How many connections are waiting for a wake-up.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.schedule.entries().len()
    }

    /// Starts a supervisor on the current runtime unless one runs there.
    /// It stops with its runtime (a layer may outlive a test's runtime, or
    /// be served from several), so a task on another runtime never decides
    /// whether this runtime's connections expire.
    fn ensure_running(&self) {
        let Ok(runtime) = Handle::try_current() else {
            return;
        };
        let id = runtime.id();
        {
            let mut running = self.schedule.running();
            if running.contains(&id) {
                return;
            }
            running.push(id);
        }
        // The guard is made here, not in the task: a task dropped before
        // its first poll must leave the list too.
        runtime.spawn(supervise(Running {
            schedule: Arc::clone(&self.schedule),
            runtime: id,
        }));
    }
}

impl std::fmt::Debug for Timers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timers")
            .field("pending", &self.schedule.entries().len())
            .finish()
    }
}

/// Marks the supervisor of a runtime gone when its future is dropped, so
/// the next arm there starts a new one.
struct Running {
    schedule: Arc<Schedule>,
    runtime: Id,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.schedule.running().retain(|id| *id != self.runtime);
    }
}

async fn supervise(running: Running) {
    loop {
        let worker = tokio::spawn(run(Arc::clone(&running.schedule)));
        match worker.await {
            Err(error) if error.is_panic() => {
                tracing::error!(
                    target: "axum_ws_auth",
                    event = "timer_restarted",
                    "the timer task panicked; restarted with every pending entry"
                );
            }
            // Cancelled: the runtime is shutting down.
            _ => return,
        }
    }
}

async fn run(schedule: Arc<Schedule>) {
    loop {
        // Listening before the schedule is read: an earlier entry armed
        // from now on wakes this task (every task of the schedule).
        let earlier = schedule.earlier.notified();
        tokio::pin!(earlier);
        earlier.as_mut().enable();
        #[cfg(test)]
        if schedule.stalled.load(Ordering::SeqCst) {
            earlier.await;
            continue;
        }
        let now = Instant::now();
        let due = {
            let mut entries = schedule.entries();
            let later = entries.split_off(&(now, u64::MAX));
            std::mem::replace(&mut *entries, later)
        };
        for ((fired, id), target) in due {
            let Some(connection) = target.upgrade() else {
                continue;
            };
            let retry = match catch_unwind(AssertUnwindSafe(|| connection.fire(fired))) {
                Ok(Fired::Done) => continue,
                Ok(Fired::Busy) => RETRY_WHEN_BUSY,
                Err(_) => {
                    tracing::error!(
                        target: "axum_ws_auth",
                        event = "timer_panicked",
                        conn_id = id,
                        "a connection's timer work panicked; retrying it"
                    );
                    RETRY_AFTER_PANIC
                }
            };
            schedule.entries().insert((now + retry, id), target);
        }
        let next = schedule.entries().first_key_value().map(|((at, _), _)| *at);
        let wake = next.map_or(now + MAX_SLEEP, |at| at.min(now + MAX_SLEEP));
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = earlier => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Records when it fired; panics on its first `panics` fires.
    struct Probe {
        fired: Mutex<Vec<Instant>>,
        panics: AtomicUsize,
    }

    impl Probe {
        fn new(panics: usize) -> Arc<Self> {
            Arc::new(Self {
                fired: Mutex::new(Vec::new()),
                panics: AtomicUsize::new(panics),
            })
        }

        fn fired(&self) -> Vec<Instant> {
            self.fired.lock().unwrap().clone()
        }
    }

    impl Timed for Probe {
        fn fire(self: Arc<Self>, _: Instant) -> Fired {
            self.fired.lock().unwrap().push(Instant::now());
            if self
                .panics
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                panic!("timer work failed");
            }
            Fired::Done
        }
    }

    fn weak(probe: &Arc<Probe>) -> Weak<dyn Timed> {
        let strong: Arc<dyn Timed> = Arc::clone(probe) as Arc<dyn Timed>;
        Arc::downgrade(&strong)
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fires_each_connection_once_at_its_instant_and_rearms_in_place() {
        let timers = Timers::default();
        let start = Instant::now();
        let probe = Probe::new(0);
        let at = |secs| start + Duration::from_secs(secs);
        timers.arm(1, None, at(30), weak(&probe));
        timers.arm(1, Some(at(30)), at(10), weak(&probe));
        assert_eq!(timers.pending(), 1, "one entry per connection");
        tokio::time::sleep_until(at(40)).await;
        settle().await;
        assert_eq!(probe.fired(), [at(10)]);
        assert_eq!(timers.pending(), 0, "fired entries leave the schedule");

        timers.arm(1, None, at(60), weak(&probe));
        timers.cancel(1, at(60));
        tokio::time::sleep_until(at(90)).await;
        settle().await;
        assert_eq!(probe.fired(), [at(10)], "cancelled entries never fire");
    }

    #[tokio::test(start_paused = true)]
    async fn far_future_instants_are_accepted_and_do_not_stop_earlier_ones() {
        let timers = Timers::default();
        let start = Instant::now();
        let far = Probe::new(0);
        let near = Probe::new(0);
        // About the largest instant the socket can produce (a century), and
        // more than the 2^36 ms a tokio delay queue accepts.
        timers.arm(
            1,
            None,
            start + Duration::from_secs(100 * 365 * 86400),
            weak(&far),
        );
        timers.arm(2, None, start + Duration::from_secs(5), weak(&near));
        tokio::time::sleep(Duration::from_secs(6)).await;
        settle().await;
        assert_eq!(near.fired(), [start + Duration::from_secs(5)]);
        assert!(far.fired().is_empty());
        assert_eq!(timers.pending(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_connection_is_retried_and_disturbs_no_other() {
        let timers = Timers::default();
        let start = Instant::now();
        let failing = Probe::new(2);
        let others: Vec<_> = (0..3).map(|_| Probe::new(0)).collect();
        timers.arm(1, None, start + Duration::from_secs(1), weak(&failing));
        for (n, other) in others.iter().enumerate() {
            let at = start + Duration::from_secs(1) + Duration::from_millis(n as u64 * 10);
            timers.arm(10 + n as u64, None, at, weak(other));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        settle().await;
        for (n, other) in others.iter().enumerate() {
            let at = start + Duration::from_secs(1) + Duration::from_millis(n as u64 * 10);
            assert_eq!(other.fired(), [at], "connection {n} fired on time");
        }
        // Two panics, then the third attempt succeeds, RETRY_AFTER_PANIC apart.
        let fired = failing.fired();
        assert_eq!(fired.len(), 3, "{fired:?}");
        assert_eq!(fired[2] - fired[0], RETRY_AFTER_PANIC * 2);
    }

    #[test]
    fn entries_outlive_the_runtime_their_task_ran_on() {
        let timers = Timers::default();
        let probes: Vec<_> = (0..4).map(|_| Probe::new(0)).collect();
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        first.block_on(async {
            for (n, probe) in probes.iter().enumerate() {
                let at = Instant::now() + Duration::from_millis(100 + 10 * n as u64);
                timers.arm(n as u64, None, at, weak(probe));
            }
        });
        // The task dies with its runtime before any entry is due.
        drop(first);
        assert_eq!(timers.pending(), 4);
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let extra = Probe::new(0);
        second.block_on(async {
            timers.arm(
                99,
                None,
                Instant::now() + Duration::from_millis(50),
                weak(&extra),
            );
            tokio::time::sleep(Duration::from_millis(400)).await;
        });
        for probe in probes.iter().chain([&extra]) {
            assert_eq!(probe.fired().len(), 1);
        }
        assert_eq!(timers.pending(), 0);
    }

    /// A layer served from two runtimes: the timer task started on the
    /// first, and the first goes away (a test's runtime ends, one runtime of
    /// a thread-per-core server shuts down). Entries armed from the second
    /// while the first was alive must still fire.
    #[test]
    fn entries_armed_from_another_runtime_fire_after_the_first_one_dies() {
        let timers = Timers::default();
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap()
        };
        let (first, second) = (runtime(), runtime());
        let early = Probe::new(0);
        let late = Probe::new(0);
        first.block_on(async {
            timers.arm(
                1,
                None,
                Instant::now() + Duration::from_secs(60),
                weak(&early),
            );
        });
        second.block_on(async {
            timers.arm(
                2,
                None,
                Instant::now() + Duration::from_millis(100),
                weak(&late),
            );
        });
        drop(first);
        second.block_on(async { tokio::time::sleep(Duration::from_millis(400)).await });
        assert_eq!(late.fired().len(), 1, "armed from the second runtime");
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_connections_are_skipped() {
        let timers = Timers::default();
        let start = Instant::now();
        let probe = Probe::new(0);
        timers.arm(1, None, start + Duration::from_secs(1), weak(&probe));
        drop(probe);
        tokio::time::sleep(Duration::from_secs(2)).await;
        settle().await;
        assert_eq!(timers.pending(), 0);
    }
}
