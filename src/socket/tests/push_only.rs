//! Push-only handlers that hold their receiver (the whole socket, or the
//! `AuthReceiver` after `split`) and never poll it: the connection reads
//! for a renewal on its own between the notice and the renewal, keeps the
//! application's frames for its next `recv` (in order, bounded, none after
//! the deadline), and its renewal reader ends with the renewal or the
//! connection.

use std::time::Duration;

use futures_util::FutureExt;
use serde_json::Value;
use tokio::time::{Instant, timeout};

use super::super::half::Half;
use super::support::Backpressure;
use super::*;
use crate::connection::EndReason;
use crate::socket::stash::STASH_FRAMES;

const HANG: Duration = Duration::from_secs(600);

/// Alice's connection on a roomy transport, with a handle on its shared
/// state to watch what is kept for the application.
fn open_alice(
    layer: &WsAuthLayer<Claims>,
    exp: u64,
) -> (AuthWebSocket<Claims>, Peer, Arc<dyn Half>) {
    let Setup { socket, peer } = open(layer, &sign(SECRET, "alice", exp, 0), Backpressure::ROOMY);
    let half = Arc::clone(&socket.receiver.half);
    (socket, peer, half)
}

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

fn text(message: &Message) -> Option<&str> {
    match message {
        Message::Text(text) => Some(text.as_str()),
        _ => None,
    }
}

fn control(message: &Message) -> Option<Value> {
    text(message)
        .filter(|text| text.starts_with(r#"{"type":"auth."#))
        .map(|text| serde_json::from_str(text).unwrap())
}

/// The peer's side of a push-only connection: reads the application's
/// `writer:n` frames (checking each writer's order), renews on every
/// notice, and returns once `renewals` renewals were accepted.
async fn renew_on_every_notice(
    peer: &mut Peer,
    half: &dyn Half,
    mut exp: u64,
    renewals: u32,
    next: &mut [usize],
) {
    let mut accepted = 0;
    while accepted < renewals {
        let message = timeout(HANG, peer.next()).await.expect("peer hung");
        if let Some(control) = control(&message) {
            match control["type"].as_str().unwrap() {
                "auth.expiring" => {
                    assert_eq!(control["exp"], exp);
                    exp += 60;
                    peer.renew(&sign(SECRET, "alice", exp, accepted + 1), "r");
                }
                "auth.renewed" => {
                    assert_eq!(control["exp"], exp);
                    assert_eq!(half.deadline().exp(), exp);
                    accepted += 1;
                    settle().await;
                    assert_eq!(half.renewal_readers(), 0, "the reader ended");
                }
                other => panic!("unexpected {other}: {control}"),
            }
            continue;
        }
        let Some((writer, n)) = text(&message).and_then(|text| text.split_once(':')) else {
            panic!("the connection ended: {message:?}");
        };
        let (writer, n): (usize, usize) = (writer.parse().unwrap(), n.parse().unwrap());
        assert_eq!(n, next[writer], "writer {writer} out of order");
        next[writer] += 1;
    }
}

/// Skips what the handler pushed until the close frame; its code.
async fn close_code(peer: &mut Peer) -> u16 {
    loop {
        match timeout(HANG, peer.next()).await.expect("no close frame") {
            Message::Close(Some(frame)) => return frame.code,
            Message::Text(_) => {}
            other => panic!("{other:?}"),
        }
    }
}

/// Sends `writer:n` every `pace` until the connection fails, through the
/// whole socket or a sender.
async fn push<S>(mut sink: S, writer: usize, pace: Duration)
where
    S: futures_sink::Sink<Message, Error = axum::Error> + Unpin,
{
    use futures_util::SinkExt;

    let mut n = 0;
    while sink
        .send(Message::Text(format!("{writer}:{n}").into()))
        .await
        .is_ok()
    {
        n += 1;
        tokio::time::sleep(pace).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_handler_that_holds_the_whole_socket_and_only_sends_gets_its_renewals_answered() {
    for shape in [Backpressure::ROOMY, Backpressure::tight(2)] {
        let layer = layer(defaults);
        let exp = wall_now() + 60;
        let Setup { socket, mut peer } = open(&layer, &sign(SECRET, "alice", exp, 0), shape);
        let half = Arc::clone(&socket.receiver.half);
        let first_deadline = deadline(&socket);
        let pusher = tokio::spawn(push(socket, 0, Duration::from_millis(250)));
        let mut next = [0];
        renew_on_every_notice(&mut peer, &*half, exp, 3, &mut next).await;
        assert!(Instant::now() > first_deadline + Duration::from_secs(60));
        assert!(next[0] > 100, "{shape:?}: the handler kept pushing");
        assert!(!pusher.is_finished(), "{shape:?}");
        assert_eq!(half.kept_frames(), 0);
        pusher.abort();
        let _ = pusher.await;
        assert_eq!(close_code(&mut peer).await, 1000, "{shape:?}");
        assert!(peer.probe.late_frames().is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn a_held_never_polled_receiver_and_cloned_senders_get_renewals_answered() {
    const WRITERS: usize = 3;
    let layer = layer(|b| {
        b.notify_before(Duration::from_secs(4))
            .leeway(Duration::ZERO)
    });
    let exp = wall_now() + 8;
    let Setup { socket, mut peer } = open(
        &layer,
        &sign(SECRET, "alice", exp, 0),
        Backpressure::tight(3),
    );
    let half = Arc::clone(&socket.receiver.half);
    let first_deadline = deadline(&socket);
    let (sender, receiver) = socket.split();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            tokio::spawn(push(
                sender.clone(),
                writer,
                Duration::from_millis(100 * (writer as u64 + 1)),
            ))
        })
        .collect();
    drop(sender);
    let mut next = [0; WRITERS];
    renew_on_every_notice(&mut peer, &*half, exp, 4, &mut next).await;
    assert!(Instant::now() > first_deadline + Duration::from_secs(60 * 3));
    assert!(next.iter().all(|&n| n > 100), "{next:?}");
    // The receiver is still held, never polled.
    assert_eq!(half.kept_frames(), 0);
    drop(receiver);
    for writer in writers {
        assert!(!writer.is_finished());
        writer.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn frames_sent_while_the_application_was_not_reading_are_all_delivered_later_in_order() {
    let layer = layer(defaults);
    let exp = wall_now() + 60;
    let (mut socket, mut peer, half) = open_alice(&layer, exp);
    peer.send_text("before the notice");
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    for n in 0..10 {
        peer.send_text(format!("a{n}"));
        peer.send(Message::Binary(vec![n; 3].into()));
    }
    peer.renew(&sign(SECRET, "alice", exp + 60, 1), "r1");
    assert_eq!(
        peer.next_json().await,
        json!({"type": "auth.renewed", "exp": exp + 60, "id": "r1"})
    );
    for n in 0..5 {
        peer.send_text(format!("b{n}"));
    }
    settle().await;
    // Kept: the frame before the notice and those up to the renewal; the
    // rest still waits in the transport.
    assert_eq!(half.kept_frames(), 21);
    assert_eq!(half.renewal_readers(), 0);
    let mut expected = vec![Message::Text("before the notice".into())];
    for n in 0..10 {
        expected.push(Message::Text(format!("a{n}").into()));
        expected.push(Message::Binary(vec![n; 3].into()));
    }
    expected.extend((0..5).map(|n| Message::Text(format!("b{n}").into())));
    for frame in &expected {
        assert_eq!(&socket.recv().await.unwrap().unwrap(), frame);
    }
    assert_eq!(half.kept_frames(), 0);
    socket
        .send(Message::Text("still open".into()))
        .await
        .unwrap();
    assert_eq!(peer.next().await, Message::Text("still open".into()));
}

#[tokio::test(start_paused = true)]
async fn frames_kept_for_the_application_are_never_handed_over_after_the_deadline() {
    for stalled in [false, true] {
        let layer = layer(defaults);
        let exp = wall_now() + 60;
        let (mut socket, mut peer, half) = open_alice(&layer, exp);
        let deadline = deadline(&socket);
        assert_eq!(peer.next_json().await["type"], "auth.expiring");
        for n in 0..5 {
            peer.send_text(format!("unread {n}"));
        }
        settle().await;
        assert_eq!(half.kept_frames(), 5);
        // The timer task may not run at the deadline: the read itself
        // refuses frames kept from before it.
        layer.settings().timers.stall(stalled);
        tokio::time::sleep_until(deadline).await;
        assert!(socket.recv().await.is_none(), "stalled timer: {stalled}");
        assert_eq!(half.kept_frames(), 0);
        assert_eq!(socket.end_reason(), Some(EndReason::Expired));
        assert_eq!(peer.expect_close().await.0, 4401);
        settle().await;
        assert_eq!(
            half.renewal_readers(),
            0,
            "the reader ended with the connection"
        );
        layer.settings().timers.stall(false);
    }
}

#[tokio::test(start_paused = true)]
async fn a_flood_fills_the_stash_to_its_bound_and_the_renewal_waits_for_the_application() {
    const FLOOD: usize = 100;
    let layer = layer(defaults);
    let exp = wall_now() + 60;
    let (mut socket, mut peer, half) = open_alice(&layer, exp);
    let first_deadline = deadline(&socket);
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    for n in 0..FLOOD {
        peer.send_text(format!("flood {n}"));
    }
    peer.renew(&sign(SECRET, "alice", exp + 60, 1), "r1");
    settle().await;
    assert_eq!(half.kept_frames(), STASH_FRAMES, "the reader stopped there");
    // Nothing more is read while the application does not read: the
    // renewal sits behind the flood.
    assert!(
        timeout(Duration::from_secs(5), peer.next()).await.is_err(),
        "the renewal was answered from behind a full stash"
    );
    assert_eq!(half.kept_frames(), STASH_FRAMES);
    assert_eq!(half.renewal_readers(), 1);
    // The application reads at last: every frame in order, the stash never
    // past its bound, and the renewal lands.
    for n in 0..FLOOD {
        assert_eq!(
            socket.recv().await.unwrap().unwrap(),
            Message::Text(format!("flood {n}").into())
        );
        assert!(half.kept_frames() <= STASH_FRAMES);
        settle().await;
        assert!(half.kept_frames() <= STASH_FRAMES);
    }
    assert_eq!(
        peer.next_json().await,
        json!({"type": "auth.renewed", "exp": exp + 60, "id": "r1"})
    );
    settle().await;
    assert_eq!(half.renewal_readers(), 0);
    tokio::time::sleep_until(first_deadline + Duration::from_secs(1)).await;
    peer.send_text("after the first deadline");
    assert_eq!(
        socket.recv().await.unwrap().unwrap(),
        Message::Text("after the first deadline".into())
    );
}

#[tokio::test(start_paused = true)]
async fn the_stash_is_bounded_by_max_message_bytes_too() {
    let layer = layer(|b| defaults(b).max_message_bytes(1000));
    let exp = wall_now() + 60;
    let (mut socket, mut peer, half) = open_alice(&layer, exp);
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    for n in 0..10u8 {
        peer.send(Message::Binary(vec![n; 300].into()));
    }
    settle().await;
    // 900 bytes kept, then the fourth frame crosses the bound.
    assert_eq!(half.kept_frames(), 4);
    for n in 0..10u8 {
        assert_eq!(
            socket.recv().await.unwrap().unwrap(),
            Message::Binary(vec![n; 300].into())
        );
        assert!(half.kept_frames() <= 4);
    }
}

#[tokio::test(start_paused = true)]
async fn the_renewal_reader_ends_when_the_connection_ends_or_the_receiver_is_dropped() {
    // The peer closes while the reader waits for its renewal: frames it
    // sent before are still handed over, then the close.
    let layer = layer(defaults);
    let exp = wall_now() + 60;
    let (mut socket, mut peer, half) = open_alice(&layer, exp);
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    settle().await;
    assert_eq!(half.renewal_readers(), 1);
    peer.send_text("last words");
    peer.send(Message::Close(None));
    settle().await;
    assert_eq!(half.renewal_readers(), 0);
    assert_eq!(
        socket.recv().await.unwrap().unwrap(),
        Message::Text("last words".into())
    );
    assert!(matches!(socket.recv().await, Some(Ok(Message::Close(_)))));
    assert!(socket.recv().await.is_none());
    drop(socket);

    // The application drops its receiver while the reader runs: the
    // reader stops, frames kept go, and the dropped receiver's reader
    // answers the renewal.
    let Setup { socket, mut peer } =
        open(&layer, &sign(SECRET, "alice", exp, 0), Backpressure::ROOMY);
    let half = Arc::clone(&socket.receiver.half);
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    peer.send_text("kept, then dropped");
    settle().await;
    assert_eq!((half.renewal_readers(), half.kept_frames()), (1, 1));
    let (sender, receiver) = socket.split();
    drop(receiver);
    settle().await;
    assert_eq!((half.renewal_readers(), half.kept_frames()), (0, 0));
    peer.renew(&sign(SECRET, "alice", exp + 60, 1), "r1");
    assert_eq!(peer.next_json().await["type"], "auth.renewed");
    drop(sender);
    assert_eq!(peer.expect_close().await.0, 1000);
    settle().await;
    assert_eq!(half.renewal_readers(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_application_parked_in_recv_reads_for_itself_and_one_that_gives_up_gets_a_reader() {
    let layer = layer(defaults);
    let exp = wall_now() + 60;
    let (mut socket, mut peer, half) = open_alice(&layer, exp);
    // Parked in recv when the notice goes out: no task.
    let parked = tokio::spawn(async move {
        let first = socket.recv().await;
        (socket, first)
    });
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    settle().await;
    assert_eq!(half.renewal_readers(), 0);
    peer.renew(&sign(SECRET, "alice", exp + 60, 1), "r1");
    assert_eq!(peer.next_json().await["type"], "auth.renewed");
    assert!(
        !parked.is_finished(),
        "the renewal is not an application frame"
    );
    // A frame during the next notice window wakes the application, which
    // may never read again: a reader takes over until the renewal.
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    peer.send_text("hello");
    let (mut socket, first) = parked.await.unwrap();
    assert_eq!(first.unwrap().unwrap(), Message::Text("hello".into()));
    settle().await;
    assert_eq!(half.renewal_readers(), 1);
    peer.renew(&sign(SECRET, "alice", exp + 120, 2), "r2");
    assert_eq!(peer.next_json().await["type"], "auth.renewed");
    settle().await;
    assert_eq!(half.renewal_readers(), 0);

    // A recv given up (a timeout) after the notice found it parked: the
    // application is no longer reading, so a reader starts.
    let notice_at = half.deadline().exp_at() - Duration::from_secs(30);
    let waiting = tokio::spawn(async move {
        let gave_up = tokio::time::timeout_at(notice_at + Duration::from_secs(1), socket.recv())
            .await
            .is_err();
        (socket, gave_up)
    });
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    settle().await;
    assert_eq!(half.renewal_readers(), 0, "parked in recv");
    let (mut socket, gave_up) = waiting.await.unwrap();
    assert!(gave_up);
    settle().await;
    assert_eq!(half.renewal_readers(), 1);
    peer.send_text("read by the reader");
    peer.renew(&sign(SECRET, "alice", exp + 180, 3), "r3");
    assert_eq!(peer.next_json().await["type"], "auth.renewed");
    settle().await;
    assert_eq!(half.renewal_readers(), 0);
    assert_eq!(
        socket.recv().await.unwrap().unwrap(),
        Message::Text("read by the reader".into())
    );
}

#[tokio::test(start_paused = true)]
async fn an_application_parked_on_the_stream_is_woken_after_the_reader_ends() {
    use futures_util::StreamExt;

    let layer = layer(defaults);
    let exp = wall_now() + 60;
    let Setup { socket, mut peer } =
        open(&layer, &sign(SECRET, "alice", exp, 0), Backpressure::ROOMY);
    let half = Arc::clone(&socket.receiver.half);
    let (_sender, mut receiver) = socket.split();
    // Parked through `Stream`, whose dropped futures the connection cannot
    // see: the notice starts a reader anyway.
    let parked = tokio::spawn(async move {
        let first = receiver.next().await;
        (receiver, first)
    });
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    settle().await;
    assert_eq!(half.renewal_readers(), 1);
    peer.renew(&sign(SECRET, "alice", exp + 60, 1), "r1");
    assert_eq!(peer.next_json().await["type"], "auth.renewed");
    settle().await;
    assert_eq!(half.renewal_readers(), 0);
    assert!(!parked.is_finished());
    // The transport may still hold the reader's fan-out waker: it wakes
    // the application too.
    peer.send_text("after the renewal");
    let (_receiver, first) = timeout(HANG, parked).await.expect("never woken").unwrap();
    assert_eq!(
        first.unwrap().unwrap(),
        Message::Text("after the renewal".into())
    );
}

#[tokio::test(start_paused = true)]
async fn a_renewal_whose_policy_check_takes_time_lands_and_the_reader_ends() {
    use crate::policy::PolicyRequest;

    let layer = layer(|b| {
        defaults(b)
            .policy(|_: PolicyRequest<Claims>| {
                Box::pin(async {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    Ok(())
                })
            })
            .policy_timeout(Duration::from_secs(10))
    });
    let exp = wall_now() + 60;
    let Setup { socket, mut peer } =
        open(&layer, &sign(SECRET, "alice", exp, 0), Backpressure::ROOMY);
    let half = Arc::clone(&socket.receiver.half);
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    peer.renew(&sign(SECRET, "alice", exp + 60, 1), "r1");
    let sent = Instant::now();
    peer.send_text("while the check runs");
    settle().await;
    assert_eq!((half.renewal_readers(), half.kept_frames()), (1, 1));
    assert_eq!(peer.next_json().await["type"], "auth.renewed");
    let waited = Instant::now() - sent;
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(2001),
        "{waited:?}"
    );
    settle().await;
    assert_eq!((half.renewal_readers(), half.kept_frames()), (0, 1));
    drop(socket);
    assert_eq!(peer.expect_close().await.0, 1000);
}

/// Two threads: an application that reads in fits and starts (timeouts of
/// random length, pauses) while the peer sends numbered frames and renews
/// all the time. With `notify_before` longer than every token, each
/// renewal is followed at once by the next notice, so renewal readers come
/// and go under the application's reads. Every frame arrives once, in
/// order, and every renewal is answered.
#[test]
fn a_reader_that_comes_and_goes_loses_and_reorders_nothing_on_two_threads() {
    const FRAMES: usize = 3000;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let layer = layer(|b| {
            b.notify_before(Duration::from_secs(7 * 86400))
                .leeway(Duration::ZERO)
                .renew_limit(100_000)
        });
        let exp = wall_now() + 3600;
        let (mut socket, mut peer, half) = open_alice(&layer, exp);
        let app = tokio::spawn(async move {
            let mut rng = crate::testing::Rng(7);
            let mut got = 0;
            while got < FRAMES {
                let wait = Duration::from_micros(rng.below(300) as u64);
                match timeout(wait, socket.recv()).await {
                    Err(_) => {}
                    Ok(Some(Ok(message))) => {
                        assert_eq!(message, Message::Text(format!("{got}").into()));
                        got += 1;
                    }
                    Ok(other) => panic!("after {got} frames: {other:?}"),
                }
                if rng.chance(10) {
                    tokio::time::sleep(Duration::from_micros(rng.below(500) as u64)).await;
                }
            }
            socket
        });
        let mut renewals = 0u64;
        let mut answered = 0u64;
        let mut readers_seen = 0;
        for n in 0..FRAMES {
            peer.send_text(format!("{n}"));
            if n % 10 == 0 {
                renewals += 1;
                peer.renew(&sign(SECRET, "alice", exp + renewals, 1), "r");
            }
            if n % 50 == 0 {
                tokio::time::sleep(Duration::from_micros(200)).await;
                readers_seen += half.renewal_readers();
            }
        }
        let socket = timeout(Duration::from_secs(60), app)
            .await
            .expect("the application hung")
            .unwrap();
        while answered < renewals {
            let message = timeout(Duration::from_secs(10), peer.next())
                .await
                .unwrap_or_else(|_| panic!("{answered} of {renewals} renewals answered"));
            let control = control(&message).expect("only control messages");
            match control["type"].as_str().unwrap() {
                "auth.renewed" => answered += 1,
                "auth.expiring" => {}
                other => panic!("{other}: {control}"),
            }
        }
        assert_eq!(half.deadline().exp(), exp + renewals);
        assert!(readers_seen > 0, "no renewal reader ever ran");
        drop(socket);
        loop {
            let message = timeout(Duration::from_secs(10), peer.next()).await.unwrap();
            if let Message::Close(Some(close)) = message {
                assert_eq!(close.code, 1000);
                peer.hang_up();
                break;
            }
        }
        timeout(Duration::from_secs(10), layer.connections().closed())
            .await
            .expect("the connection stayed registered");
        // The last reader may still be on its way out on the other thread.
        timeout(Duration::from_secs(10), async {
            while half.renewal_readers() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("a renewal reader outlived its connection");
    });
}

/// An early re-authentication request is a notice like the timer's: a
/// push-only handler's connection reads the renewal that answers it.
#[tokio::test(start_paused = true)]
async fn a_push_only_handler_answers_a_reauthentication_request() {
    let layer = layer(defaults);
    let exp = wall_now() + 600;
    let Setup {
        mut socket,
        mut peer,
    } = open(&layer, &sign(SECRET, "alice", exp, 0), Backpressure::ROOMY);
    let asked = layer
        .connections()
        .reauthenticate(crate::revocation::Selector::All, Duration::from_secs(20));
    assert_eq!(asked, 1);
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    let fresh = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "alice", "exp": exp + 60, "iat": wall_now()}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    peer.renew(&fresh, "re");
    assert_eq!(peer.next_json().await["type"], "auth.renewed");
    // Past the request's grace, still open and pushing.
    tokio::time::sleep(Duration::from_secs(30)).await;
    socket.send(Message::Text("still".into())).await.unwrap();
    assert_eq!(peer.next().await, Message::Text("still".into()));
}

/// Frames kept past an unanswered re-authentication request's deadline are
/// refused like any late frame, and the connection ends for the reason
/// the timer would have given (`NotReauthenticated`), not as expired,
/// whether the timer or the application's read gets there first.
#[tokio::test(start_paused = true)]
async fn kept_frames_refused_after_a_reauthentication_deadline_end_it_as_not_reauthenticated() {
    for stalled in [false, true] {
        let layer = layer(defaults);
        let exp = wall_now() + 600;
        let (mut socket, mut peer, half) = open_alice(&layer, exp);
        let asked = layer
            .connections()
            .reauthenticate(crate::revocation::Selector::All, Duration::from_secs(20));
        assert_eq!(asked, 1);
        assert_eq!(peer.next_json().await["type"], "auth.expiring");
        for n in 0..3 {
            peer.send_text(format!("unread {n}"));
        }
        settle().await;
        assert_eq!(half.kept_frames(), 3);
        layer.settings().timers.stall(stalled);
        tokio::time::sleep_until(deadline(&socket)).await;
        assert!(socket.recv().await.is_none(), "stalled timer: {stalled}");
        assert_eq!(
            socket.end_reason(),
            Some(EndReason::NotReauthenticated),
            "stalled timer: {stalled}"
        );
        assert_eq!(peer.expect_close().await.0, 4401);
        layer.settings().timers.stall(false);
    }
}

#[tokio::test(start_paused = true)]
async fn a_sender_learns_when_and_why_the_connection_ended_without_sending() {
    let layer = layer(defaults);
    let exp = wall_now() + 60;
    let Setup { socket, mut peer } =
        open(&layer, &sign(SECRET, "alice", exp, 0), Backpressure::ROOMY);
    let deadline = deadline(&socket);
    let (sender, receiver) = socket.split();
    drop(receiver);
    // Dropped before the end, as in a `select!` loop, and called again.
    for _ in 0..3 {
        assert!(
            timeout(Duration::from_secs(10), sender.closed())
                .await
                .is_err()
        );
    }
    // Cloned senders on another task wait too.
    let clone = sender.clone();
    let other = tokio::spawn(async move { clone.closed().await });
    // The peer ignores the notice: the deadline ends the connection.
    let reason = timeout(HANG, sender.closed()).await.expect("never ended");
    assert!(Instant::now() >= deadline);
    assert_eq!(reason, EndReason::Expired);
    assert_eq!(other.await.unwrap(), EndReason::Expired);
    assert_eq!(sender.end_reason(), Some(EndReason::Expired));
    // Once ended, it completes at once.
    assert_eq!(sender.closed().now_or_never(), Some(EndReason::Expired));
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    assert_eq!(close_code(&mut peer).await, 4401);
}

#[tokio::test(start_paused = true)]
async fn a_sender_whose_receiver_was_dropped_learns_at_once_that_the_peer_left() {
    let layer = layer(defaults);
    let exp = wall_now() + 600;
    let (socket, peer, _half) = open_alice(&layer, exp);
    let (sender, receiver) = socket.split();
    drop(receiver);
    let waiting = timeout(Duration::from_secs(1), sender.closed()).await;
    assert!(waiting.is_err(), "ended early: {waiting:?}");
    peer.send(Message::Close(None));
    // Long before the notice (570 s from now): the connection reads.
    let reason = timeout(Duration::from_secs(1), sender.closed())
        .await
        .expect("the peer's close was not seen");
    assert!(
        matches!(reason, EndReason::PeerClosed { code: 1005, .. }),
        "{reason:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_write_that_fails_ends_the_connection_for_every_half() {
    let layer = layer(defaults);
    let exp = wall_now() + 600;
    // The receiver is held and never read: only the failed write can tell.
    let (socket, peer, _half) = open_alice(&layer, exp);
    let (mut sender, _receiver) = socket.split();
    let clone = sender.clone();
    peer.break_flush();
    assert!(sender.send(Message::text("lost")).await.is_err());
    let reason = timeout(Duration::from_secs(1), clone.closed())
        .await
        .expect("a failed write did not end the connection");
    assert_eq!(reason, EndReason::ConnectionLost);
    assert!(sender.send(Message::text("after")).await.is_err());
}
