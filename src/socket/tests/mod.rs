//! Timer and control-message behaviour of the driver, on tokio's paused
//! clock with an in-memory transport, so every deadline is checked to the
//! millisecond without waiting for it.

mod identity;
mod jitter;
mod lateness;
mod lifecycle;
mod policy;
mod property;
mod push_only;
mod reauth;
mod support;
mod writers;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Message;
use jsonwebtoken::{EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{AuthSender, AuthWebSocket, spawn};
use crate::policy::{PolicyDenial, PolicyRequest};
use crate::token::TokenSource;
use crate::upgrade::Authenticated;
use crate::{JwtValidator, WsAuthLayer, WsAuthLayerBuilder};
use support::{Backpressure, Peer, pipe};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const OTHER_SECRET: &[u8] = b"fedcba9876543210fedcba9876543210";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: String,
    exp: u64,
    #[serde(default)]
    generation: u32,
}

fn wall_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(secret: &[u8], sub: &str, exp: u64, generation: u32) -> String {
    let claims = Claims {
        sub: sub.into(),
        exp,
        generation,
    };
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

struct Setup {
    socket: AuthWebSocket<Claims>,
    peer: Peer,
}

fn layer(
    configure: impl FnOnce(WsAuthLayerBuilder<Claims>) -> WsAuthLayerBuilder<Claims>,
) -> WsAuthLayer<Claims> {
    let builder = WsAuthLayer::<Claims>::builder(JwtValidator::hs256(SECRET).unwrap());
    configure(builder).build().unwrap()
}

/// A connection of `layer` opened with `token`, over a transport shaped
/// like `shape`.
fn open(layer: &WsAuthLayer<Claims>, token: &str, shape: Backpressure) -> Setup {
    let settings = Arc::clone(layer.settings());
    let valid = settings.check_token(token).expect("test token is valid");
    open_authenticated(
        Authenticated {
            claims: Arc::new(valid.claims),
            registered: Arc::new(valid.registered),
            source: TokenSource::Header,
            protocol: None,
            settings,
        },
        shape,
    )
}

fn open_authenticated(authenticated: Authenticated<Claims>, shape: Backpressure) -> Setup {
    let (transport, peer) = pipe(shape);
    let socket = spawn(transport, authenticated);
    let half: Arc<dyn super::half::Half> = Arc::clone(&socket.receiver.half);
    peer.probe.watch(Arc::downgrade(&half));
    Setup { socket, peer }
}

fn start_with(
    configure: impl FnOnce(WsAuthLayerBuilder<Claims>) -> WsAuthLayerBuilder<Claims>,
    token: &str,
) -> Setup {
    open(&layer(configure), token, Backpressure::ROOMY)
}

/// Notice 30 s before exp, leeway 5 s.
fn defaults(builder: WsAuthLayerBuilder<Claims>) -> WsAuthLayerBuilder<Claims> {
    builder
        .notify_before(Duration::from_secs(30))
        .leeway(Duration::from_secs(5))
}

/// Tokio's timer wheel has millisecond slots: a timer fires at its instant
/// rounded up to the next millisecond, never before it.
#[track_caller]
fn assert_fired_at(expected: Instant) {
    let now = Instant::now();
    assert!(
        now >= expected && now - expected < Duration::from_millis(1),
        "fired at {now:?}, expected {expected:?}"
    );
}

/// `expires_in` as the contract defines it: whole seconds left, rounded down.
fn expires_in_now(exp_at: Instant) -> u64 {
    exp_at.saturating_duration_since(Instant::now()).as_secs()
}

fn deadline(socket: &AuthWebSocket<Claims>) -> Instant {
    socket.receiver.half.deadline().deadline()
}

/// An application that keeps reading (as applications must: control
/// messages are answered as frames are read) and hands its frames over.
struct App {
    sender: AuthSender<Claims>,
    frames: mpsc::UnboundedReceiver<Message>,
    claims: tokio::sync::watch::Receiver<Arc<Claims>>,
}

impl App {
    fn run(socket: AuthWebSocket<Claims>) -> Self {
        let claims = socket.watch_claims();
        let (sender, mut receiver) = socket.split();
        let (tx, frames) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(message)) = receiver.recv().await {
                if tx.send(message).is_err() {
                    break;
                }
            }
        });
        Self {
            sender,
            frames,
            claims,
        }
    }

    fn deadline(&self) -> Instant {
        self.sender.half.deadline().deadline()
    }

    fn expires_at(&self) -> u64 {
        self.sender.half.deadline().exp()
    }
}

#[tokio::test(start_paused = true)]
async fn notice_comes_notify_before_ahead_of_exp_and_close_at_exp_plus_leeway() {
    let exp = wall_now() + 120;
    let Setup { socket, mut peer } = start_with(defaults, &sign(SECRET, "alice", exp, 0));
    let deadline = deadline(&socket);
    let exp_at = deadline - Duration::from_secs(5);

    let notice = peer.next_json().await;
    assert_fired_at(exp_at - Duration::from_secs(30));
    let expires_in = expires_in_now(exp_at);
    assert_eq!(
        expires_in, 29,
        "30 s minus the sub-millisecond timer slack, rounded down"
    );
    assert_eq!(
        notice,
        json!({"type": "auth.expiring", "exp": exp, "expires_in": expires_in})
    );

    // The application never reads, yet the close comes exactly on time.
    let (code, reason) = peer.expect_close().await;
    assert_fired_at(deadline);
    assert_eq!((code, reason.as_str()), (4401, "token expired"));
    drop(socket);
}

/// A connection sends a control frame or two per token; the queue they
/// pass through keeps no buffer once they are out.
#[tokio::test(start_paused = true)]
async fn the_control_queue_gives_its_buffer_back_once_sent() {
    let exp = wall_now() + 120;
    let Setup { socket, mut peer } = start_with(defaults, &sign(SECRET, "alice", exp, 0));
    let shared = Arc::clone(&socket.receiver.shared);
    let outbox = || shared.lock().outbox.capacity();
    assert_eq!(outbox(), 0);
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    assert_eq!(outbox(), 0, "after the notice");
    let _app = App::run(socket);
    peer.renew(&sign(SECRET, "alice", exp + 60, 1), "r");
    assert_eq!(peer.next_json().await["type"], "auth.renewed");
    assert_eq!(outbox(), 0, "after the renewal's answer");
}

#[tokio::test(start_paused = true)]
async fn notice_is_immediate_inside_the_window() {
    let exp = wall_now() + 10;
    let Setup {
        socket: _socket,
        mut peer,
    } = start_with(defaults, &sign(SECRET, "alice", exp, 0));
    let start = Instant::now();
    let exp_at = deadline(&_socket) - Duration::from_secs(5);
    let notice = peer.next_json().await;
    assert_fired_at(start);
    assert_eq!(
        notice,
        json!({"type": "auth.expiring", "exp": exp, "expires_in": expires_in_now(exp_at)})
    );
}

#[tokio::test(start_paused = true)]
async fn no_frame_is_delivered_after_the_deadline_even_if_queued_before() {
    let exp = wall_now() + 60;
    let Setup {
        mut socket,
        mut peer,
    } = start_with(
        |b| defaults(b).notify_before(Duration::ZERO),
        &sign(SECRET, "alice", exp, 0),
    );
    let deadline = deadline(&socket);
    tokio::time::sleep_until(deadline - Duration::from_millis(1)).await;
    peer.send_text("just in time");
    assert_eq!(
        socket.recv().await.unwrap().unwrap(),
        Message::Text("just in time".into())
    );

    peer.send_text("queued before the deadline, read after it");
    tokio::task::yield_now().await;
    tokio::time::sleep_until(deadline).await;
    assert!(socket.recv().await.is_none());
    assert!(socket.send(Message::Text("too late".into())).await.is_err());
    // The notice (notify_before 0) comes at exp, then the close.
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    assert_eq!(peer.expect_close().await.0, 4401);
}

#[tokio::test(start_paused = true)]
async fn accepted_renewal_replaces_claims_and_rearms_both_timers() {
    let exp = wall_now() + 60;
    let Setup { socket, mut peer } = start_with(defaults, &sign(SECRET, "alice", exp, 0));
    let mut app = App::run(socket);
    assert_eq!(peer.next_json().await["type"], "auth.expiring");

    let new_exp = exp + 600;
    peer.renew(&sign(SECRET, "alice", new_exp, 1), "r1");
    assert_eq!(
        peer.next_json().await,
        json!({"type": "auth.renewed", "exp": new_exp, "id": "r1"})
    );
    app.claims.changed().await.unwrap();
    assert_eq!(app.claims.borrow().generation, 1);
    assert_eq!(app.expires_at(), new_exp);

    let renewed_deadline = app.deadline();
    let notice = peer.next_json().await;
    let new_exp_at = renewed_deadline - Duration::from_secs(5);
    assert_fired_at(new_exp_at - Duration::from_secs(30));
    assert_eq!(
        notice,
        json!({"type": "auth.expiring", "exp": new_exp, "expires_in": expires_in_now(new_exp_at)})
    );
    assert_eq!(peer.expect_close().await.0, 4401);
    assert_fired_at(renewed_deadline);
}

#[tokio::test(start_paused = true)]
async fn rejected_renewals_change_nothing() {
    let exp = wall_now() + 300;
    let Setup { socket, mut peer } = start_with(
        |b| {
            defaults(b).policy(|request: PolicyRequest<Claims>| {
                std::future::ready(if request.claims().generation == 99 {
                    Err(PolicyDenial::Forbidden)
                } else {
                    Ok(())
                })
            })
        },
        &sign(SECRET, "alice", exp, 0),
    );
    let mut app = App::run(socket);
    let before = app.deadline();
    let cases = [
        (
            sign(OTHER_SECRET, "alice", exp + 60, 1),
            "invalid_token",
            "signature invalid",
        ),
        (
            sign(SECRET, "alice", exp, 1),
            "invalid_token",
            "token not newer than the current one",
        ),
        (
            sign(SECRET, "alice", wall_now() - 60, 1),
            "invalid_token",
            "token expired",
        ),
        ("garbage".to_owned(), "invalid_token", "malformed token"),
        (
            sign(SECRET, "alice", exp + 60, 99),
            "insufficient_scope",
            "insufficient scope",
        ),
    ];
    for (n, (token, error, description)) in cases.iter().enumerate() {
        let id = format!("r{n}");
        peer.renew(token, &id);
        let answer = peer.next_json().await;
        assert_eq!(
            answer,
            json!({"type": "auth.renew_rejected", "error": error, "error_description": description, "id": id})
        );
    }
    assert_eq!(app.deadline(), before);
    assert_eq!(app.claims.borrow().generation, 0);
    peer.send_text("still alive");
    assert_eq!(
        app.frames.recv().await.unwrap(),
        Message::Text("still alive".into())
    );
}

#[tokio::test(start_paused = true)]
async fn renewal_for_another_subject_closes_with_4403() {
    let exp = wall_now() + 300;
    let Setup { socket, mut peer } = start_with(defaults, &sign(SECRET, "alice", exp, 0));
    let _app = App::run(socket);
    peer.renew(&sign(SECRET, "mallory", exp + 60, 1), "r");
    assert_eq!(peer.expect_close().await, (4403, "forbidden".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn renewal_rate_limit_closes_with_4429() {
    let exp = wall_now() + 3600;
    let Setup { socket, mut peer } = start_with(
        |b| defaults(b).renew_limit(3),
        &sign(SECRET, "alice", exp, 0),
    );
    let _app = App::run(socket);
    // Three attempts, then wait out the window: allowed.
    for n in 0..3 {
        peer.renew(&sign(SECRET, "alice", exp + 10 + n, 1), "a");
        assert_eq!(peer.next_json().await["type"], "auth.renewed");
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    for n in 0..3 {
        peer.renew(&sign(SECRET, "alice", exp + 20 + n, 1), "b");
        assert_eq!(peer.next_json().await["type"], "auth.renewed");
    }
    // A fourth inside the same 60 s closes, even though it is a valid token.
    tokio::time::sleep(Duration::from_secs(59)).await;
    peer.renew(&sign(SECRET, "alice", exp + 30, 1), "c");
    assert_eq!(
        peer.expect_close().await,
        (4429, "too many renewals".to_owned())
    );
}

#[tokio::test(start_paused = true)]
async fn invalid_control_messages_are_answered_then_closed_with_4400() {
    let exp = wall_now() + 3600;
    let Setup { socket, mut peer } = start_with(
        |b| defaults(b).invalid_control_limit(2),
        &sign(SECRET, "alice", exp, 0),
    );
    let _app = App::run(socket);
    peer.send_text(r#"{"type":"auth.renew","id":"x"}"#);
    assert_eq!(
        peer.next_json().await,
        json!({"type": "auth.renew_rejected", "error": "invalid_request", "error_description": "token must be a string", "id": "x"})
    );
    peer.send_text(r#"{"type":"auth.bogus","id":"y"}"#);
    assert_eq!(peer.next_json().await["id"], "y");
    peer.send_text(r#"{"type":"auth.bogus"}"#);
    assert_eq!(peer.expect_close().await, (4400, "bad request".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn application_frames_pass_through_byte_for_byte_in_order() {
    let exp = wall_now() + 3600;
    let Setup {
        mut socket,
        mut peer,
    } = start_with(defaults, &sign(SECRET, "alice", exp, 0));
    let frames = [
        Message::Text(r#"{"type":"chat","text":"auth.renew"}"#.into()),
        Message::Binary(br#"{"type":"auth.renew","token":"x"}"#.to_vec().into()),
        Message::Text("not json {".into()),
        Message::Text(r#" {"type":"auth"} "#.into()),
    ];
    for frame in &frames {
        peer.send(frame.clone());
    }
    for frame in &frames {
        assert_eq!(&socket.recv().await.unwrap().unwrap(), frame);
    }
    for frame in &frames {
        socket.send(frame.clone()).await.unwrap();
    }
    for frame in &frames {
        assert_eq!(&peer.next().await, frame);
    }
}

#[tokio::test(start_paused = true)]
async fn split_halves_work_independently_and_dropping_both_closes_normally() {
    let exp = wall_now() + 3600;
    let Setup { socket, mut peer } = start_with(defaults, &sign(SECRET, "alice", exp, 0));
    let (mut sender, mut receiver) = socket.split();
    let echo = tokio::spawn(async move {
        while let Some(Ok(message)) = receiver.recv().await {
            if sender.send(message).await.is_err() {
                break;
            }
        }
    });
    peer.send_text("ping");
    assert_eq!(peer.next().await, Message::Text("ping".into()));
    echo.abort();
    let _ = echo.await;
    assert_eq!(peer.expect_close().await.0, 1000);
}

#[tokio::test(start_paused = true)]
async fn a_slow_application_does_not_delay_expiry() {
    let exp = wall_now() + 60;
    let Setup {
        socket: _socket,
        mut peer,
    } = start_with(
        |b| defaults(b).notify_before(Duration::ZERO),
        &sign(SECRET, "alice", exp, 0),
    );
    // Frames pile up unread; the application never reads.
    for n in 0..10 {
        peer.send_text(format!("frame {n}"));
    }
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    assert_eq!(peer.expect_close().await.0, 4401);
}

#[tokio::test(start_paused = true)]
async fn a_write_only_application_still_gets_renewals_answered() {
    let exp = wall_now() + 60;
    let Setup { socket, mut peer } = start_with(defaults, &sign(SECRET, "alice", exp, 0));
    // A push-only application: it drops the receiver and only writes.
    let (mut sender, receiver) = socket.split();
    drop(receiver);
    peer.send_text("ignored: nobody reads application frames now");
    peer.renew(&sign(SECRET, "alice", exp + 600, 1), "r");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let answer = peer.next_json().await;
        seen.push(answer["type"].as_str().unwrap().to_owned());
    }
    assert!(seen.contains(&"auth.renewed".to_owned()), "{seen:?}");
    sender.send(Message::Text("push".into())).await.unwrap();
    loop {
        match peer.next().await {
            Message::Text(text) if text.as_str() == "push" => break,
            Message::Text(_) => continue,
            other => panic!("{other:?}"),
        }
    }
    drop(sender);
    assert_eq!(peer.expect_close().await.0, 1000);
}

#[tokio::test(start_paused = true)]
async fn an_application_parked_in_recv_sees_the_end_at_the_deadline() {
    let exp = wall_now() + 60;
    let Setup {
        mut socket,
        mut peer,
    } = start_with(
        |b| defaults(b).notify_before(Duration::ZERO),
        &sign(SECRET, "alice", exp, 0),
    );
    let deadline = deadline(&socket);
    let parked = tokio::spawn(async move {
        let end = socket.recv().await;
        (Instant::now(), end.is_none())
    });
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    assert_eq!(peer.expect_close().await.0, 4401);
    let (woke_at, ended) = parked.await.unwrap();
    assert!(ended);
    assert!(woke_at >= deadline && woke_at - deadline < Duration::from_millis(1));
}
