//! Section 1 of the wire contract, row by row, against a real server.

mod common;

use std::time::Duration;

use axum::Router;
use axum::response::Response;
use axum::routing::any;
use axum_ws_auth::policy::{PolicyDenial, PolicyRequest};
use axum_ws_auth::{AuthUpgrade, WsAuthLayer};
use common::*;
use futures_util::SinkExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn assert_refused(refused: &Refused, status: u16, challenge: Option<&str>) {
    assert_eq!(refused.status.as_u16(), status, "{refused:?}");
    assert_eq!(refused.challenge.as_deref(), challenge, "{refused:?}");
}

fn invalid_token(description: &str) -> String {
    format!(r#"Bearer realm="{REALM}", error="invalid_token", error_description="{description}""#)
}

fn invalid_request(description: &str) -> String {
    format!(r#"Bearer realm="{REALM}", error="invalid_request", error_description="{description}""#)
}

#[tokio::test]
async fn header_token_upgrades_and_echoes() {
    let addr = serve(builder()).await;
    let mut client = connect_bearer(addr, &token("alice", 60)).await;
    send_text(&mut client, "hello").await;
    assert_eq!(
        next_message(&mut client).await,
        WsMessage::Text("hello".into())
    );
    send_text(&mut client, "claims").await;
    assert_eq!(next_json(&mut client).await["sub"], "alice");
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let addr = serve(builder()).await;
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let value = format!("{scheme} {}", token("alice", 60));
        assert!(
            connect(addr, &[("authorization", &value)]).await.is_ok(),
            "{scheme}"
        );
    }
}

#[tokio::test]
async fn subprotocol_token_selects_wsauth_v1_and_is_never_echoed() {
    let addr = serve(builder()).await;
    let list = format!("wsauth.v1, bearer.{}", token("alice", 60));
    let connected = connect(addr, &[("sec-websocket-protocol", &list)])
        .await
        .unwrap();
    assert_eq!(connected.protocol.as_deref(), Some("wsauth.v1"));
}

#[tokio::test]
async fn application_protocols_are_negotiated_among_the_other_entries() {
    let addr = serve(builder().protocols(["graphql-transport-ws", "wsauth.v1"])).await;
    let list = format!(
        "wsauth.v1, graphql-transport-ws, bearer.{}",
        token("alice", 60)
    );
    let connected = connect(addr, &[("sec-websocket-protocol", &list)])
        .await
        .unwrap();
    assert_eq!(connected.protocol.as_deref(), Some("graphql-transport-ws"));

    // A custom list replaces wsauth.v1.
    let addr = serve(builder().protocols(["graphql-transport-ws"])).await;
    let list = format!("wsauth.v1, bearer.{}", token("alice", 60));
    let refused = connect(addr, &[("sec-websocket-protocol", &list)])
        .await
        .err()
        .unwrap();
    assert_refused(
        &refused,
        400,
        Some(&invalid_request("no acceptable subprotocol offered")),
    );
}

#[tokio::test]
async fn unusable_subprotocol_lists_are_400() {
    let addr = serve(builder()).await;
    let jwt = token("alice", 60);
    let cases = [
        (format!("bearer.{jwt}"), "no acceptable subprotocol offered"),
        (
            format!("wsauth.v1, bearer.{jwt}, bearer.{jwt}"),
            "multiple bearer subprotocol entries",
        ),
        (
            format!("soap, bearer.{jwt}"),
            "no acceptable subprotocol offered",
        ),
        (
            format!("wsauth.v1,,bearer.{jwt}"),
            "malformed subprotocol list",
        ),
    ];
    for (list, description) in cases {
        let refused = connect(addr, &[("sec-websocket-protocol", &list)])
            .await
            .err()
            .unwrap();
        assert_refused(&refused, 400, Some(&invalid_request(description)));
        assert!(!refused.body.contains(&jwt));
    }
}

#[tokio::test]
async fn header_takes_precedence_over_subprotocol() {
    let addr = serve(builder()).await;
    let header = format!("Bearer {}", token("alice", 60));
    let list = format!("wsauth.v1, bearer.{}", token("bob", 60));
    let connected = connect(
        addr,
        &[
            ("authorization", &header),
            ("sec-websocket-protocol", &list),
        ],
    )
    .await
    .unwrap();
    let mut client = connected.client;
    send_text(&mut client, "claims").await;
    assert_eq!(next_json(&mut client).await["sub"], "alice");

    // Even a bad lower-precedence token is ignored.
    let list = "wsauth.v1, bearer.not-a-jwt";
    assert!(
        connect(
            addr,
            &[("authorization", &header), ("sec-websocket-protocol", list)]
        )
        .await
        .is_ok()
    );
}

#[tokio::test]
async fn missing_token_is_401_without_error_code() {
    let addr = serve(builder()).await;
    let refused = connect(addr, &[]).await.err().unwrap();
    assert_refused(&refused, 401, Some(&format!(r#"Bearer realm="{REALM}""#)));
    // Another scheme is not a bearer token.
    let refused = connect(addr, &[("authorization", "Basic dXNlcjpwYXNz")])
        .await
        .err()
        .unwrap();
    assert_refused(&refused, 401, Some(&format!(r#"Bearer realm="{REALM}""#)));
    // Disabled sources are not read.
    let cookie = format!("jwt={}", token("alice", 60));
    let refused = connect(addr, &[("cookie", &cookie)]).await.err().unwrap();
    assert_eq!(refused.status, 401);
}

#[tokio::test]
async fn malformed_and_duplicate_headers_are_400() {
    let addr = serve(builder()).await;
    let jwt = token("alice", 60);
    let header = format!("Bearer {jwt}");
    let refused = connect(
        addr,
        &[("authorization", &header), ("authorization", &header)],
    )
    .await
    .err()
    .unwrap();
    assert_refused(
        &refused,
        400,
        Some(&invalid_request("multiple authorization headers")),
    );
    for value in ["Bearer", "Bearer a b", "Bearer {x}"] {
        let refused = connect(addr, &[("authorization", value)])
            .await
            .err()
            .unwrap();
        assert_refused(
            &refused,
            400,
            Some(&invalid_request("malformed authorization header")),
        );
    }
}

#[tokio::test]
async fn bad_token_matrix_is_401_invalid_token() {
    let rsa_private = include_bytes!("fixtures/rsa_private.pem");
    let rsa_public = include_bytes!("fixtures/rsa_public.pem");
    let addr = serve(builder()).await;
    let good = claims("alice", 60);
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let mut tampered = token("alice", 60);
    let payload = forge(
        &hs256,
        &json!({"sub": "admin", "exp": now() + 60, "aud": AUDIENCE, "iss": ISSUER}),
        b"",
    );
    let forged_payload = payload.split('.').nth(1).unwrap();
    let parts: Vec<&str> = tampered.split('.').collect();
    tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);

    let with = |changes: serde_json::Value| {
        let mut claims = good.clone();
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(key);
            } else {
                claims[key] = value.clone();
            }
        }
        sign(&claims)
    };

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            forge(&json!({"alg": "none", "typ": "JWT"}), &good, b""),
            "malformed token",
        ),
        (
            "alg confusion: HS256 signed with the RSA public key",
            sign_with(
                &good,
                &Header::new(Algorithm::HS256),
                &EncodingKey::from_secret(rsa_public),
            ),
            "signature invalid",
        ),
        (
            "RS256 where only HS256 is allowed",
            sign_with(
                &good,
                &Header::new(Algorithm::RS256),
                &EncodingKey::from_rsa_pem(rsa_private).unwrap(),
            ),
            "algorithm not allowed",
        ),
        ("tampered payload", tampered, "signature invalid"),
        (
            "bad signature",
            sign_with(
                &good,
                &Header::new(Algorithm::HS256),
                &EncodingKey::from_secret(b"another secret that is long enough!!"),
            ),
            "signature invalid",
        ),
        ("expired", with(json!({"exp": now() - 60})), "token expired"),
        (
            "not yet valid",
            with(json!({"nbf": now() + 600})),
            "token not yet valid",
        ),
        (
            "wrong audience",
            with(json!({"aud": "someone-else"})),
            "invalid audience",
        ),
        (
            "wrong issuer",
            with(json!({"iss": "https://evil.test"})),
            "invalid issuer",
        ),
        (
            "missing exp",
            with(json!({"exp": null})),
            "missing or malformed required claim",
        ),
        (
            "missing aud",
            with(json!({"aud": null})),
            "missing or malformed required claim",
        ),
        (
            "exp as string",
            with(json!({"exp": (now() + 60).to_string()})),
            "missing or malformed required claim",
        ),
        (
            "nbf as string",
            with(json!({"nbf": "yesterday"})),
            "invalid claim format",
        ),
        (
            "claims of the wrong shape",
            with(json!({"scope": 7})),
            "claims do not match the expected shape",
        ),
        ("unparseable", "a.b.c".to_owned(), "malformed token"),
        (
            "two segments",
            {
                let jwt = token("alice", 60);
                jwt.rsplit_once('.').unwrap().0.to_owned()
            },
            "malformed token",
        ),
        (
            "four segments",
            format!("{}.extra", token("alice", 60)),
            "malformed token",
        ),
        (
            "empty signature",
            {
                let jwt = token("alice", 60);
                format!("{}.", jwt.rsplit_once('.').unwrap().0)
            },
            "signature invalid",
        ),
        (
            "lowercase alg",
            forge(&json!({"alg": "hs256"}), &good, b"x"),
            "malformed token",
        ),
        (
            "payload is an array",
            sign_with(
                &json!([good.clone()]),
                &Header::new(Algorithm::HS256),
                &EncodingKey::from_secret(SECRET),
            ),
            "malformed token",
        ),
        (
            "negative exp",
            with(json!({"exp": -1})),
            "missing or malformed required claim",
        ),
        (
            "critical header extension",
            {
                let mut header = Header::new(Algorithm::HS256);
                header.crit = Some(vec!["exp-ext".into()]);
                sign_with(&good, &header, &EncodingKey::from_secret(SECRET))
            },
            "unsupported token header",
        ),
        (
            "jku pointing at the attacker's keys",
            {
                let mut header = Header::new(Algorithm::HS256);
                header.jku = Some("https://evil.test/jwks.json".into());
                sign_with(
                    &good,
                    &header,
                    &EncodingKey::from_secret(b"the attacker's own secret, 32+ bytes"),
                )
            },
            "signature invalid",
        ),
        (
            "x5u pointing at the attacker's cert",
            {
                let mut header = Header::new(Algorithm::RS256);
                header.x5u = Some("https://evil.test/cert.pem".into());
                sign_with(
                    &good,
                    &header,
                    &EncodingKey::from_rsa_pem(rsa_private).unwrap(),
                )
            },
            "algorithm not allowed",
        ),
        (
            "embedded jwk of the attacker",
            forge(
                &json!({"alg": "HS256", "jwk": {"kty": "oct", "k": "YXR0YWNrZXI"}}),
                &good,
                b"forged",
            ),
            "signature invalid",
        ),
        (
            "kid path injection",
            {
                let mut header = Header::new(Algorithm::HS256);
                header.kid = Some("../../../../dev/null".into());
                sign_with(&good, &header, &EncodingKey::from_secret(b""))
            },
            "signature invalid",
        ),
        (
            "oversize",
            format!("{}.{}.x", "a".repeat(6000), "b".repeat(3000)),
            "token too large",
        ),
    ];
    for (name, jwt, description) in cases {
        let header = format!("Bearer {jwt}");
        let refused = connect(addr, &[("authorization", &header)])
            .await
            .err()
            .unwrap_or_else(|| panic!("{name} was accepted"));
        assert_refused(&refused, 401, Some(&invalid_token(description)));
        assert!(!refused.body.contains(&jwt), "{name}: body leaks the token");
        assert!(
            refused.body.contains(description),
            "{name}: {}",
            refused.body
        );
    }
}

#[tokio::test]
async fn well_formed_variants_are_accepted() {
    let addr = serve(builder()).await;
    let mut aud_list = claims("alice", 60);
    aud_list["aud"] = json!(["other-service", AUDIENCE]);
    // A fractional exp is covered by the validator's unit tests: this test
    // application's claims type has `exp: u64`.
    for (name, jwt) in [("aud as a list", sign(&aud_list))] {
        let header = format!("Bearer {jwt}");
        assert!(
            connect(addr, &[("authorization", &header)]).await.is_ok(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn rs256_and_es256_validators_accept_their_own_tokens() {
    use jsonwebtoken::{DecodingKey, Validation};
    let cases = [
        (
            Algorithm::RS256,
            DecodingKey::from_rsa_pem(include_bytes!("fixtures/rsa_public.pem")).unwrap(),
            EncodingKey::from_rsa_pem(include_bytes!("fixtures/rsa_private.pem")).unwrap(),
        ),
        (
            Algorithm::ES256,
            DecodingKey::from_ec_pem(include_bytes!("fixtures/ec_public.pem")).unwrap(),
            EncodingKey::from_ec_pem(include_bytes!("fixtures/ec_private.pem")).unwrap(),
        ),
        (
            Algorithm::EdDSA,
            DecodingKey::from_ed_pem(include_bytes!("fixtures/ed_public.pem")).unwrap(),
            EncodingKey::from_ed_pem(include_bytes!("fixtures/ed_private.pem")).unwrap(),
        ),
    ];
    for (alg, decoding, encoding) in cases {
        let validator = axum_ws_auth::JwtValidator::new(decoding, Validation::new(alg))
            .unwrap()
            .with_audience(&[AUDIENCE]);
        let addr = serve(axum_ws_auth::WsAuthLayer::builder(validator)).await;
        let jwt = sign_with(&claims("alice", 60), &Header::new(alg), &encoding);
        assert!(
            connect(addr, &[("authorization", &format!("Bearer {jwt}"))])
                .await
                .is_ok(),
            "{alg:?}"
        );
        // An HS256 token made with the public key bytes must not pass.
        let forged = sign(&claims("alice", 60));
        assert_eq!(
            connect(addr, &[("authorization", &format!("Bearer {forged}"))])
                .await
                .err()
                .unwrap()
                .status,
            401
        );
    }
}

#[tokio::test]
async fn authorization_check_refusal_is_403_insufficient_scope() {
    let addr = serve(builder().policy(|request: PolicyRequest<Claims>| {
        let admin = request.claims().scope.split(' ').any(|s| s == "admin");
        std::future::ready(if admin {
            Ok(())
        } else {
            Err(PolicyDenial::Forbidden)
        })
    }))
    .await;
    let refused = connect(
        addr,
        &[("authorization", &format!("Bearer {}", token("alice", 60)))],
    )
    .await
    .err()
    .unwrap();
    assert_refused(
        &refused,
        403,
        Some(&format!(
            r#"Bearer realm="{REALM}", error="insufficient_scope""#
        )),
    );
}

#[tokio::test]
async fn revoked_tokens_are_401() {
    let addr = serve(builder().policy(|request: PolicyRequest<Claims>| {
        let mallory = request.claims().sub == "mallory";
        std::future::ready(if mallory {
            Err(PolicyDenial::Revoked)
        } else {
            Ok(())
        })
    }))
    .await;
    assert!(
        connect(
            addr,
            &[("authorization", &format!("Bearer {}", token("alice", 60)))]
        )
        .await
        .is_ok()
    );
    let refused = connect(
        addr,
        &[("authorization", &format!("Bearer {}", token("mallory", 60)))],
    )
    .await
    .err()
    .unwrap();
    assert_refused(&refused, 401, Some(&invalid_token("token revoked")));
}

#[tokio::test]
async fn origin_allow_list_is_403_without_challenge() {
    let addr = serve(builder().allowed_origins(["https://app.example"])).await;
    let auth = format!("Bearer {}", token("alice", 60));
    assert!(
        connect(
            addr,
            &[("authorization", &auth), ("origin", "https://app.example")]
        )
        .await
        .is_ok()
    );
    for origin in [Some("https://evil.example"), None] {
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend(origin.map(|o| ("origin", o)));
        let refused = connect(addr, &headers).await.err().unwrap();
        assert_refused(&refused, 403, None);
    }
    let addr = serve(
        builder()
            .allowed_origins(["https://app.example"])
            .allow_missing_origin(true),
    )
    .await;
    assert!(connect(addr, &[("authorization", &auth)]).await.is_ok());
}

#[tokio::test]
async fn cookie_and_query_sources_are_opt_in_and_last() {
    let addr = serve(
        builder()
            .cookie_source("session_jwt")
            .allowed_origins(["https://app.example"])
            .query_source(true),
    )
    .await;
    let origin = ("origin", "https://app.example");
    let cookie = format!("theme=dark; session_jwt={}", token("carol", 60));
    let mut client = connect(addr, &[origin, ("cookie", &cookie)])
        .await
        .unwrap()
        .client;
    send_text(&mut client, "claims").await;
    assert_eq!(next_json(&mut client).await["sub"], "carol");

    let path = format!("/ws?access_token={}", token("dave", 60));
    let mut client = connect_request(request(addr, &path, &[origin]))
        .await
        .unwrap()
        .client;
    send_text(&mut client, "claims").await;
    assert_eq!(next_json(&mut client).await["sub"], "dave");

    // Cookie beats query.
    let mut client = connect_request(request(addr, &path, &[origin, ("cookie", &cookie)]))
        .await
        .unwrap()
        .client;
    send_text(&mut client, "claims").await;
    assert_eq!(next_json(&mut client).await["sub"], "carol");
}

#[tokio::test]
async fn a_refused_request_never_disturbs_other_connections() {
    let addr = serve(builder()).await;
    let mut client = connect_bearer(addr, &token("alice", 60)).await;
    for _ in 0..20 {
        assert!(
            connect(addr, &[("authorization", "Bearer x.y.z")])
                .await
                .is_err()
        );
    }
    client
        .send(WsMessage::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut client).await,
        WsMessage::Binary(vec![1, 2, 3].into())
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test]
async fn tokens_without_sub_are_refused_unless_the_application_opts_out() {
    let mut anonymous = claims("ignored", 60);
    anonymous.as_object_mut().unwrap().remove("sub");
    let jwt = sign(&anonymous);
    let header = format!("Bearer {jwt}");

    let addr = serve(builder()).await;
    let refused = connect(addr, &[("authorization", &header)])
        .await
        .err()
        .unwrap();
    assert_refused(
        &refused,
        401,
        Some(&invalid_token("missing or malformed required claim")),
    );
    // The same, through the subprotocol source.
    let list = format!("wsauth.v1, bearer.{jwt}");
    let refused = connect(addr, &[("sec-websocket-protocol", &list)])
        .await
        .err()
        .unwrap();
    assert_refused(
        &refused,
        401,
        Some(&invalid_token("missing or malformed required claim")),
    );
    // A `sub` that is not a string is not a subject either.
    let mut numeric = claims("ignored", 60);
    numeric["sub"] = json!(42);
    let refused = connect(
        addr,
        &[("authorization", &format!("Bearer {}", sign(&numeric)))],
    )
    .await
    .err()
    .unwrap();
    assert_refused(
        &refused,
        401,
        Some(&invalid_token("missing or malformed required claim")),
    );

    let addr = serve_value(
        axum_ws_auth::WsAuthLayer::builder(validator())
            .realm(REALM)
            .allow_missing_subject(true),
    )
    .await;
    let mut client = connect(addr, &[("authorization", &header)])
        .await
        .unwrap()
        .client;
    send_text(&mut client, "claims").await;
    let echoed = next_json(&mut client).await;
    assert_eq!(echoed["iss"], ISSUER);
    assert!(echoed.get("sub").is_none());
    // Opting out does not make a subject unwelcome.
    assert!(
        connect(
            addr,
            &[("authorization", &format!("Bearer {}", token("alice", 60)))]
        )
        .await
        .is_ok()
    );
}

/// An application's claims type that declares only what it reads: no `aud`,
/// no `exp`. The registered claims reach the handler typed, whatever shape
/// RFC 7519 allows them.
#[derive(Debug, serde::Deserialize)]
struct ScopeOnly {
    scope: String,
}

async fn registered_reporter(upgrade: AuthUpgrade<ScopeOnly>) -> Response {
    let registered = upgrade.registered().clone();
    let scope = upgrade.claims().scope.clone();
    upgrade.on_upgrade(move |mut socket| async move {
        let report = json!({
            "scope": scope,
            "iss": registered.iss.as_deref(),
            "sub": registered.sub.as_deref(),
            "aud": registered.aud,
            "exp": registered.exp,
            "nbf": registered.nbf,
            "iat": registered.iat,
            "jti": registered.jti,
        });
        let _ = socket.send(report.to_string().into()).await;
        while let Some(Ok(_)) = socket.recv().await {}
    })
}

#[tokio::test]
async fn registered_claims_reach_a_handler_whose_claims_type_omits_them() {
    let layer = WsAuthLayer::<ScopeOnly>::builder(validator())
        .realm(REALM)
        .build()
        .unwrap();
    let addr = serve_router(
        Router::new()
            .route("/ws", any(registered_reporter))
            .route_layer(layer),
    )
    .await;
    let mut claims = claims("alice", 60);
    claims["aud"] = json!(["other-service", AUDIENCE]);
    claims["iat"] = json!(now() - 1);
    claims["jti"] = json!("token-1");
    let mut client = connect_bearer(addr, &sign(&claims)).await;
    let report = match next_app_message(&mut client).await {
        WsMessage::Text(text) => serde_json::from_str::<serde_json::Value>(text.as_str()).unwrap(),
        other => panic!("expected text, got {other:?}"),
    };
    assert_eq!(
        report,
        json!({
            "scope": "chat",
            "iss": ISSUER,
            "sub": "alice",
            "aud": ["other-service", AUDIENCE],
            "exp": claims["exp"],
            "nbf": null,
            "iat": claims["iat"],
            "jti": "token-1",
        })
    );

    // A single-string `aud` is a list of one.
    let mut client = connect_bearer(addr, &token("bob", 60)).await;
    let WsMessage::Text(text) = next_app_message(&mut client).await else {
        panic!("expected text");
    };
    let report: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
    assert_eq!(report["aud"], json!([AUDIENCE]));
    assert_eq!(report["sub"], "bob");
}

#[tokio::test]
async fn a_policy_refusal_answers_in_the_layers_realm_and_the_handler_never_runs() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let upgraded = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&upgraded);
    let room = move |upgrade: AuthUpgrade<Claims>| {
        let counter = Arc::clone(&counter);
        async move {
            upgrade.on_upgrade(move |_socket| async move {
                counter.fetch_add(1, Ordering::SeqCst);
            })
        }
    };
    // A per-room check: only alice may join.
    let policy = |request: PolicyRequest<Claims>| {
        let alice = request.claims().sub == "alice";
        std::future::ready(if alice {
            Ok(())
        } else {
            Err(PolicyDenial::Forbidden)
        })
    };
    let addr = serve_router(
        Router::new()
            .route("/ws", any(room))
            .route_layer(builder().policy(policy).build().unwrap()),
    )
    .await;
    let refused = connect(
        addr,
        &[("authorization", &format!("Bearer {}", token("bob", 60)))],
    )
    .await
    .err()
    .unwrap();
    assert_refused(
        &refused,
        403,
        Some(&format!(
            r#"Bearer realm="{REALM}", error="insufficient_scope""#
        )),
    );
    assert_eq!(refused.body, "insufficient_scope: insufficient scope\n");
    assert_eq!(upgraded.load(Ordering::SeqCst), 0);
    // The same handler upgrades the one it admits.
    connect_bearer(addr, &token("alice", 60)).await;
    for _ in 0..100 {
        if upgraded.load(Ordering::SeqCst) == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("alice was not upgraded");
}

/// Reads the token from `X-Access-Token`, as a gateway might forward it;
/// two of them are an invalid request.
fn x_access_token(
    parts: &http::request::Parts,
) -> Result<Option<String>, axum_ws_auth::token::InvalidRequest> {
    let mut values = parts.headers.get_all("x-access-token").iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => value
            .to_str()
            .map(|token| Some(token.to_owned()))
            .map_err(|_| axum_ws_auth::token::InvalidRequest::Custom),
        _ => Err(axum_ws_auth::token::InvalidRequest::Custom),
    }
}

#[tokio::test]
async fn the_applications_token_location_follows_the_same_rules() {
    let addr = serve(builder().token_from(x_access_token)).await;
    let jwt = token("erin", 60);
    let mut client = connect(addr, &[("x-access-token", &jwt)])
        .await
        .unwrap()
        .client;
    send_text(&mut client, "claims").await;
    assert_eq!(next_json(&mut client).await["sub"], "erin");

    // Absent: 401 without an error code.
    let refused = connect(addr, &[]).await.err().unwrap();
    assert_refused(&refused, 401, Some(&format!(r#"Bearer realm="{REALM}""#)));

    // The extractor's error: 400 invalid_request.
    let refused = connect(addr, &[("x-access-token", &jwt), ("x-access-token", &jwt)])
        .await
        .err()
        .unwrap();
    assert_refused(
        &refused,
        400,
        Some(&invalid_request("malformed token location")),
    );

    // Over the size limit: refused before parsing.
    let oversize = format!("{}.{}.x", "a".repeat(6000), "b".repeat(3000));
    let refused = connect(addr, &[("x-access-token", &oversize)])
        .await
        .err()
        .unwrap();
    assert_refused(&refused, 401, Some(&invalid_token("token too large")));

    // A bad token: 401 invalid_token, and the body never holds it.
    let refused = connect(addr, &[("x-access-token", "x.y.z")])
        .await
        .err()
        .unwrap();
    assert_refused(&refused, 401, Some(&invalid_token("malformed token")));

    // Built-in sources come first: the header's token wins, and the
    // extractor is not asked (its location would be an error here).
    let header = format!("Bearer {}", token("alice", 60));
    let mut client = connect(
        addr,
        &[
            ("authorization", &header),
            ("x-access-token", &jwt),
            ("x-access-token", &jwt),
        ],
    )
    .await
    .unwrap()
    .client;
    send_text(&mut client, "claims").await;
    assert_eq!(next_json(&mut client).await["sub"], "alice");
}

#[tokio::test]
async fn route_layer_keeps_unknown_paths_404_and_plain_routes_untouched() {
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    let get_path = |path: &str| {
        http::Request::builder()
            .uri(path)
            .body(Body::empty())
            .unwrap()
    };
    let sockets = Router::new()
        .route("/ws", any(echo))
        .route_layer(builder().build().unwrap());
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .merge(sockets);

    let response = app.clone().oneshot(get_path("/favicon.ico")).await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.headers().get("www-authenticate").is_none());
    let response = app.clone().oneshot(get_path("/health")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("www-authenticate").is_none());
    // The socket route is still behind the layer.
    let response = app.oneshot(get_path("/ws")).await.unwrap();
    assert_eq!(response.status(), 401);

    // Over a real connection too.
    let addr = serve_router(
        Router::new()
            .route("/health", get(|| async { "ok" }))
            .merge(
                Router::new()
                    .route("/ws", any(echo))
                    .route_layer(builder().build().unwrap()),
            ),
    )
    .await;
    let refused = connect_request(request(addr, "/favicon.ico", &[]))
        .await
        .err()
        .unwrap();
    assert_refused(&refused, 404, None);
    assert!(
        connect_bearer(addr, &token("alice", 60))
            .await
            .close(None)
            .await
            .is_ok()
    );

    // What `layer` would have done: the fallback is behind it, so an
    // unknown path is an authentication failure.
    let wrapped = Router::new()
        .route("/ws", any(echo))
        .layer(builder().build().unwrap());
    let response = wrapped.oneshot(get_path("/favicon.ico")).await.unwrap();
    assert_eq!(response.status(), 401);
}
