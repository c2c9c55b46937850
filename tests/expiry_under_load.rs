//! Expiry holds for every connection, end to end over real sockets,
//! whatever the others do: a token with a far-future `exp` does not switch
//! expiry off for the rest; cloned senders parked on a full socket all
//! deliver or all fail at the deadline; a notice queued behind a full
//! socket still arrives well before the close, and a renewal answering it
//! keeps the stream alive; a socket dropped outside a Tokio runtime still
//! closes normally.
//!
//! Every wait is bounded, so a bug shows up as a failed assertion with a
//! message, never as a hung test. Tokens live a few seconds; `exp` is whole
//! seconds, so the tests that time the notice and the close first align the
//! wall clock to just past a second boundary.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::ws::Message;
use axum::response::Response;
use axum::routing::any;
use axum_ws_auth::{AuthUpgrade, AuthWebSocket};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Size of every application frame the server pushes.
const FRAME: usize = 16 * 1024;

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Signed wall-clock milliseconds from `exp` (seconds) to now: negative
/// before `exp`.
fn ms_after(exp: u64) -> i64 {
    now_millis() as i64 - (exp * 1000) as i64
}

/// How long until `exp` plus `extra_ms` (zero if that has passed).
fn until(exp: u64, extra_ms: u64) -> Duration {
    Duration::from_millis((exp * 1000 + extra_ms).saturating_sub(now_millis()))
}

/// Sleeps until `offset_ms` past the next whole second of the wall clock, so
/// a token with `exp = now() + ttl` then lives `ttl` seconds minus
/// `offset_ms`.
async fn align_to_second(offset_ms: u64) {
    let into_second = now_millis() % 1000;
    tokio::time::sleep(Duration::from_millis(1000 - into_second + offset_ms)).await;
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The next frame within `within`, or why there was none.
async fn recv_within(client: &mut Client, within: Duration) -> Result<WsMessage, String> {
    match tokio::time::timeout(within, client.next()).await {
        Err(_) => Err(format!("no frame within {within:?}")),
        Ok(None) => Err("stream ended without a close frame".into()),
        Ok(Some(Err(error))) => Err(format!("websocket error: {error}")),
        Ok(Some(Ok(message))) => Ok(message),
    }
}

/// Skips other frames up to the server's close frame, within `within`;
/// returns its code and reason and the wall-clock millisecond it arrived,
/// after completing the closing handshake.
async fn close_within(client: &mut Client, within: Duration) -> Result<(u16, String, u64), String> {
    let until = tokio::time::Instant::now() + within;
    let mut skipped = 0usize;
    let closed = loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match recv_within(client, left).await {
            Ok(WsMessage::Close(Some(frame))) => {
                break (
                    frame.code.into(),
                    frame.reason.as_str().to_owned(),
                    now_millis(),
                );
            }
            Ok(WsMessage::Close(None)) => break (1005, String::new(), now_millis()),
            Ok(_) => skipped += 1,
            Err(why) => {
                return Err(format!(
                    "{why} (waiting for a close, {skipped} frames skipped)"
                ));
            }
        }
    };
    // tungstenite sends its close reply on the next read.
    let _ = tokio::time::timeout(Duration::from_secs(1), client.next()).await;
    Ok(closed)
}

/// Sends `text` and expects it back (an echo route) within 2 s.
async fn assert_echoes(client: &mut Client, text: &str, who: &str) {
    if let Err(error) = client.send(WsMessage::Text(text.into())).await {
        panic!("{who}: cannot send: {error}");
    }
    match recv_within(client, Duration::from_secs(2)).await {
        Ok(WsMessage::Text(reply)) if reply.as_str() == text => {}
        other => panic!("{who}: expected the echo {text:?}, got {other:?}"),
    }
}

fn as_json(message: &WsMessage) -> Option<Value> {
    match message {
        WsMessage::Text(text) => serde_json::from_str(text.as_str()).ok(),
        _ => None,
    }
}

/// A 16 KiB binary frame carrying its sender and sequence number.
fn tagged(sender: u32, seq: u32) -> Message {
    let mut data = vec![sender as u8; FRAME];
    data[..4].copy_from_slice(&sender.to_be_bytes());
    data[4..8].copy_from_slice(&seq.to_be_bytes());
    Message::Binary(data.into())
}

fn untag(data: &[u8]) -> (u32, u32) {
    assert_eq!(data.len(), FRAME, "frame of the wrong size");
    let sender = u32::from_be_bytes(data[..4].try_into().unwrap());
    let seq = u32::from_be_bytes(data[4..8].try_into().unwrap());
    (sender, seq)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

// 1. One long-lived token switches expiry off for everyone.

#[tokio::test]
async fn far_future_exp_does_not_switch_expiry_off_for_other_connections() {
    let addr = serve(
        builder()
            .leeway(Duration::ZERO)
            .notify_before(Duration::from_secs(2)),
    )
    .await;
    align_to_second(50).await;
    let a_claims = claims("alice", 4);
    let a_exp = a_claims["exp"].as_u64().unwrap();
    let mut a = connect_bearer(addr, &sign(&a_claims)).await;

    // B: validly signed tokens whose exp is far ahead, one after another,
    // all while A is idle and before A's notice is due.
    let mut others = Vec::new();
    for (label, exp) in [
        ("exp three years ahead", json!(now() + 3 * 365 * 86400)),
        ("exp = 2^53", json!(1u64 << 53)),
        ("exp = u64::MAX", json!(u64::MAX)),
    ] {
        let mut b_claims = claims("bob", 0);
        b_claims["exp"] = exp;
        let mut b = match connect(addr, &[("authorization", &bearer(&sign(&b_claims)))]).await {
            Ok(connected) => connected.client,
            Err(refused) => panic!("B with {label}: handshake refused: {refused:?}"),
        };
        assert_echoes(&mut b, "hello", &format!("B with {label}")).await;
        others.push((label, b));
    }
    let b_connected = ms_after(a_exp);
    assert!(
        b_connected < -2200,
        "setup too slow: A's notice is already due ({b_connected} ms after exp)"
    );

    // A is still timed: its notice 2 s ahead of exp, then 4401 at exp.
    let notice = recv_within(&mut a, until(a_exp, 500)).await;
    let notice = match notice.as_ref().ok().and_then(as_json) {
        Some(notice) if notice["type"] == "auth.expiring" => notice,
        _ => panic!(
            "A (exp {} ms after the last B connected) got no auth.expiring by exp + 0.5 s: \
             {notice:?}",
            -b_connected
        ),
    };
    assert_eq!(notice["exp"], a_exp, "A's notice: {notice}");
    match close_within(&mut a, until(a_exp, 1500)).await {
        Ok((code, reason, at)) => {
            assert_eq!(
                (code, reason.as_str()),
                (4401, "token expired"),
                "A's close"
            );
            let late = at as i64 - (a_exp * 1000) as i64;
            assert!(
                (-50..=1500).contains(&late),
                "A closed {late} ms after its exp"
            );
        }
        Err(why) => panic!("A was not closed by exp + 1.5 s: {why}"),
    }

    // The long-lived connections are untouched by A's expiry.
    for (label, mut b) in others {
        assert_echoes(
            &mut b,
            "still here",
            &format!("B with {label}, after A closed"),
        )
        .await;
    }
}

// 2. Fan-out: cloned senders on one connection.

/// What one sending task got, reported back to the test.
#[derive(Debug)]
struct SenderReport {
    sender: u32,
    sent: u32,
    error: Option<String>,
    /// Wall-clock millisecond the task finished (or failed).
    at: u64,
}

/// The rooms/broadcast pattern: the handler splits the socket, gives a
/// clone of the sender to each of `senders` tasks that send `frames` tagged
/// frames each (or until a send fails), and keeps reading itself.
fn fan_out_app(senders: u32, frames: u32, reports: mpsc::UnboundedSender<SenderReport>) -> Router {
    let handler = move |upgrade: AuthUpgrade<Claims>| {
        let reports = reports.clone();
        async move { upgrade.on_upgrade(move |socket| fan_out(socket, senders, frames, reports)) }
    };
    Router::new().route("/ws", any(handler)).layer(
        builder()
            .leeway(Duration::ZERO)
            .close_timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    )
}

async fn fan_out(
    socket: AuthWebSocket<Claims>,
    senders: u32,
    frames: u32,
    reports: mpsc::UnboundedSender<SenderReport>,
) {
    let (sender, mut receiver) = socket.split();
    for id in 0..senders {
        let mut sender = sender.clone();
        let reports = reports.clone();
        tokio::spawn(async move {
            let mut sent = 0;
            let mut error = None;
            for seq in 0..frames {
                if let Err(e) = sender.send(tagged(id, seq)).await {
                    error = Some(e.to_string());
                    break;
                }
                sent += 1;
            }
            let _ = reports.send(SenderReport {
                sender: id,
                sent,
                error,
                at: now_millis(),
            });
        });
    }
    drop(sender);
    while let Some(Ok(_)) = receiver.recv().await {}
}

async fn every_clone_delivers_every_frame(senders: u32, frames: u32) {
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let addr = serve_router(fan_out_app(senders, frames, reports_tx)).await;
    let mut client = connect_bearer(addr, &token("alice", 60)).await;
    // The client starts reading late: every clone finds the socket full.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let total = u64::from(senders) * u64::from(frames);
    let mut next = vec![0u32; senders as usize];
    let mut received = 0u64;
    while received < total {
        let message = recv_within(&mut client, Duration::from_secs(3)).await;
        let data = match message {
            Ok(WsMessage::Binary(data)) => data,
            other => {
                let mut finished = Vec::new();
                while let Ok(report) = reports.try_recv() {
                    finished.push(report);
                }
                panic!(
                    "fan-out stalled after {received} of {total} frames: {other:?}; \
                     frames received per sender {next:?} (of {frames} each); \
                     senders that finished: {finished:?}"
                );
            }
        };
        let (sender, seq) = untag(&data);
        let expected = next
            .get_mut(sender as usize)
            .unwrap_or_else(|| panic!("frame from unknown sender {sender}"));
        assert_eq!(seq, *expected, "sender {sender}'s frames out of order");
        *expected += 1;
        received += 1;
    }
    assert!(next.iter().all(|&n| n == frames), "per sender {next:?}");
    for _ in 0..senders {
        let report = tokio::time::timeout(Duration::from_secs(2), reports.recv())
            .await
            .expect("a sender did not report within 2 s of its last frame")
            .unwrap();
        assert_eq!(
            (report.sent, report.error.as_deref()),
            (frames, None),
            "{report:?}"
        );
    }
}

#[tokio::test]
async fn fan_out_two_cloned_senders_deliver_every_frame() {
    every_clone_delivers_every_frame(2, 1000).await;
}

#[tokio::test]
async fn fan_out_eight_cloned_senders_deliver_every_frame() {
    every_clone_delivers_every_frame(8, 300).await;
}

#[tokio::test]
async fn fan_out_parked_clones_all_fail_promptly_at_expiry() {
    const SENDERS: u32 = 4;
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let addr = serve_router(fan_out_app(SENDERS, u32::MAX, reports_tx)).await;
    align_to_second(50).await;
    let token_claims = claims("alice", 3);
    let exp = token_claims["exp"].as_u64().unwrap();
    // The client never reads until the checks below: every clone parks.
    let mut client = connect_bearer(addr, &sign(&token_claims)).await;

    let mut got = Vec::new();
    while got.len() < SENDERS as usize {
        match tokio::time::timeout(until(exp, 1000), reports.recv()).await {
            Ok(Some(report)) => got.push(report),
            _ => panic!(
                "by exp + 1 s only {} of {SENDERS} parked clones returned from send: {got:?}",
                got.len()
            ),
        }
    }
    for report in &got {
        assert!(
            report.error.is_some(),
            "a clone finished without an error: {report:?}"
        );
        let after = report.at as i64 - (exp * 1000) as i64;
        assert!(
            (-50..=1000).contains(&after),
            "clone {} failed {after} ms after exp: {report:?}",
            report.sender
        );
    }

    // Reading at last: the buffered frames, then 4401.
    match close_within(&mut client, Duration::from_secs(8)).await {
        Ok((code, reason, _)) => {
            assert_eq!((code, reason.as_str()), (4401, "token expired"))
        }
        Err(why) => panic!("no 4401 once the client read: {why}"),
    }
}

// 3. A notice queued while the socket is full.

/// Push-only: streams 16 KiB frames through the sender until it fails; a
/// spawned task reads the receiver (answering renewals), discarding frames.
async fn stream(upgrade: AuthUpgrade<Claims>) -> Response {
    upgrade.on_upgrade(|socket| async move {
        let (mut sender, mut receiver) = socket.split();
        tokio::spawn(async move { while let Some(Ok(_)) = receiver.recv().await {} });
        let mut seq = 0;
        while sender.send(tagged(0, seq)).await.is_ok() {
            seq += 1;
        }
    })
}

const NOTIFY_BEFORE: u64 = 3;

/// A streaming connection whose token expires about 4.95 s from now, with
/// its notice due 3 s before that; the client has read three frames, then
/// stopped reading until 1 s after the notice was due. Returns the client
/// and the token's `exp`.
async fn stalled_stream() -> (Client, u64) {
    let addr = serve_router(
        Router::new().route("/ws", any(stream)).layer(
            builder()
                .leeway(Duration::ZERO)
                .notify_before(Duration::from_secs(NOTIFY_BEFORE))
                .build()
                .unwrap(),
        ),
    )
    .await;
    align_to_second(50).await;
    let token_claims = claims("alice", 5);
    let exp = token_claims["exp"].as_u64().unwrap();
    let mut client = connect_bearer(addr, &sign(&token_claims)).await;
    for n in 0..3 {
        match recv_within(&mut client, Duration::from_secs(2)).await {
            Ok(WsMessage::Binary(_)) => {}
            other => panic!("frame {n} of the stream: {other:?}"),
        }
    }
    let notice_due = (exp - NOTIFY_BEFORE) * 1000;
    tokio::time::sleep(Duration::from_millis(
        (notice_due + 1000).saturating_sub(now_millis()),
    ))
    .await;
    (client, exp)
}

#[tokio::test]
async fn notice_queued_on_a_full_socket_arrives_well_before_the_close() {
    let (mut client, exp) = stalled_stream().await;
    let mut notice_at = None;
    let mut frames = 0u64;
    let (code, close_at) = loop {
        let message = recv_within(&mut client, until(exp, 3000)).await;
        match message {
            Ok(WsMessage::Binary(_)) => frames += 1,
            Ok(WsMessage::Close(frame)) => {
                break (frame.map(|f| u16::from(f.code)), now_millis());
            }
            Ok(ref text @ WsMessage::Text(_)) => match as_json(text) {
                Some(notice) if notice["type"] == "auth.expiring" && notice_at.is_none() => {
                    assert_eq!(notice["exp"], exp, "{notice}");
                    notice_at = Some(now_millis());
                }
                _ => panic!("unexpected text frame {text:?}"),
            },
            other => panic!(
                "no close by exp + 3 s: {other:?} (notice at {:?} ms after exp, {frames} frames read)",
                notice_at.map(|at| at as i64 - (exp * 1000) as i64)
            ),
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), client.next()).await;
    let relative = |at: u64| at as i64 - (exp * 1000) as i64;
    let Some(notice_at) = notice_at else {
        panic!(
            "closed ({code:?}) {} ms after exp with no auth.expiring at all ({frames} frames read)",
            relative(close_at)
        );
    };
    assert_eq!(code, Some(4401));
    assert!(
        close_at - notice_at > 1000,
        "auth.expiring (due {} ms before exp) arrived {} ms after exp, only {} ms before \
         the 4401 close: too late to renew ({frames} frames read after resuming)",
        NOTIFY_BEFORE * 1000,
        relative(notice_at),
        close_at - notice_at
    );
}

#[tokio::test]
async fn renewal_answering_a_notice_queued_on_a_full_socket_keeps_the_stream_alive() {
    let (mut client, exp) = stalled_stream().await;
    // Read (discarding frames) up to the notice.
    loop {
        let message = recv_within(&mut client, until(exp, 1000)).await;
        match message {
            Ok(WsMessage::Binary(_)) => {}
            Ok(ref text @ WsMessage::Text(_))
                if as_json(text).is_some_and(|notice| notice["type"] == "auth.expiring") =>
            {
                break;
            }
            other => panic!(
                "no auth.expiring while the stream drained, {} ms after exp: {other:?}",
                ms_after(exp)
            ),
        }
    }
    let noticed_after_exp = ms_after(exp);

    let renewal = claims("alice", 60);
    let renew = json!({"type": "auth.renew", "token": sign(&renewal), "id": "r"});
    client
        .send(WsMessage::Text(renew.to_string().into()))
        .await
        .unwrap_or_else(|e| panic!("cannot send the renewal: {e}"));
    let sent = Instant::now();
    loop {
        let left = Duration::from_secs(1).saturating_sub(sent.elapsed());
        match recv_within(&mut client, left).await {
            Ok(WsMessage::Binary(_)) => {}
            Ok(ref text @ WsMessage::Text(_)) if as_json(text).is_some() => {
                assert_eq!(
                    as_json(text).unwrap(),
                    json!({"type": "auth.renewed", "exp": renewal["exp"], "id": "r"})
                );
                break;
            }
            other => panic!(
                "no auth.renewed within 1 s of the renewal (sent after a notice that \
                 arrived {noticed_after_exp} ms after exp): {other:?}"
            ),
        }
    }

    // The stream goes on past the old exp.
    let mut after_old_exp = 0u64;
    while ms_after(exp) < 1500 {
        match recv_within(&mut client, Duration::from_secs(1)).await {
            Ok(WsMessage::Binary(_)) => {
                if ms_after(exp) > 0 {
                    after_old_exp += 1;
                }
            }
            other => panic!(
                "renewed connection ended or stalled {} ms after the old exp: {other:?}",
                ms_after(exp)
            ),
        }
    }
    assert!(after_old_exp > 0, "no frames after the old exp");
}

// 4. The last half dropped outside a Tokio runtime.

async fn drop_in_plain_thread(
    upgrade: AuthUpgrade<Claims>,
    split: bool,
    report: mpsc::UnboundedSender<Result<(), String>>,
) -> Response {
    upgrade.on_upgrade(move |socket| async move {
        // A plain OS thread: no Tokio runtime there.
        let thread = if split {
            let (sender, receiver) = socket.split();
            std::thread::spawn(move || {
                drop(sender);
                drop(receiver);
            })
        } else {
            std::thread::spawn(move || drop(socket))
        };
        let joined = tokio::task::spawn_blocking(move || thread.join())
            .await
            .unwrap();
        let _ = report.send(joined.map_err(|payload| panic_message(&*payload)));
    })
}

async fn dropping_outside_a_runtime(split: bool) {
    let (report_tx, mut reports) = mpsc::unbounded_channel();
    let handler = move |upgrade: AuthUpgrade<Claims>| {
        let report = report_tx.clone();
        async move { drop_in_plain_thread(upgrade, split, report).await }
    };
    let addr = serve_router(
        Router::new()
            .route("/drop", any(handler))
            .route("/ws", any(echo))
            .layer(builder().build().unwrap()),
    )
    .await;
    let auth = bearer(&token("alice", 600));
    let mut client =
        match connect_request(request(addr, "/drop", &[("authorization", &auth)])).await {
            Ok(connected) => connected.client,
            Err(refused) => panic!("refused: {refused:?}"),
        };
    let dropped = tokio::time::timeout(Duration::from_secs(5), reports.recv())
        .await
        .expect("the dropping thread did not finish within 5 s")
        .unwrap();
    let closed = close_within(&mut client, Duration::from_secs(5)).await;
    if let Err(message) = dropped {
        panic!(
            "dropping in a thread without a runtime panicked: {message:?}; the client saw {closed:?}"
        );
    }
    match closed {
        Ok((code, _, _)) => assert_eq!(code, 1000, "close code"),
        Err(why) => panic!("no close frame: {why}"),
    }
    let mut second = connect_bearer(addr, &token("bob", 600)).await;
    assert_echoes(&mut second, "next", "a second connection").await;
}

#[tokio::test]
async fn dropping_the_socket_outside_a_runtime_closes_normally() {
    dropping_outside_a_runtime(false).await;
}

#[tokio::test]
async fn dropping_both_halves_outside_a_runtime_closes_normally() {
    dropping_outside_a_runtime(true).await;
}
