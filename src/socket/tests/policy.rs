//! The layer's asynchronous policy on renewal: run outside the
//! connection's lock, bounded by its timeout, failing closed, and never
//! moving anyone's deadline.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;
use tokio::time::{Instant, sleep};

use super::support::Backpressure;
use super::*;
use crate::policy::{AuthPolicy, PolicyDenial, PolicyRequest};

/// Each renewal check: (is a renewal, connection id, sub).
type Calls = Arc<Mutex<Vec<(bool, Option<u64>, String)>>>;

/// A policy that lets handshakes through and, on renewal, does what the
/// token's `generation` says: 1 forbidden, 2 revoked, 3 failed, 4 panics
/// before returning a future, 5 panics while polled, 6 never answers;
/// anything else passes after `delay`.
fn by_generation(delay: Duration, seen: Calls) -> impl AuthPolicy<Claims> {
    move |request: PolicyRequest<Claims>| {
        seen.lock().unwrap().push((
            request.is_renewal(),
            request.connection_id(),
            request.claims().sub.clone(),
        ));
        let generation = request.claims().generation;
        if generation == 4 {
            panic!("policy bug before the future");
        }
        Box::pin(async move {
            match generation {
                1 => Err(PolicyDenial::Forbidden),
                2 => Err(PolicyDenial::Revoked),
                3 => Err(PolicyDenial::failed("session store down")),
                5 => panic!("policy bug while polled"),
                6 => std::future::pending().await,
                _ => {
                    sleep(delay).await;
                    Ok(())
                }
            }
        })
    }
}

fn seen() -> Calls {
    Arc::default()
}

#[tokio::test(start_paused = true)]
async fn frames_flow_while_a_slow_check_runs_and_the_renewal_lands_when_it_passes() {
    let calls = seen();
    let policy = by_generation(Duration::from_secs(10), Arc::clone(&calls));
    let layer = layer(|b| {
        defaults(b)
            .policy(policy)
            .policy_timeout(Duration::from_secs(60))
    });
    let exp = wall_now() + 120;
    let Setup { socket, mut peer } =
        open(&layer, &sign(SECRET, "alice", exp, 0), Backpressure::ROOMY);
    let connection_id = socket.identity().connection_id();
    let before = deadline(&socket);
    let mut app = App::run(socket);
    let started = Instant::now();
    peer.renew(&sign(SECRET, "alice", exp + 600, 7), "r1");
    for n in 0..3 {
        peer.send_text(format!("frame {n}"));
        let frame = app.frames.recv().await.unwrap();
        assert_eq!(frame, Message::Text(format!("frame {n}").into()));
    }
    assert!(
        Instant::now() - started < Duration::from_secs(10),
        "frames waited for the check"
    );
    assert_eq!(
        app.deadline(),
        before,
        "the deadline moved before the check passed"
    );
    assert_eq!(app.expires_at(), exp);
    let renewed = peer.next_json().await;
    assert_fired_at(started + Duration::from_secs(10));
    assert_eq!(
        renewed,
        json!({"type": "auth.renewed", "exp": exp + 600, "id": "r1"})
    );
    assert_eq!(app.expires_at(), exp + 600);
    assert_eq!(app.claims.borrow().generation, 7);
    assert_eq!(
        *calls.lock().unwrap(),
        [(true, Some(connection_id), "alice".to_owned())]
    );
}

#[tokio::test(start_paused = true)]
async fn a_check_still_running_at_the_deadline_closes_with_4401() {
    let policy = by_generation(Duration::from_secs(60), seen());
    let layer = layer(|b| {
        b.notify_before(Duration::ZERO)
            .leeway(Duration::ZERO)
            .policy(policy)
            .policy_timeout(Duration::from_secs(120))
    });
    let exp = wall_now() + 5;
    let Setup { socket, mut peer } =
        open(&layer, &sign(SECRET, "alice", exp, 0), Backpressure::ROOMY);
    let deadline = deadline(&socket);
    let app = App::run(socket);
    peer.renew(&sign(SECRET, "alice", exp + 600, 7), "r1");
    loop {
        match peer.next().await {
            Message::Text(text) => {
                let control: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                assert_eq!(control["type"], "auth.expiring", "{control}");
            }
            Message::Close(Some(frame)) => {
                assert_eq!(frame.code, 4401);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_fired_at(deadline);
    assert_eq!(app.expires_at(), exp);
    // The check's late answer changes nothing.
    sleep(Duration::from_secs(120)).await;
    assert_eq!(app.expires_at(), exp);
    assert!(peer.recv().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn denials_timeouts_and_panics_reject_the_renewal_and_keep_the_connection() {
    let layer = layer(|b| {
        defaults(b)
            .policy(by_generation(Duration::ZERO, seen()))
            .policy_timeout(Duration::from_secs(2))
    });
    let exp = wall_now() + 600;
    let Setup { socket, mut peer } =
        open(&layer, &sign(SECRET, "alice", exp, 0), Backpressure::ROOMY);
    let mut app = App::run(socket);
    let cases = [
        (1, "insufficient_scope", "insufficient scope"),
        (2, "invalid_token", "token revoked"),
        (3, "invalid_token", "authorization check unavailable"),
        (4, "invalid_token", "authorization check unavailable"),
        (5, "invalid_token", "authorization check unavailable"),
        (6, "invalid_token", "authorization check unavailable"),
    ];
    for (generation, error, description) in cases {
        let asked = Instant::now();
        let id = format!("g{generation}");
        peer.renew(&sign(SECRET, "alice", exp + 60, generation), &id);
        let answer = peer.next_json().await;
        assert_eq!(
            answer,
            json!({"type": "auth.renew_rejected", "error": error, "error_description": description, "id": id}),
            "generation {generation}"
        );
        if generation == 6 {
            assert_fired_at(asked + Duration::from_secs(2));
        }
        assert_eq!(app.expires_at(), exp);
        // Still open, still the application's.
        peer.send_text(format!("after {generation}"));
        assert_eq!(
            app.frames.recv().await.unwrap(),
            Message::Text(format!("after {generation}").into())
        );
    }
    peer.renew(&sign(SECRET, "alice", exp + 60, 0), "ok");
    assert_eq!(
        peer.next_json().await,
        json!({"type": "auth.renewed", "exp": exp + 60, "id": "ok"})
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_renewal_while_one_is_checked_is_refused_without_counting_as_abuse() {
    let layer = layer(|b| {
        defaults(b)
            .policy(by_generation(Duration::from_secs(5), seen()))
            .invalid_control_limit(1)
    });
    let exp = wall_now() + 600;
    let Setup { socket, mut peer } =
        open(&layer, &sign(SECRET, "alice", exp, 0), Backpressure::ROOMY);
    let app = App::run(socket);
    peer.renew(&sign(SECRET, "alice", exp + 60, 0), "first");
    for n in 0..3 {
        let id = format!("again{n}");
        peer.renew(&sign(SECRET, "alice", exp + 120, 0), &id);
        assert_eq!(
            peer.next_json().await,
            json!({"type": "auth.renew_rejected", "error": "invalid_request",
                   "error_description": "a renewal is already being checked", "id": id})
        );
    }
    assert_eq!(
        peer.next_json().await,
        json!({"type": "auth.renewed", "exp": exp + 60, "id": "first"})
    );
    assert_eq!(app.expires_at(), exp + 60);
}

/// A check that hangs or panics on one connection: every other
/// connection's notice and close still come at their instant.
#[tokio::test(start_paused = true)]
async fn a_hanging_or_panicking_check_moves_no_other_connections_notice_or_expiry() {
    let layer = layer(|b| {
        defaults(b)
            .policy(by_generation(Duration::ZERO, seen()))
            .policy_timeout(Duration::from_secs(3600))
    });
    let now = wall_now();
    let mut bystanders = Vec::new();
    for (n, ttl) in [40u64, 45, 50].into_iter().enumerate() {
        let Setup { socket, peer } = open(
            &layer,
            &sign(SECRET, &format!("user{n}"), now + ttl, 0),
            Backpressure::ROOMY,
        );
        bystanders.push((deadline(&socket), App::run(socket), peer));
    }
    let mut troublemakers = Vec::new();
    for generation in [4, 5, 6] {
        let Setup { socket, peer } = open(
            &layer,
            &sign(SECRET, "mallory", now + 600, 0),
            Backpressure::ROOMY,
        );
        peer.renew(&sign(SECRET, "mallory", now + 900, generation), "x");
        troublemakers.push((App::run(socket), peer));
    }
    let watchers: Vec<_> = bystanders
        .into_iter()
        .map(|(deadline, app, mut peer)| {
            tokio::spawn(async move {
                assert_eq!(peer.next_json().await["type"], "auth.expiring");
                let noticed = Instant::now();
                let (code, _) = peer.expect_close().await;
                drop(app);
                (deadline, noticed, code, Instant::now())
            })
        })
        .collect();
    for watcher in watchers {
        let (deadline, noticed, code, closed) = watcher.await.unwrap();
        let exp_at = deadline - Duration::from_secs(5);
        let notice_at = exp_at - Duration::from_secs(30);
        assert!(noticed >= notice_at && noticed - notice_at < Duration::from_millis(1));
        assert_eq!(code, 4401);
        assert!(closed >= deadline && closed - deadline < Duration::from_millis(1));
    }
    // The panicking checks were answered at once; the hanging one still
    // runs, and its connection works meanwhile.
    for (app, mut peer) in troublemakers.drain(..2) {
        assert_eq!(peer.next_json().await["type"], "auth.renew_rejected");
        drop(app);
    }
    let (mut app, peer) = troublemakers.pop().unwrap();
    peer.send_text("still here");
    assert_eq!(
        app.frames.recv().await.unwrap(),
        Message::Text("still here".into())
    );
}

/// A re-authentication request that comes while a renewal's check runs
/// applies to that renewal too: its token, issued before the request, is
/// refused when the check passes.
#[tokio::test(start_paused = true)]
async fn a_reauthentication_request_during_the_check_refuses_the_older_token() {
    let layer = layer(|b| {
        defaults(b)
            .policy(by_generation(Duration::from_secs(10), seen()))
            .policy_timeout(Duration::from_secs(60))
    });
    let exp = wall_now() + 600;
    let Setup { socket, mut peer } =
        open(&layer, &sign(SECRET, "alice", exp, 0), Backpressure::ROOMY);
    let app = App::run(socket);
    peer.renew(&sign(SECRET, "alice", exp + 60, 0), "r");
    sleep(Duration::from_secs(1)).await;
    let asked = layer
        .connections()
        .reauthenticate(crate::revocation::Selector::All, Duration::from_secs(30));
    assert_eq!(asked, 1);
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    assert_eq!(
        peer.next_json().await,
        json!({"type": "auth.renew_rejected", "error": "invalid_token",
               "error_description": "token issued before the re-authentication request", "id": "r"})
    );
    // Still under the request's deadline, not the refused token's.
    assert!(app.deadline() <= Instant::now() + Duration::from_secs(30));
    assert_eq!(app.expires_at(), exp);
}

/// A check future that answers, then panics when dropped.
struct PanicsWhenDropped(Option<Result<(), PolicyDenial>>);

impl std::future::Future for PanicsWhenDropped {
    type Output = Result<(), PolicyDenial>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.0.take() {
            Some(answer) => std::task::Poll::Ready(answer),
            None => std::task::Poll::Pending,
        }
    }
}

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("policy bug in drop");
        }
    }
}

/// A check future that panics when dropped (after answering, or when the
/// timeout drops it) is a failed check like one that panics while polled:
/// the renewal is answered, and the connection's next renewal is checked
/// again (not refused forever as "already being checked").
#[tokio::test(start_paused = true)]
async fn a_check_that_panics_when_dropped_fails_closed_and_the_next_renewal_is_checked() {
    type Boxed =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), PolicyDenial>> + Send>>;
    let policy = |request: PolicyRequest<Claims>| -> Boxed {
        match request.claims().generation {
            // Answers at once, panics when dropped.
            1 => Box::pin(PanicsWhenDropped(Some(Ok(())))),
            // Never answers; panics when the timeout drops it.
            2 => Box::pin(PanicsWhenDropped(None)),
            _ => Box::pin(std::future::ready(Ok(()))),
        }
    };
    let layer = layer(|b| {
        defaults(b)
            .policy(policy)
            .policy_timeout(Duration::from_secs(2))
    });
    let exp = wall_now() + 600;
    let Setup { socket, mut peer } =
        open(&layer, &sign(SECRET, "alice", exp, 0), Backpressure::ROOMY);
    let app = App::run(socket);
    for generation in [1, 2] {
        let id = format!("g{generation}");
        peer.renew(&sign(SECRET, "alice", exp + 60, generation), &id);
        assert_eq!(
            peer.next_json().await,
            json!({"type": "auth.renew_rejected", "error": "invalid_token",
                   "error_description": "authorization check unavailable", "id": id}),
            "generation {generation}"
        );
        assert_eq!(app.expires_at(), exp);
    }
    peer.renew(&sign(SECRET, "alice", exp + 60, 0), "ok");
    assert_eq!(
        peer.next_json().await,
        json!({"type": "auth.renewed", "exp": exp + 60, "id": "ok"})
    );
}

/// A policy whose `check` (the synchronous part, before its future) asks
/// the layer's registry about connections: it must not run under the
/// connection's lock, or a `reauthenticate`, `revoke` or `close_connection`
/// made there (or by any other thread meanwhile) waits for it, and one
/// made on the same thread deadlocks.
#[tokio::test(start_paused = true)]
async fn the_policys_check_is_not_called_under_the_connections_lock() {
    let registry: Arc<std::sync::OnceLock<crate::Connections>> = Arc::default();
    let blocked: Arc<Mutex<Vec<bool>>> = Arc::default();
    let policy = {
        let (registry, blocked) = (Arc::clone(&registry), Arc::clone(&blocked));
        move |request: PolicyRequest<Claims>| {
            if request.is_renewal() {
                let connections = registry.get().unwrap().clone();
                let (done, finished) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    // Visits every live connection (it selects none).
                    connections.reauthenticate(
                        crate::revocation::Selector::token("nobody"),
                        Duration::from_secs(1),
                    );
                    let _ = done.send(());
                });
                let waited = finished.recv_timeout(std::time::Duration::from_secs(2));
                blocked.lock().unwrap().push(waited.is_err());
            }
            std::future::ready(Ok(()))
        }
    };
    let layer = layer(|b| defaults(b).policy(policy));
    registry.set(layer.connections()).unwrap();
    let exp = wall_now() + 600;
    let Setup { socket, mut peer } =
        open(&layer, &sign(SECRET, "alice", exp, 0), Backpressure::ROOMY);
    let app = App::run(socket);
    peer.renew(&sign(SECRET, "alice", exp + 60, 0), "r1");
    assert_eq!(
        peer.next_json().await,
        json!({"type": "auth.renewed", "exp": exp + 60, "id": "r1"})
    );
    assert_eq!(
        *blocked.lock().unwrap(),
        [false],
        "the check ran while the connection's lock was held"
    );
    drop(app);
}

/// A check that passes after a re-authentication request's deadline ends
/// the connection as that request's (`NotReauthenticated`), not as a token
/// expiry: the timer may be late (busy), and the check's answer must not
/// relabel the ending.
#[tokio::test(start_paused = true)]
async fn a_check_passing_after_a_reauthentication_deadline_ends_as_not_reauthenticated() {
    let layer = layer(|b| {
        defaults(b)
            .policy(by_generation(Duration::from_secs(10), seen()))
            .policy_timeout(Duration::from_secs(60))
    });
    let exp = wall_now() + 3600;
    let Setup { socket, peer } = open(&layer, &sign(SECRET, "alice", exp, 0), Backpressure::ROOMY);
    let app = App::run(socket);
    // The timer task is starved: only the check's answer sees the deadline.
    layer.settings().timers.stall(true);
    peer.renew(&sign(SECRET, "alice", exp + 60, 0), "r");
    sleep(Duration::from_millis(100)).await;
    assert_eq!(
        layer
            .connections()
            .reauthenticate(crate::revocation::Selector::All, Duration::from_secs(2)),
        1
    );
    sleep(Duration::from_secs(11)).await;
    assert_eq!(
        app.sender.end_reason(),
        Some(crate::EndReason::NotReauthenticated)
    );
    layer.settings().timers.stall(false);
}

/// One connection's renewal check (the application's policy) blocks its
/// thread for seconds: it runs outside the connection's lock, so the timer
/// task still closes every other connection on time.
#[test]
fn a_renewal_check_that_blocks_its_thread_delays_no_other_connections_expiry() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let layer = layer(|b| {
            b.notify_before(Duration::from_secs(6))
                .leeway(Duration::ZERO)
                .policy(|request: PolicyRequest<Claims>| {
                    if request.claims().generation == 99 {
                        std::thread::sleep(Duration::from_secs(4));
                    }
                    std::future::ready(Ok(()))
                })
        });
        let now = wall_now();
        // A: far exp, but its notice is due at once (inside the window) and
        // again after its renewal.
        let Setup {
            socket: a,
            peer: a_peer,
        } = open(
            &layer,
            &sign(SECRET, "alice", now + 8, 0),
            Backpressure::ROOMY,
        );
        let _a = App::run(a);
        // B: expires in ~2 s; nobody reads or writes it.
        let Setup {
            socket: b,
            peer: mut b_peer,
        } = open(
            &layer,
            &sign(SECRET, "bob", now + 3, 0),
            Backpressure::ROOMY,
        );
        let b_deadline = deadline(&b);
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A renews with a token whose check takes 4 s; meanwhile A's timer
        // entry (its new notice, due at once) falls due.
        a_peer.renew(&sign(SECRET, "alice", now + 60, 99), "slow");
        let _ = b_peer.next().await; // B's notice
        let close = tokio::time::timeout(Duration::from_secs(10), b_peer.next())
            .await
            .unwrap();
        let late = Instant::now().saturating_duration_since(b_deadline);
        assert!(matches!(close, Message::Close(_)), "{close:?}");
        assert!(
            late < Duration::from_millis(500),
            "bob's close came {late:?} after his deadline"
        );
        drop(b);
    });
}
