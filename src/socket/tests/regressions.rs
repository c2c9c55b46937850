//! Reproductions from the adversarial review of the socket redesign.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use axum::extract::ws::Message;
use futures_sink::Sink;
use tokio::time::{Instant, timeout};

use super::support::Backpressure;
use super::*;

/// A frame the transport accepted before the deadline is reported sent
/// and reaches the peer ahead of the 4401; none is accepted after it.
#[tokio::test(start_paused = true)]
async fn a_frame_accepted_before_the_deadline_is_reported_sent_and_precedes_the_close() {
    let layer = layer(|b| b.notify_before(Duration::ZERO).leeway(Duration::ZERO));
    let token = sign(SECRET, "alice", wall_now() + 5, 0);
    let Setup { socket, mut peer } = open(&layer, &token, Backpressure::tight(1));
    let deadline = deadline(&socket);
    let (mut sender, _receiver) = socket.split();
    sender.send(Message::Text("first".into())).await.unwrap();
    // The wire is full (the peer does not read): this frame is accepted by
    // the transport and its flush waits until the deadline.
    let accepted = sender.send(Message::Text("accepted".into())).await;
    assert!(Instant::now() >= deadline);
    assert!(accepted.is_ok(), "the frame was handed over: {accepted:?}");
    assert!(sender.send(Message::Text("late".into())).await.is_err());
    // The peer reads after the deadline.
    let mut application = Vec::new();
    loop {
        match timeout(Duration::from_secs(30), peer.next()).await.unwrap() {
            Message::Close(Some(frame)) => {
                assert_eq!(frame.code, 4401);
                break;
            }
            Message::Text(text) if text.as_str().contains("auth.") => {}
            other => application.push(other),
        }
    }
    assert_eq!(
        application,
        [
            Message::Text("first".into()),
            Message::Text("accepted".into())
        ]
    );
    assert!(peer.probe.late_frames().is_empty());
}

struct Flag(AtomicBool);
impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Writers that give up (timeouts, select!, cancelled tasks) stay in
/// `Writers.parked` until the transport drains: a peer that stops reading
/// makes it grow by one waker per attempt until the deadline.
#[tokio::test(start_paused = true)]
async fn abandoned_writers_accumulate_while_the_peer_stalls() {
    let layer = layer(defaults);
    let token = sign(SECRET, "alice", wall_now() + 3600, 0);
    let Setup {
        socket,
        peer: _peer,
    } = open(&layer, &token, Backpressure::tight(1));
    let half = Arc::clone(&socket.receiver.half);
    let (mut sender, _receiver) = socket.split();
    sender
        .send(Message::Text("fills the wire".into()))
        .await
        .unwrap();
    // One more frame: accepted, flush pending.
    let _ = timeout(
        Duration::from_millis(1),
        sender.send(Message::Text("x".into())),
    )
    .await;
    for _ in 0..100_000 {
        // Each attempt stands for a different short-lived task.
        let waker = Waker::from(Arc::new(Flag(AtomicBool::new(false))));
        let _ = Pin::new(&mut sender).poll_ready(&mut Context::from_waker(&waker));
    }
    assert!(
        half.parked_writers() <= 2,
        "{} wakers parked for abandoned attempts",
        half.parked_writers()
    );
}

/// One connection's renewal check (the application's policy) blocks its
/// thread for seconds: it runs outside the connection's lock, so the timer
/// task still closes every other connection on time.
#[test]
fn a_slow_renewal_check_on_one_connection_delays_everyone_elses_expiry() {
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
        let close = timeout(Duration::from_secs(10), b_peer.next())
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

/// `Shared::start` registers the connection before it stores the guard; a
/// registration during shutdown starts the close at once, and if that close
/// finishes first, the guard stored afterwards is never released while the
/// application holds the socket: `Connections::closed()` hangs.
#[test]
fn a_connection_opened_during_shutdown_can_stay_registered() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let layer = layer(defaults);
    layer.connections().shutdown();
    let token = sign(SECRET, "alice", wall_now() + 3600, 0);
    let settings = Arc::clone(layer.settings());
    let valid = settings.check_token(&token).unwrap();
    let mut held = Vec::new();
    runtime.block_on(async {
        for _ in 0..3000 {
            let (transport, mut peer) = support::pipe(Backpressure::ROOMY);
            peer.vanish();
            let socket = spawn(
                transport,
                crate::upgrade::Authenticated {
                    claims: Arc::new(valid.claims.clone()),
                    registered: Arc::new(valid.registered.clone()),
                    source: crate::token::TokenSource::Header,
                    protocol: None,
                    settings: Arc::clone(&settings),
                },
            );
            held.push((socket, peer));
        }
        let closed = timeout(Duration::from_secs(10), layer.connections().closed()).await;
        assert!(
            closed.is_ok(),
            "{} connections still registered although every close finished",
            layer.connections().count()
        );
    });
}

/// A valid JSON object with `"type":"auth.renew"` is application data once
/// another member nests deeper than serde_json's recursion limit (128):
/// the frame, token included, is handed to the application.
#[test]
fn a_deeply_nested_member_turns_a_control_message_into_application_data() {
    let depth = 130;
    let text = format!(
        r#"{{"type":"auth.renew","token":"secret.jwt.here","pad":{}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert!(
        crate::protocol::is_control_message(&text),
        "a control message by the contract's definition is classified as application data"
    );
}
