//! Server-requested re-authentication and revocation of live sockets, on
//! the paused clock: the early notice, the deadline it sets to the
//! millisecond, what answers it, and what does not.

use serde_json::{Value, json};

use super::*;
use crate::connection::{AuthEvent, EndReason, Selector};
use crate::protocol::CloseReason;

/// A token for `sub` with `exp` and, when given, `iat` and `jti`.
fn token(sub: &str, exp: u64, iat: Option<u64>, jti: Option<&str>) -> String {
    let mut claims = json!({ "sub": sub, "exp": exp });
    if let Some(iat) = iat {
        claims["iat"] = json!(iat);
    }
    if let Some(jti) = jti {
        claims["jti"] = json!(jti);
    }
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

/// No notice of the token's own while a test runs: long tokens, a short
/// notice window.
fn quiet(builder: WsAuthLayerBuilder<Claims>) -> WsAuthLayerBuilder<Claims> {
    builder
        .notify_before(Duration::from_secs(5))
        .leeway(Duration::from_secs(5))
}

/// The whole second of the wall clock, rounded up.
fn wall_ceil(plus: Duration) -> u64 {
    let since = (SystemTime::now() + plus)
        .duration_since(UNIX_EPOCH)
        .unwrap();
    since.as_secs() + u64::from(since.subsec_nanos() > 0)
}

fn renew_answer(answer: &Value) -> (&str, &str) {
    (
        answer["type"].as_str().unwrap(),
        answer["error_description"].as_str().unwrap_or(""),
    )
}

#[tokio::test(start_paused = true)]
async fn the_early_notice_sets_the_deadline_and_no_renewal_closes_at_it() {
    let layer = layer(quiet);
    let exp = wall_now() + 3600;
    let Setup { socket, mut peer } = open(
        &layer,
        &token("alice", exp, Some(wall_now()), Some("t1")),
        Backpressure::ROOMY,
    );
    let mut events = socket.events();
    let mut app = App::run(socket);
    let own_deadline = app.deadline();

    let grace = Duration::from_secs(10);
    let earliest = wall_ceil(grace);
    let asked = layer.connections().reauthenticate(Selector::All, grace);
    let latest = wall_ceil(grace);
    assert_eq!(asked, 1);
    let requested = Instant::now();

    let notice = peer.next_json().await;
    assert_fired_at(requested);
    let new_exp = notice["exp"].as_u64().unwrap();
    let expires_in = notice["expires_in"].as_u64().unwrap();
    assert!((earliest..=latest).contains(&new_exp), "{notice}");
    assert_eq!(notice["type"], "auth.expiring");
    // Whole seconds: 10 s of grace rounded up to a second boundary, and
    // `expires_in` counts down to it, rounded down.
    assert!((9..=10).contains(&expires_in), "{notice}");
    assert_eq!(
        events.recv().await.unwrap(),
        AuthEvent::ReauthRequested {
            exp: new_exp,
            expires_in
        }
    );
    let deadline = app.deadline();
    assert!(deadline < own_deadline);
    assert!(
        deadline >= requested + grace && deadline <= requested + grace + Duration::from_secs(1)
    );
    // The token's own exp is unchanged: the request moved the deadline.
    assert_eq!(app.expires_at(), exp);

    // Frames still flow until then.
    peer.send_text("before");
    assert_eq!(
        app.frames.recv().await.unwrap(),
        Message::Text("before".into())
    );
    assert_eq!(
        peer.expect_close().await,
        (4401, "token expired".to_owned())
    );
    assert_fired_at(deadline);
    assert_eq!(app.sender.end_reason(), Some(EndReason::NotReauthenticated));
}

#[tokio::test(start_paused = true)]
async fn a_token_issued_since_the_request_answers_it_and_the_connection_lives_on() {
    let layer = layer(quiet);
    let exp = wall_now() + 3600;
    let Setup { socket, mut peer } = open(
        &layer,
        &token("alice", exp, Some(wall_now() - 60), Some("t1")),
        Backpressure::ROOMY,
    );
    let mut app = App::run(socket);
    let grace = Duration::from_secs(10);
    assert_eq!(
        layer
            .connections()
            .reauthenticate(Selector::user(None, "alice"), grace),
        1
    );
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    // Minted in the request's second: accepted.
    let fresh_exp = exp + 60;
    peer.renew(
        &token("alice", fresh_exp, Some(wall_now()), Some("t2")),
        "fresh",
    );
    assert_eq!(
        peer.next_json().await,
        json!({"type": "auth.renewed", "exp": fresh_exp, "id": "fresh"})
    );
    assert_eq!(app.expires_at(), fresh_exp);
    let renewed_deadline = app.deadline();
    assert!(renewed_deadline > Instant::now() + Duration::from_secs(3600));
    // Well past the grace: still open.
    tokio::time::sleep(grace * 3).await;
    peer.send_text("still here");
    assert_eq!(
        app.frames.recv().await.unwrap(),
        Message::Text("still here".into())
    );
    assert_eq!(app.sender.end_reason(), None);
    // The next notice is the new token's own.
    tokio::time::sleep_until(renewed_deadline - Duration::from_secs(10)).await;
    let notice = peer.next_json().await;
    assert_eq!(notice["exp"], fresh_exp);
}

#[tokio::test(start_paused = true)]
async fn the_old_token_or_one_minted_before_the_request_does_not_answer_it() {
    let layer = layer(quiet);
    let now = wall_now();
    let exp = now + 3600;
    let current = token("alice", exp, Some(now - 60), Some("t1"));
    // Fetched earlier, kept by the client, a later exp: still not fresh.
    let early = token("alice", exp + 60, Some(now - 1), Some("t2"));
    let undated = token("alice", exp + 90, None, Some("t3"));
    let Setup { socket, mut peer } = open(&layer, &current, Backpressure::ROOMY);
    let app = App::run(socket);
    assert_eq!(
        layer
            .connections()
            .reauthenticate(Selector::token("t1"), Duration::from_secs(20)),
        1
    );
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    let deadline = app.deadline();
    for (n, stale) in [&current, &early, &undated].into_iter().enumerate() {
        peer.renew(stale, &format!("r{n}"));
        let answer = peer.next_json().await;
        assert_eq!(
            renew_answer(&answer),
            (
                "auth.renew_rejected",
                "token issued before the re-authentication request"
            ),
            "{answer}"
        );
        assert_eq!(answer["error"], "invalid_token");
    }
    assert_eq!(app.deadline(), deadline, "a refusal changes nothing");
    assert_eq!(app.expires_at(), exp);
    assert_eq!(peer.expect_close().await.0, 4401);
    assert_fired_at(deadline);
}

#[tokio::test(start_paused = true)]
async fn grace_beyond_the_token_does_not_extend_it_and_a_later_request_never_does() {
    let layer = layer(|b| quiet(b).notify_before(Duration::ZERO));
    let exp = wall_now() + 20;
    let Setup { socket, mut peer } = open(
        &layer,
        &token("alice", exp, Some(wall_now()), None),
        Backpressure::ROOMY,
    );
    let app = App::run(socket);
    let own_deadline = app.deadline();
    let connections = layer.connections();
    // Ten minutes of grace for a token with 20 s left: its own exp.
    assert_eq!(
        connections.reauthenticate(Selector::All, Duration::from_secs(600)),
        1
    );
    let notice = peer.next_json().await;
    assert_eq!(notice["exp"], exp);
    assert_eq!(app.deadline(), own_deadline);

    // A shorter request moves it earlier; a longer one after it does not
    // move it back.
    connections.reauthenticate(Selector::All, Duration::from_secs(5));
    let shorter = peer.next_json().await["exp"].as_u64().unwrap();
    assert!(shorter < exp);
    let deadline = app.deadline();
    assert!(deadline < own_deadline);
    connections.reauthenticate(Selector::All, Duration::from_secs(15));
    assert_eq!(peer.next_json().await["exp"], shorter);
    assert_eq!(app.deadline(), deadline);
    assert_eq!(peer.expect_close().await.0, 4401);
    assert_fired_at(deadline);
}

#[tokio::test(start_paused = true)]
async fn the_connection_is_selected_by_its_current_token() {
    let layer = layer(quiet);
    let now = wall_now();
    let exp = now + 3600;
    let Setup { socket, mut peer } = open(
        &layer,
        &token("alice", exp, Some(now - 100), Some("old")),
        Backpressure::ROOMY,
    );
    let app = App::run(socket);
    let id = app.sender.identity().connection_id();
    peer.renew(&token("alice", exp + 60, Some(now), Some("new")), "r");
    assert_eq!(peer.next_json().await["type"], "auth.renewed");
    let connections = layer.connections();
    let grace = Duration::from_secs(30);
    assert_eq!(connections.reauthenticate(Selector::token("old"), grace), 0);
    assert_eq!(
        connections.reauthenticate(Selector::all_issued_before(now - 50), grace),
        0
    );
    assert_eq!(connections.revoke(Selector::token("old")), 0);
    assert_eq!(
        connections.revoke(Selector::issued_before(None, "alice", now - 50)),
        0
    );
    assert_eq!(
        connections.reauthenticate(Selector::connection(id + 1), grace),
        0
    );
    assert_eq!(
        connections.reauthenticate(Selector::connection(id), grace),
        1
    );
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    // Revoking the current token closes it at once, with 4403.
    assert_eq!(connections.revoke(Selector::token("new")), 1);
    assert_eq!(peer.expect_close().await, (4403, "forbidden".to_owned()));
    assert_eq!(app.sender.end_reason(), Some(EndReason::Revoked));
}

#[tokio::test(start_paused = true)]
async fn a_revoked_renewal_is_rejected_and_changes_nothing() {
    let layer = layer(quiet);
    let now = wall_now();
    let exp = now + 3600;
    let Setup { socket, mut peer } = open(
        &layer,
        &token("alice", exp, Some(now), Some("t1")),
        Backpressure::ROOMY,
    );
    let app = App::run(socket);
    layer.connections().revoke(Selector::token("t2"));
    peer.renew(&token("alice", exp + 60, Some(now), Some("t2")), "r");
    assert_eq!(
        peer.next_json().await,
        json!({"type": "auth.renew_rejected", "error": "invalid_token", "error_description": "token revoked", "id": "r"})
    );
    assert_eq!(app.expires_at(), exp);
    assert_eq!(app.sender.end_reason(), None);
}

#[tokio::test(start_paused = true)]
async fn a_token_revoked_between_the_handshake_and_the_start_is_closed_at_once() {
    let layer = layer(quiet);
    let settings = Arc::clone(layer.settings());
    let valid = settings
        .check_token(&token(
            "alice",
            wall_now() + 3600,
            Some(wall_now()),
            Some("t1"),
        ))
        .unwrap();
    // The handshake passed; the revocation lands before the socket starts.
    assert_eq!(layer.connections().revoke(Selector::token("t1")), 0);
    let Setup { socket, mut peer } = open_authenticated(
        Authenticated {
            claims: Arc::new(valid.claims),
            registered: Arc::new(valid.registered),
            source: TokenSource::Header,
            protocol: None,
            settings,
        },
        Backpressure::ROOMY,
    );
    assert_eq!(peer.expect_close().await.0, 4403);
    assert_eq!(socket.end_reason(), Some(EndReason::Revoked));
}

#[tokio::test(start_paused = true)]
async fn close_connection_closes_one_connection_with_the_chosen_code() {
    let layer = layer(quiet);
    let exp = wall_now() + 3600;
    let connections = layer.connections();
    for reason in CloseReason::ALL {
        let Setup { socket, mut peer } = open(
            &layer,
            &token("alice", exp, None, None),
            Backpressure::ROOMY,
        );
        let Setup {
            socket: bystander,
            peer: _bystander_peer,
        } = open(
            &layer,
            &token("alice", exp, None, None),
            Backpressure::ROOMY,
        );
        let id = socket.identity().connection_id();
        assert!(connections.close_connection(id, reason));
        assert!(!connections.close_connection(id, reason), "already closing");
        assert_eq!(
            peer.expect_close().await,
            (reason.code(), reason.phrase().to_owned())
        );
        assert_eq!(
            socket.end_reason(),
            Some(EndReason::CloseRequested { reason })
        );
        assert_eq!(bystander.end_reason(), None);
    }
}

#[tokio::test(start_paused = true)]
async fn the_notice_goes_out_while_the_application_writes_at_full_speed() {
    // A slow peer and an application that keeps the socket full: the
    // notice comes through the control outbox, ahead of the backlog.
    let layer = layer(quiet);
    let exp = wall_now() + 3600;
    let Setup { socket, mut peer } = open(
        &layer,
        &token("alice", exp, Some(wall_now()), None),
        Backpressure::tight(2),
    );
    let (mut sender, _receiver) = socket.split();
    let writer = tokio::spawn(async move {
        for n in 0.. {
            if sender
                .send(Message::Text(format!("{n}").into()))
                .await
                .is_err()
            {
                return n;
            }
        }
        unreachable!()
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        layer
            .connections()
            .reauthenticate(Selector::All, Duration::from_secs(3)),
        1
    );
    let mut application_frames = 0;
    let notice = loop {
        match peer.next().await {
            Message::Text(text) if text.as_str().starts_with('{') => {
                break serde_json::from_str::<Value>(text.as_str()).unwrap();
            }
            _ => application_frames += 1,
        }
    };
    assert_eq!(notice["type"], "auth.expiring");
    assert!(application_frames < 8, "{application_frames} frames first");
    // The peer stops reading (the writer waits on it, so the paused clock
    // moves on); without a renewal, the writer is stopped at the deadline
    // and nothing it wrote is let through after it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let close = loop {
        if let Message::Close(frame) = peer.next().await {
            break frame.unwrap().code;
        }
    };
    assert_eq!(close, 4401);
    writer.await.unwrap();
    assert_eq!(peer.probe.late_frames(), []);
}
