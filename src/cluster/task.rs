//! The background task: subscribe, resync, then apply what the channel
//! brings until the subscription fails; reconnect with backoff.

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::StreamExt;
use tokio::sync::watch;

use super::handle::Shared;
use super::message::Envelope;
use super::telemetry::{self, Via};
use super::{ClusterError, backoff};

/// Runs until `stop` turns true (or its sender is gone).
pub(super) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut attempt = 0u32;
    loop {
        let lost = tokio::select! {
            biased;
            () = stopped(&mut stop) => return,
            lost = session(&shared, &mut attempt) => lost,
        };
        let retry_in = backoff::delay(
            shared.settings.reconnect_base,
            shared.settings.reconnect_max,
            attempt,
        );
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
async fn session(shared: &Shared, attempt: &mut u32) -> ClusterError {
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
    if let Err(error) = resync(shared).await {
        return error;
    }
    shared.flush_outbox().await;
    if shared.mark_fresh() {
        telemetry::fresh();
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
                shared.flush_outbox().await;
            }
            () = shared.outbox_ready.notified() => shared.flush_outbox().await,
        }
    }
}

/// Applies every stored command this node has not applied yet.
async fn resync(shared: &Shared) -> Result<(), ClusterError> {
    let now = SystemTime::now();
    let stored = shared.store.stored(now).await?;
    shared.prune(now);
    let applied = stored
        .iter()
        .filter(|payload| shared.receive(payload, Via::Resync, now))
        .count();
    telemetry::resynced(stored.len(), applied);
    Ok(())
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
        let keep_until = envelope.command.keep_until_ms();
        if keep_until <= super::message::millis(now) {
            telemetry::ignored("expired");
            return false;
        }
        if !self.applied().insert(&envelope.id, keep_until) {
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
    use crate::cluster::builder::Settings;
    use crate::cluster::local::Mirror;
    use crate::cluster::message::{Command, instant};
    use crate::cluster::store::{Keys, Store};
    use crate::revocation::{Revocation, StalePolicy};

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
            revocation: Revocation::token("t-1"),
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
        assert!(
            shared
                .applied()
                .insert(&Envelope::parse(other.as_bytes()).unwrap().id, 30_000)
        );
    }
}
