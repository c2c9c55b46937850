//! A renewal keeps the connection's identity, the pair (`iss`, `sub`):
//! a subject is unique only within its issuer.

use serde_json::{Value, json};

use super::*;

fn sign_claims(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn token(iss: Option<&str>, sub: Option<&str>, exp: u64) -> String {
    let mut claims = json!({ "exp": exp });
    if let Some(iss) = iss {
        claims["iss"] = json!(iss);
    }
    if let Some(sub) = sub {
        claims["sub"] = json!(sub);
    }
    sign_claims(&claims)
}

fn open_with(
    configure: impl FnOnce(WsAuthLayerBuilder<Claims>) -> WsAuthLayerBuilder<Claims>,
    token: &str,
) -> Setup {
    open(&layer(configure), token, Backpressure::ROOMY)
}

#[tokio::test(start_paused = true)]
async fn the_same_subject_from_another_issuer_is_another_identity() {
    let exp = wall_now() + 300;
    let Setup { socket, mut peer } =
        open_with(defaults, &token(Some("https://a.test"), Some("alice"), exp));
    let _app = App::run(socket);
    peer.renew(
        &token(Some("https://a.test"), Some("alice"), exp + 60),
        "same",
    );
    assert_eq!(peer.next_json().await["type"], "auth.renewed");
    peer.renew(
        &token(Some("https://b.test"), Some("alice"), exp + 120),
        "other",
    );
    assert_eq!(peer.expect_close().await, (4403, "forbidden".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn an_issuer_cannot_be_added_or_dropped_by_renewal() {
    let exp = wall_now() + 300;
    let Setup { socket, mut peer } = open_with(defaults, &token(None, Some("alice"), exp));
    let _app = App::run(socket);
    peer.renew(&token(Some("https://a.test"), Some("alice"), exp + 60), "r");
    assert_eq!(peer.expect_close().await.0, 4403);
}

#[tokio::test(start_paused = true)]
async fn a_connection_without_sub_renews_only_without_sub_from_the_same_issuer() {
    let exp = wall_now() + 300;
    let allow = |b: WsAuthLayerBuilder<Claims>| defaults(b).allow_missing_subject(true);
    let Setup { socket, mut peer } = open_with(allow, &token(Some("https://a.test"), None, exp));
    let _app = App::run(socket);
    peer.renew(&token(Some("https://a.test"), None, exp + 60), "r1");
    assert_eq!(
        peer.next_json().await,
        json!({"type": "auth.renewed", "exp": exp + 60, "id": "r1"})
    );
    peer.renew(
        &token(Some("https://a.test"), Some("alice"), exp + 120),
        "r2",
    );
    assert_eq!(peer.expect_close().await.0, 4403);

    let Setup { socket, mut peer } = open_with(allow, &token(Some("https://a.test"), None, exp));
    let _app = App::run(socket);
    peer.renew(&token(Some("https://b.test"), None, exp + 60), "r3");
    assert_eq!(peer.expect_close().await.0, 4403);
}

#[tokio::test(start_paused = true)]
async fn by_default_a_renewal_without_sub_fails_like_a_handshake_would() {
    let exp = wall_now() + 300;
    let Setup { socket, mut peer } = open_with(defaults, &token(None, Some("alice"), exp));
    let _app = App::run(socket);
    peer.renew(&token(None, None, exp + 60), "r");
    assert_eq!(
        peer.next_json().await,
        json!({
            "type": "auth.renew_rejected",
            "error": "invalid_token",
            "error_description": "missing or malformed required claim",
            "id": "r"
        })
    );
}

#[tokio::test(start_paused = true)]
async fn the_application_sees_notices_and_renewal_outcomes_as_events() {
    use crate::connection::AuthEvent;
    use crate::protocol::RenewRejection;

    let exp = wall_now() + 60;
    let Setup { socket, mut peer } = open_with(defaults, &token(None, Some("alice"), exp));
    let mut events = socket.events();
    let (sender, _receiver) = {
        let app = App::run(socket);
        (app.sender, app.frames)
    };
    let Ok(AuthEvent::Expiring { exp: noticed, .. }) = events.recv().await else {
        panic!("expected the notice event");
    };
    assert_eq!(noticed, exp);
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    peer.renew(&token(None, Some("alice"), exp), "stale");
    assert_eq!(
        events.recv().await.unwrap(),
        AuthEvent::RenewRejected {
            error: RenewRejection::InvalidToken,
            description: "token not newer than the current one".into(),
        }
    );
    peer.renew(&token(None, Some("alice"), exp + 60), "fresh");
    assert_eq!(
        events.recv().await.unwrap(),
        AuthEvent::Renewed { exp: exp + 60 }
    );
    // The halves offer the same subscription.
    let mut from_sender = sender.events();
    peer.renew(&token(None, Some("alice"), exp + 120), "again");
    assert_eq!(
        from_sender.recv().await.unwrap(),
        AuthEvent::Renewed { exp: exp + 120 }
    );
}

#[tokio::test(start_paused = true)]
async fn a_connection_keeps_one_copy_of_iss_and_sub_however_often_it_renews() {
    let exp = wall_now() + 300;
    let issuer = Some("https://a.test");
    let Setup { socket, mut peer } = open_with(defaults, &token(issuer, Some("alice"), exp));
    let (sender, mut receiver) = socket.split();
    let _reader = tokio::spawn(async move { while receiver.recv().await.is_some() {} });
    let one_copy = |registered: &crate::token::RegisteredClaims, identity: &crate::Identity| {
        std::ptr::eq(
            registered.iss.as_deref().unwrap(),
            identity.issuer().unwrap(),
        ) && std::ptr::eq(
            registered.sub.as_deref().unwrap(),
            identity.subject().unwrap(),
        )
    };
    assert!(
        one_copy(&sender.registered(), sender.identity()),
        "at the handshake"
    );
    for renewal in 1..=3 {
        peer.renew(&token(issuer, Some("alice"), exp + renewal), "r");
        assert_eq!(peer.next_json().await["type"], "auth.renewed");
        let registered = sender.registered();
        assert_eq!(registered.exp, exp + renewal);
        assert!(
            one_copy(&registered, sender.identity()),
            "after renewal {renewal}"
        );
    }
}
