//! The background task: subscribe, sync, then apply what the channel
//! brings until the subscription fails; reconnect with backoff.
//!
//! A sync reads every stored command (a resync) and writes back what this
//! node knows that Redis lacks (anti-entropy); when and why, from the
//! cluster's epoch, is `epoch.rs`. The first resync the epoch allows on a
//! connection makes the mirror fresh; the write-back follows it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use tokio::sync::watch;

use super::ClusterError;
use super::epoch::{Epoch, Loss, Observed, Step};
use super::known::Entry;
use super::message::{Envelope, duration_ms, millis, random_id};
use super::shared::Shared;
use super::telemetry::{self, Via};
use crate::backoff::Backoff;

/// Entries written back per Redis transaction, and the pause between two:
/// 100 000 entries take about 200 transactions and half a second of
/// pauses, in which the channel, handshakes and the other nodes go on.
const WRITE_BACK_BATCH: usize = 500;
const WRITE_BACK_PAUSE: Duration = Duration::from_millis(2);

/// Entries with less than this left are not written back: a node whose
/// clock runs ahead may just have dropped them as expired.
const WRITE_BACK_MARGIN: Duration = Duration::from_secs(1);

/// Writing back entries that stop mattering within this sets no new
/// epoch (see [`write_back`]).
const RESYNC_HORIZON: Duration = Duration::from_secs(60);

/// Runs until `stop` turns true (or its sender is gone).
pub(super) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut attempt = 0u32;
    // Outlives each connection: a node that saw the epoch once knows, after
    // any reconnection, whether Redis lost it since.
    let mut epoch = Epoch::default();
    loop {
        let lost = tokio::select! {
            biased;
            () = stopped(&mut stop) => return,
            lost = session(&shared, &mut attempt, &mut epoch) => lost,
        };
        let retry_in = Backoff {
            base: shared.settings.reconnect_base,
            max: shared.settings.reconnect_max,
        }
        .delay(attempt);
        attempt = attempt.saturating_add(1);
        if shared.mark_stale() {
            telemetry::stale(&lost, retry_in);
        } else {
            telemetry::reconnect_failed(&lost, retry_in);
        }
        tokio::select! {
            biased;
            () = stopped(&mut stop) => return,
            () = tokio::time::sleep(retry_in) => {}
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // A dropped sender stops the task too.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// One subscription, from connecting until it fails; returns why.
async fn session(shared: &Shared, attempt: &mut u32, epoch: &mut Epoch) -> ClusterError {
    let timeout = shared.store.timeout();
    let within = |what: &'static str| move |_| ClusterError::Timeout(what);
    let pubsub = async {
        let mut pubsub = shared.store.client().get_async_pubsub().await?;
        // Subscribed before the resync: whatever is published from now on
        // waits in the stream, and whatever came before is in the store.
        pubsub.subscribe(&shared.store.keys.channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    let pubsub = match tokio::time::timeout(timeout, pubsub).await {
        Ok(Ok(pubsub)) => pubsub,
        Ok(Err(error)) => return error.into(),
        Err(elapsed) => return within("subscribe")(elapsed),
    };
    let (mut sink, mut stream) = pubsub.split();
    let mut synced = false;
    if let Err(error) = look(shared, epoch, &mut synced).await {
        return error;
    }
    *attempt = 0;

    let mut health = tokio::time::interval(shared.settings.health_check);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    health.reset();
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(message) => {
                    shared.receive(message.get_payload_bytes(), Via::Channel, SystemTime::now());
                }
                None => return ClusterError::SubscriptionClosed,
            },
            _ = health.tick() => {
                match tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return error.into(),
                    Err(elapsed) => return within("ping")(elapsed),
                }
                shared.prune(SystemTime::now());
                // A `FLUSHALL` leaves the subscription up: only the epoch
                // tells.
                if let Err(error) = look(shared, epoch, &mut synced).await {
                    return error;
                }
            }
            () = shared.outbox_ready.notified() => shared.flush_outbox().await,
        }
    }
}

/// Looks at the epoch and syncs when it says so; the first completed
/// resync of a connection makes the mirror fresh.
async fn look(shared: &Shared, epoch: &mut Epoch, synced: &mut bool) -> Result<(), ClusterError> {
    let observed = shared.store.observe().await?;
    let step = epoch.assess(&observed, *synced, Instant::now(), settle(shared));
    match step {
        Step::Current => {}
        Step::Wait => {
            // Apply what there is (a node that just started may as well
            // know it), but stay stale: Redis may have lost the rest.
            resync(shared).await?;
            telemetry::waiting(settle(shared));
        }
        Step::Sync { lost } => {
            let mark = shared.known().mark();
            let stored = resync(shared).await?;
            // This node now has everything Redis has, and its own: fresh,
            // before it writes back what others may lack.
            if !*synced {
                *synced = true;
                if shared.mark_fresh() {
                    telemetry::fresh();
                }
            }
            write_back(shared, epoch, &observed, lost, mark, stored).await?;
        }
    }
    shared.flush_outbox().await;
    Ok(())
}

/// How long a node that finds no epoch, and never saw one, waits for
/// another node to write entries back: every live node has by then
/// reconnected (backoff at most `reconnect_max`) or looked at the epoch
/// (every `health_check`), with a command timeout to spare for each.
fn settle(shared: &Shared) -> Duration {
    let settings = &shared.settings;
    settings
        .reconnect_max
        .saturating_add(settings.health_check)
        .saturating_add(shared.store.timeout().saturating_mul(2))
}

/// Writes back what this node knew before `mark` and Redis lacks, and
/// records the epoch: a new one when there was none for this Redis run,
/// or when what was written back still matters long enough that nodes
/// which synced in between should resync.
async fn write_back(
    shared: &Shared,
    epoch: &mut Epoch,
    observed: &Observed,
    lost: bool,
    mark: u64,
    stored: Vec<Vec<u8>>,
) -> Result<(), ClusterError> {
    let now = SystemTime::now();
    let missing = shared.missing(mark, &stored, now, WRITE_BACK_MARGIN);
    drop(stored);
    for batch in missing.chunks(WRITE_BACK_BATCH) {
        shared
            .store
            .write_back(batch, &shared.node, settle(shared))
            .await?;
        tokio::time::sleep(WRITE_BACK_PAUSE).await;
    }
    let loss = if lost {
        Some(Loss::EpochMissing)
    } else {
        (!missing.is_empty()).then_some(Loss::EntriesMissing)
    };
    if let Some(loss) = loss {
        telemetry::data_loss(loss, missing.len());
    }
    // Entries about to expire are written back for nodes that start, but
    // do not make every node resync: with clocks apart by more than the
    // margin, nodes would otherwise take turns rewriting them.
    let horizon = millis(now).saturating_add(duration_ms(RESYNC_HORIZON));
    let lasting = missing.iter().any(|entry| entry.keep_until_ms > horizon);
    match &observed.epoch {
        Some(current) if !lasting => epoch.saw(current.clone()),
        _ => {
            let new = observed.stamp(&random_id());
            shared.store.set_epoch(&new).await?;
            epoch.saw(new);
        }
    }
    Ok(())
}

/// Applies every stored command this node has not applied yet; returns
/// what is stored.
async fn resync(shared: &Shared) -> Result<Vec<Vec<u8>>, ClusterError> {
    let now = SystemTime::now();
    let stored = shared.store.stored(now).await?;
    shared.prune(now);
    let applied = stored
        .iter()
        .filter(|payload| shared.receive(payload, Via::Resync, now))
        .count();
    telemetry::resynced(stored.len(), applied);
    Ok(stored)
}

impl Shared {
    /// Applies one payload from the channel or the store, unless it is
    /// malformed, this node's own, expired or already applied; true if
    /// applied.
    pub(super) fn receive(&self, payload: &[u8], via: Via, now: SystemTime) -> bool {
        let envelope = match Envelope::parse(payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                telemetry::malformed(via.as_str(), &error);
                return false;
            }
        };
        let kind = envelope.command.kind();
        if via == Via::Channel {
            telemetry::received(kind);
        }
        if envelope.node == self.node {
            telemetry::ignored("own");
            return false;
        }
        if !envelope.command.is_cluster_wide() {
            // No node publishes one; another connection has this id here.
            telemetry::ignored("malformed");
            return false;
        }
        let keep_until = envelope.command.keep_until_ms();
        if keep_until <= millis(now) {
            telemetry::ignored("expired");
            return false;
        }
        if !self
            .known()
            .insert(&envelope.id, Entry::new(&envelope.command, payload))
        {
            telemetry::ignored("duplicate");
            return false;
        }
        let sockets = self.mirror.apply(&envelope.command, now);
        telemetry::applied(kind, &envelope.id, via, sockets, envelope.age(now));
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::cluster::known::Set;
    use crate::cluster::local::Mirror;
    use crate::cluster::message::{Command, instant};
    use crate::cluster::shared::Settings;
    use crate::cluster::store::{Keys, Store};
    use crate::revocation::{Selector, StalePolicy};

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Command>>);

    impl Mirror for Recorder {
        fn apply(&self, command: &Command, _now: SystemTime) -> usize {
            self.0.lock().unwrap().push(command.clone());
            1
        }
        fn set_stale(&self, _policy: Option<StalePolicy>) {}
    }

    fn shared(recorder: &Arc<Recorder>) -> Shared {
        let client = redis::Client::open("redis://127.0.0.1:1/").unwrap();
        let settings = Settings {
            stale_policy: StalePolicy::FailOpen,
            retention: Duration::from_secs(60),
            reconnect_base: Duration::from_millis(1),
            reconnect_max: Duration::from_millis(1),
            health_check: Duration::from_secs(1),
        };
        let mirror: Arc<dyn Mirror> = recorder.clone();
        let store = Store::new(client, Keys::new("t"), Duration::from_secs(1));
        Shared::new("this-node".into(), store, mirror, settings)
    }

    fn envelope(node: &str, drop_at_ms: u64) -> Envelope {
        let command = Command::Revoke {
            revocation: Selector::token("t-1"),
            revoked_at_ms: 1_000,
            drop_at_ms,
        };
        Envelope::new(node, command, instant(1_000))
    }

    #[test]
    fn a_command_is_applied_once_and_never_its_own_expired_or_malformed() {
        let recorder = Arc::new(Recorder::default());
        let shared = shared(&recorder);
        let now = instant(2_000);
        let other = envelope("other-node", 10_000).to_json();
        assert!(shared.receive(other.as_bytes(), Via::Channel, now));
        // The same id from a resync, or delivered twice: not again.
        assert!(!shared.receive(other.as_bytes(), Via::Resync, now));
        assert!(!shared.receive(other.as_bytes(), Via::Channel, now));
        let own = envelope("this-node", 10_000).to_json();
        assert!(!shared.receive(own.as_bytes(), Via::Channel, now));
        let expired = envelope("other-node", 1_500).to_json();
        assert!(!shared.receive(expired.as_bytes(), Via::Resync, now));
        for garbage in [&b"{"[..], b"\x00\xff", b"[]", b"{\"v\":1,\"node\":7}"] {
            assert!(!shared.receive(garbage, Via::Channel, now));
        }
        assert_eq!(recorder.0.lock().unwrap().len(), 1);
        // Once it stops mattering, its id is forgotten with it.
        shared.prune(instant(20_000));
        assert!(shared.known().insert(
            &Envelope::parse(other.as_bytes()).unwrap().id,
            Entry {
                set: Set::Revocations,
                keep_until_ms: 30_000,
                payload: other.as_bytes().into(),
            }
        ));
    }

    #[test]
    fn a_command_about_one_connection_from_another_node_is_never_applied() {
        let recorder = Arc::new(Recorder::default());
        let shared = shared(&recorder);
        for command in [
            Command::Revoke {
                revocation: Selector::connection(7),
                revoked_at_ms: 1_000,
                drop_at_ms: 10_000,
            },
            Command::Reauthenticate {
                selector: Selector::connection(7),
                deadline_ms: 10_000,
            },
        ] {
            let payload = Envelope::new("other-node", command, instant(1_000)).to_json();
            assert!(!shared.receive(payload.as_bytes(), Via::Channel, instant(2_000)));
        }
        assert!(recorder.0.lock().unwrap().is_empty());
    }
}
