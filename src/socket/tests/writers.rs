//! Many writers, slow peers and full transports: every writer is woken when
//! the transport drains, every control frame goes out as soon as there is
//! room, and expiry holds whoever is parked.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use axum::extract::ws::Message;
use futures_sink::Sink;
use tokio::time::{Instant, timeout};

use super::support::Backpressure;
use super::*;

/// Long enough for any of these tests to finish; a writer or control frame
/// left parked shows up as this timeout on the paused clock.
const HANG: Duration = Duration::from_secs(600);

fn tagged(writer: usize, n: usize) -> Message {
    Message::Text(format!("{writer}:{n}").into())
}

/// Checks per-writer order; returns the writer of an application frame.
fn check_order(next: &mut [usize], message: &Message) -> Option<usize> {
    let Message::Text(text) = message else {
        return None;
    };
    let (writer, n) = text.as_str().split_once(':')?;
    let (writer, n): (usize, usize) = (writer.parse().ok()?, n.parse().ok()?);
    assert_eq!(n, next[writer], "writer {writer} out of order");
    next[writer] += 1;
    Some(writer)
}

#[tokio::test(start_paused = true)]
async fn every_clone_of_the_sender_delivers_everything_to_a_slow_peer() {
    const WRITERS: usize = 8;
    const FRAMES: usize = 300;
    let layer = layer(defaults);
    let token = sign(SECRET, "alice", wall_now() + 3600, 0);
    let Setup { socket, mut peer } = open(&layer, &token, Backpressure::tight(4));
    let (sender, _receiver) = socket.split();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let mut sender = sender.clone();
            tokio::spawn(async move {
                for n in 0..FRAMES {
                    sender.send(tagged(writer, n)).await.unwrap();
                }
            })
        })
        .collect();
    drop(sender);
    // The peer starts reading late, then reads slowly.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut next = [0; WRITERS];
    for read in 0..WRITERS * FRAMES {
        let message = timeout(HANG, peer.next())
            .await
            .unwrap_or_else(|_| panic!("a writer stayed parked after {read} frames: {next:?}"));
        check_order(&mut next, &message).expect("only application frames");
        if read % 16 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert_eq!(next, [FRAMES; WRITERS]);
    for writer in writers {
        writer.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn parked_clones_fail_promptly_at_the_deadline_and_the_peer_gets_4401() {
    const WRITERS: usize = 6;
    let layer = layer(|b| defaults(b).notify_before(Duration::ZERO));
    let token = sign(SECRET, "alice", wall_now() + 20, 0);
    let Setup { socket, mut peer } = open(&layer, &token, Backpressure::tight(2));
    let deadline = deadline(&socket);
    let (sender, _receiver) = socket.split();
    let failures = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let mut sender = sender.clone();
            let failures = Arc::clone(&failures);
            tokio::spawn(async move {
                let mut n = 0;
                while sender.send(tagged(writer, n)).await.is_ok() {
                    n += 1;
                }
                failures.lock().unwrap().push(Instant::now());
            })
        })
        .collect();
    drop(sender);
    // Nobody reads: every clone parks on the full transport.
    tokio::time::sleep_until(deadline + Duration::from_millis(50)).await;
    for writer in writers {
        timeout(HANG, writer)
            .await
            .expect("a parked writer was never woken")
            .unwrap();
    }
    for failed_at in failures.lock().unwrap().iter() {
        assert_fired_at_or_after(*failed_at, deadline);
    }
    // The peer reads what was in flight, the notice, then the close.
    let mut next = [0; WRITERS];
    let mut notices = 0;
    loop {
        match timeout(HANG, peer.next()).await.expect("no close frame") {
            Message::Close(Some(frame)) => {
                assert_eq!(frame.code, 4401);
                break;
            }
            Message::Text(text) if text.as_str().contains("auth.expiring") => notices += 1,
            message => {
                check_order(&mut next, &message).expect("an application frame");
            }
        }
    }
    assert_eq!(notices, 1);
    assert!(
        peer.probe.late_frames().is_empty(),
        "{:?}",
        peer.probe.late_frames()
    );
}

/// Woken at `at` (to the millisecond the timer wheel rounds to).
#[track_caller]
fn assert_fired_at_or_after(when: Instant, at: Instant) {
    assert!(
        when >= at && when - at <= Duration::from_millis(1),
        "at {when:?}, expected {at:?}"
    );
}

/// A push-only handler streams through one sender while a task reads its
/// receiver; the peer stops reading before the notice is due.
async fn stream_until_closed(mut sender: AuthSender<Claims>) {
    let mut n = 0;
    while sender.send(tagged(0, n)).await.is_ok() {
        n += 1;
    }
}

fn drain_receiver(mut receiver: super::super::AuthReceiver<Claims>) {
    tokio::spawn(async move { while receiver.recv().await.is_some() {} });
}

/// Reads until a control message or the close; returns it, how many
/// application frames came before it, and when. The peer takes a
/// millisecond per 16 frames, so the paused clock moves on even while a
/// writer streams without pause.
async fn read_until_control(peer: &mut Peer, next: &mut [usize]) -> (Message, usize, Instant) {
    let mut frames = 0;
    loop {
        let message = timeout(HANG, peer.next()).await.expect("peer hung");
        if check_order(next, &message).is_none() {
            return (message, frames, Instant::now());
        }
        frames += 1;
        if frames % 16 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_notice_queued_while_the_transport_is_full_goes_out_as_soon_as_it_drains() {
    let shape = Backpressure::tight(4);
    let layer = layer(|b| {
        b.notify_before(Duration::from_secs(4))
            .leeway(Duration::ZERO)
    });
    let token = sign(SECRET, "alice", wall_now() + 8, 0);
    let Setup { socket, mut peer } = open(&layer, &token, shape);
    let exp_at = socket.receiver.half.deadline().exp_at();
    let (sender, receiver) = socket.split();
    drain_receiver(receiver);
    let writer = tokio::spawn(stream_until_closed(sender));
    let mut next = [0];
    for _ in 0..3 {
        check_order(&mut next, &peer.next().await).unwrap();
    }
    // The peer stops reading until 1.5 s after the notice was due.
    let resume = exp_at - Duration::from_secs(4) + Duration::from_millis(1500);
    tokio::time::sleep_until(resume).await;
    let resumed = Instant::now();
    let (notice, before, at) = read_until_control(&mut peer, &mut next).await;
    let Message::Text(text) = &notice else {
        panic!("expected the notice, got {notice:?}");
    };
    assert!(text.as_str().contains("auth.expiring"), "{text}");
    assert_eq!(at, resumed, "delivered the moment the peer read again");
    assert!(
        before <= shape.in_flight + shape.write_buffer,
        "{before} application frames went out ahead of the notice"
    );
    let (close, _, closed_at) = read_until_control(&mut peer, &mut next).await;
    assert!(matches!(close, Message::Close(Some(ref frame)) if frame.code == 4401));
    assert!(closed_at >= exp_at);
    writer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn renewal_answers_overtake_a_writer_that_keeps_writing() {
    let shape = Backpressure::tight(4);
    let layer = layer(|b| {
        b.notify_before(Duration::from_secs(4))
            .leeway(Duration::ZERO)
    });
    let exp = wall_now() + 8;
    let Setup { socket, mut peer } = open(&layer, &sign(SECRET, "alice", exp, 0), shape);
    let exp_at = socket.receiver.half.deadline().exp_at();
    let (sender, receiver) = socket.split();
    drain_receiver(receiver);
    let writer = tokio::spawn(stream_until_closed(sender));
    let mut next = [0];
    tokio::time::sleep_until(exp_at - Duration::from_secs(3)).await;
    let (notice, _, _) = read_until_control(&mut peer, &mut next).await;
    assert!(matches!(&notice, Message::Text(text) if text.as_str().contains("auth.expiring")));
    peer.renew(&sign(SECRET, "alice", exp + 60, 1), "r1");
    let sent = Instant::now();
    let (answer, _, at) = read_until_control(&mut peer, &mut next).await;
    let Message::Text(text) = &answer else {
        panic!("expected the renewal answer, got {answer:?}");
    };
    let answer: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
    assert_eq!(
        answer,
        json!({"type": "auth.renewed", "exp": exp + 60, "id": "r1"})
    );
    assert_eq!(
        at, sent,
        "answered without waiting for the writer or the clock"
    );
    // Past the old exp, the stream goes on.
    tokio::time::sleep_until(exp_at + Duration::from_secs(2)).await;
    for _ in 0..20 {
        check_order(&mut next, &timeout(HANG, peer.next()).await.unwrap())
            .expect("still streaming");
    }
    assert!(!writer.is_finished());
    writer.abort();
}

#[tokio::test(start_paused = true)]
async fn a_notice_goes_out_when_the_application_neither_reads_nor_writes() {
    let shape = Backpressure::tight(4);
    let layer = layer(|b| {
        b.notify_before(Duration::from_secs(4))
            .leeway(Duration::ZERO)
    });
    let token = sign(SECRET, "alice", wall_now() + 8, 0);
    let Setup {
        mut socket,
        mut peer,
    } = open(&layer, &token, shape);
    let exp_at = socket.receiver.half.deadline().exp_at();
    // Fill the transport, then hold the socket and do nothing.
    for n in 0..shape.in_flight + shape.write_buffer - 1 {
        socket.send(tagged(0, n)).await.unwrap();
    }
    let resume = exp_at - Duration::from_secs(4) + Duration::from_millis(1500);
    tokio::time::sleep_until(resume).await;
    let resumed = Instant::now();
    let mut next = [0];
    let (notice, before, at) = read_until_control(&mut peer, &mut next).await;
    assert!(matches!(&notice, Message::Text(text) if text.as_str().contains("auth.expiring")));
    assert_eq!(
        (before, at),
        (shape.in_flight + shape.write_buffer - 1, resumed)
    );
    assert_eq!(peer.expect_close().await.0, 4401);
    drop(socket);
}

#[tokio::test(start_paused = true)]
async fn far_future_tokens_do_not_stop_anyone_elses_expiry() {
    let layer = layer(defaults);
    let near_exp = wall_now() + 60;
    let Setup {
        socket: near,
        peer: mut near_peer,
    } = open(
        &layer,
        &sign(SECRET, "alice", near_exp, 0),
        Backpressure::ROOMY,
    );
    let near_deadline = deadline(&near);
    let settings = Arc::clone(layer.settings());
    let mut far = Vec::new();
    for exp in [wall_now() + 3 * 365 * 86400, 1 << 53, u64::MAX] {
        let claims = Claims {
            sub: "service".into(),
            exp,
            generation: 0,
        };
        far.push(open_authenticated(
            Authenticated {
                claims: Arc::new(claims),
                registered: Arc::new(crate::token::RegisteredClaims::for_tests(
                    None,
                    Some("service"),
                    exp,
                )),
                source: TokenSource::Header,
                protocol: None,
                settings: Arc::clone(&settings),
            },
            Backpressure::ROOMY,
        ));
    }
    assert_eq!(near_peer.next_json().await["type"], "auth.expiring");
    assert_eq!(near_peer.expect_close().await.0, 4401);
    assert_fired_at(near_deadline);
    drop(near);
    for Setup { socket, peer } in &mut far {
        peer.send_text("still here");
        assert_eq!(
            socket.recv().await.unwrap().unwrap(),
            Message::Text("still here".into())
        );
        socket.send(Message::Text("yes".into())).await.unwrap();
        assert_eq!(peer.next().await, Message::Text("yes".into()));
    }
    assert_eq!(far[2].socket.expires_at(), u64::MAX);
}

#[tokio::test(start_paused = true)]
async fn expiry_holds_both_ways_while_the_timer_task_is_starved() {
    let layer = layer(defaults);
    let Setup {
        mut socket,
        mut peer,
    } = open(
        &layer,
        &sign(SECRET, "alice", wall_now() + 60, 0),
        Backpressure::ROOMY,
    );
    let deadline = deadline(&socket);
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    layer.settings().timers.stall(true);
    tokio::time::sleep_until(deadline).await;
    // Nothing has fired: the halves themselves refuse to pass frames.
    peer.send_text("after the deadline");
    assert!(
        socket
            .send(Message::Text("after the deadline".into()))
            .await
            .is_err()
    );
    assert!(socket.recv().await.is_none());
    assert_eq!(peer.expect_close().await.0, 4401);
    assert!(peer.probe.late_frames().is_empty());
    layer.settings().timers.stall(false);
}

#[tokio::test(start_paused = true)]
async fn parked_clones_fail_promptly_when_the_peer_vanishes() {
    const WRITERS: usize = 5;
    let layer = layer(defaults);
    let token = sign(SECRET, "alice", wall_now() + 3600, 0);
    let Setup { socket, mut peer } = open(&layer, &token, Backpressure::tight(2));
    let (sender, mut receiver) = socket.split();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let mut sender = sender.clone();
            tokio::spawn(async move {
                let mut n = 0;
                while sender.send(tagged(writer, n)).await.is_ok() {
                    n += 1;
                }
                Instant::now()
            })
        })
        .collect();
    drop(sender);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let vanished = Instant::now();
    peer.vanish();
    assert!(receiver.recv().await.is_none());
    for writer in writers {
        let failed_at = timeout(HANG, writer)
            .await
            .expect("a writer stayed parked")
            .unwrap();
        assert_eq!(failed_at, vanished);
    }
    timeout(HANG, layer.connections().closed()).await.unwrap();
}

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

/// Writers that give up (timeouts, select!, cancelled tasks) while a peer
/// stops reading leave no waker behind: the parked set stays at the live
/// writers, however many attempts were abandoned.
#[tokio::test(start_paused = true)]
async fn writers_that_give_up_while_the_peer_stalls_leave_no_wakers_parked() {
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
