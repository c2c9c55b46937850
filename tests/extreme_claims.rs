//! "Nothing that a validly signed token can carry panics, stalls or
//! disturbs another connection": `exp`, `nbf` and `iat` at 0, negative,
//! fractional, 2^53 and u64::MAX, against a real server.

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ws::Message;
use axum::response::Response;
use axum::routing::any;
use axum_ws_auth::{AuthUpgrade, WsAuthLayer};
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Signs a payload given as JSON text, so that numbers keep the exact form
/// under test (`9007199254740993.0`, `1e300`, `-0`).
fn sign_text(payload: &str) -> String {
    let raw = RawValue::from_string(payload.to_owned()).unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &raw,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

/// A token with the test's `sub`, `aud` and `iss`, and the given claims as
/// JSON text (`"exp":0,"nbf":1`).
fn token_with(claims: &str) -> String {
    sign_text(&format!(
        r#"{{"sub":"extreme","aud":"{AUDIENCE}","iss":"{ISSUER}",{claims}}}"#
    ))
}

/// Echoes, and answers the text `exp` with the connection's `exp` as the
/// socket reports it.
async fn server() -> SocketAddr {
    async fn handler(upgrade: AuthUpgrade<Value>) -> Response {
        upgrade.on_upgrade(|mut socket| async move {
            while let Some(Ok(message)) = socket.recv().await {
                let reply = match message {
                    Message::Text(text) if text.as_str() == "exp" => {
                        Message::Text(socket.expires_at().to_string().into())
                    }
                    Message::Close(_) => break,
                    other => other,
                };
                if socket.send(reply).await.is_err() {
                    break;
                }
            }
        })
    }
    let layer = WsAuthLayer::<Value>::builder(validator())
        .realm(REALM)
        .build()
        .unwrap();
    serve_router(Router::new().route("/ws", any(handler)).layer(layer)).await
}

fn invalid_token(description: &str) -> String {
    format!(r#"Bearer realm="{REALM}", error="invalid_token", error_description="{description}""#)
}

async fn assert_echoes(client: &mut Client, what: &str) {
    send_text(client, what).await;
    assert_eq!(
        next_app_message(client).await,
        WsMessage::Text(what.into()),
        "{what}"
    );
}

const EXPIRED: &str = "token expired";
const NOT_YET: &str = "token not yet valid";
const MALFORMED_REQUIRED: &str = "missing or malformed required claim";
const BAD_FORMAT: &str = "invalid claim format";

#[tokio::test]
async fn extreme_values_are_refused_with_the_right_401() {
    let addr = server().await;
    let mut bystander = connect_bearer(addr, &token("bystander", 60)).await;
    let now = now();
    let later = now + 60;
    let cases: Vec<(String, &str)> = vec![
        ("\"exp\":0".into(), EXPIRED),
        ("\"exp\":-0".into(), EXPIRED),
        ("\"exp\":0.5".into(), EXPIRED),
        (format!("\"exp\":{}", now - 60), EXPIRED),
        (format!("\"exp\":{}.4", now - 60), EXPIRED),
        ("\"exp\":-1".into(), MALFORMED_REQUIRED),
        ("\"exp\":-1e18".into(), MALFORMED_REQUIRED),
        ("\"exp\":-9223372036854775808".into(), MALFORMED_REQUIRED),
        ("\"exp\":1e300".into(), MALFORMED_REQUIRED),
        ("\"exp\":18446744073709551616".into(), MALFORMED_REQUIRED),
        ("\"exp\":1.8446744073709552e19".into(), MALFORMED_REQUIRED),
        ("\"exp\":null".into(), MALFORMED_REQUIRED),
        (format!("\"exp\":{later},\"nbf\":{}", now + 600), NOT_YET),
        (format!("\"exp\":{later},\"nbf\":9007199254740992"), NOT_YET),
        (
            format!("\"exp\":{later},\"nbf\":18446744073709551615"),
            NOT_YET,
        ),
        (format!("\"exp\":{later},\"nbf\":1.8e19"), NOT_YET),
        (format!("\"exp\":{later},\"nbf\":-1"), BAD_FORMAT),
        (format!("\"exp\":{later},\"nbf\":-1e18"), BAD_FORMAT),
        (format!("\"exp\":{later},\"nbf\":1e300"), BAD_FORMAT),
        (format!("\"exp\":{later},\"iat\":\"yesterday\""), BAD_FORMAT),
        // Every claim extreme at once: jsonwebtoken's order decides, an
        // unreadable exp first, then an unreadable nbf, then expiry, then
        // nbf in the future; iat last.
        ("\"exp\":0,\"nbf\":1e300,\"iat\":-1".into(), BAD_FORMAT),
        (
            "\"exp\":-1,\"nbf\":-1,\"iat\":1e300".into(),
            MALFORMED_REQUIRED,
        ),
        (
            "\"exp\":18446744073709551615,\"nbf\":1e300,\"iat\":0".into(),
            BAD_FORMAT,
        ),
        (
            "\"exp\":0,\"nbf\":18446744073709551615,\"iat\":0".into(),
            EXPIRED,
        ),
    ];
    for (claims, description) in cases {
        let jwt = token_with(&claims);
        let refused = connect(addr, &[("authorization", &format!("Bearer {jwt}"))])
            .await
            .err()
            .unwrap_or_else(|| panic!("{claims} was accepted"));
        assert_eq!(refused.status, 401, "{claims}");
        assert_eq!(
            refused.challenge.as_deref(),
            Some(invalid_token(description).as_str()),
            "{claims}"
        );
    }
    assert_echoes(&mut bystander, "still here").await;
}

#[tokio::test]
async fn iat_is_read_as_a_numeric_date_and_has_no_effect_on_validity() {
    let addr = server().await;
    let later = now() + 60;
    for iat in [
        "0",
        "0.5",
        "9007199254740993.0",
        "18446744073709551615",
        "1.8e19",
        "null",
    ] {
        let jwt = token_with(&format!("\"exp\":{later},\"iat\":{iat}"));
        let mut client = connect_bearer(addr, &jwt).await;
        assert_echoes(&mut client, iat).await;
    }
    // jsonwebtoken ignores `iat`; one this crate cannot represent as a
    // NumericDate (what the handler's `registered().iat` holds) is refused.
    for iat in ["-1", "-1e18", "1e300", "18446744073709551616", "\"now\""] {
        let jwt = token_with(&format!("\"exp\":{later},\"iat\":{iat}"));
        let refused = connect(addr, &[("authorization", &format!("Bearer {jwt}"))])
            .await
            .err()
            .unwrap_or_else(|| panic!("iat {iat} was accepted"));
        assert_eq!(
            refused.challenge.as_deref(),
            Some(invalid_token(BAD_FORMAT).as_str()),
            "{iat}"
        );
    }
}

#[tokio::test]
async fn near_now_and_fractional_values_are_accepted_within_the_leeway() {
    let addr = server().await;
    let now = now();
    // Leeway is 5 s: an `exp` a second ago is still good for a moment.
    for claims in [
        format!("\"exp\":{now}"),
        format!("\"exp\":{}", now - 1),
        format!("\"exp\":{}", now + 1),
        format!("\"exp\":{now}.4"),
        format!("\"exp\":{now}.6"),
        format!("\"exp\":{},\"nbf\":{}", now + 60, now + 1),
        format!("\"exp\":{},\"nbf\":{now}.6", now + 60),
        format!("\"exp\":{},\"nbf\":0", now + 60),
        format!("\"exp\":{},\"nbf\":0.5", now + 60),
        format!("\"exp\":{},\"nbf\":-0", now + 60),
    ] {
        let jwt = token_with(&claims);
        let mut client = connect(addr, &[("authorization", &format!("Bearer {jwt}"))])
            .await
            .unwrap_or_else(|refused| panic!("{claims}: {refused:?}"))
            .client;
        assert_echoes(&mut client, &claims).await;
    }
    // Fractions round half away from zero, as jsonwebtoken rounds them.
    for (fraction, reported) in [(".4", now), (".5", now + 1), (".6", now + 1)] {
        let jwt = token_with(&format!("\"exp\":{now}{fraction}"));
        let mut client = connect_bearer(addr, &jwt).await;
        send_text(&mut client, "exp").await;
        assert_eq!(
            next_app_message(&mut client).await,
            WsMessage::Text(reported.to_string().into()),
            "{fraction}"
        );
    }
}

/// Far-future `exp` values are valid tokens: accepted, reported exactly,
/// and the connection works. (On a branch whose socket timer cannot arm a
/// deadline this far out, this is the test that says so.)
#[tokio::test]
async fn far_future_exp_is_accepted_and_the_connection_works() {
    let addr = server().await;
    let mut bystander = connect_bearer(addr, &token("bystander", 60)).await;
    for (exp, reported) in [
        ("9007199254740992", 9_007_199_254_740_992_u64),
        ("9007199254740993", 9_007_199_254_740_993),
        // serde_json's best-effort float parser, which jsonwebtoken uses
        // too, reads this as 2^53 + 2.
        ("9007199254740993.0", 9_007_199_254_740_994),
        ("1.8e19", 18_000_000_000_000_000_000),
        ("18446744073709549568.0", 18_446_744_073_709_549_568),
        ("18446744073709551615", u64::MAX),
    ] {
        let jwt = token_with(&format!("\"exp\":{exp}"));
        let connected = connect(addr, &[("authorization", &format!("Bearer {jwt}"))])
            .await
            .unwrap_or_else(|refused| panic!("exp {exp}: {refused:?}"));
        let mut client = connected.client;
        assert_echoes(&mut client, exp).await;
        send_text(&mut client, "exp").await;
        assert_eq!(
            next_app_message(&mut client).await,
            WsMessage::Text(reported.to_string().into()),
            "{exp}"
        );
    }
    assert_echoes(&mut bystander, "still here").await;
}
