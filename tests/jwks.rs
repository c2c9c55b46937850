//! Keys from a pinned HTTPS JWKS on loopback: rotation while sockets are
//! open, rate-limited refresh on unknown `kid`, stale-if-error, and token
//! key hints that are never followed.
#![cfg(feature = "jwks")]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum_server::tls_rustls::RustlsConfig;
use axum_ws_auth::{
    JwtValidator, WsAuthLayer,
    token::{JwksError, JwksSource},
};
use common::*;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::json;

#[derive(Clone, Default)]
struct JwksServer {
    set: Arc<Mutex<JwkSet>>,
    fail: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
}

async fn serve_jwks(State(server): State<JwksServer>, request: Request) -> Response {
    let uri = request.uri().clone();
    server.hits.fetch_add(1, Ordering::SeqCst);
    server.paths.lock().unwrap().push(uri.path().to_owned());
    if server.fail.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let set = server.set.lock().unwrap().clone();
    axum::Json(set).into_response()
}

struct Keys {
    rsa: (EncodingKey, Jwk),
    ec: (EncodingKey, Jwk),
}

fn jwk(public_pem: &[u8], alg: Algorithm, kid: &str) -> Jwk {
    let decoding = match alg {
        Algorithm::RS256 => DecodingKey::from_rsa_pem(public_pem).unwrap(),
        _ => DecodingKey::from_ec_pem(public_pem).unwrap(),
    };
    let mut jwk = Jwk::from_decoding_key(&decoding, Some(alg)).unwrap();
    jwk.common.key_id = Some(kid.into());
    jwk
}

fn keys() -> Keys {
    Keys {
        rsa: (
            EncodingKey::from_rsa_pem(include_bytes!("fixtures/rsa_private.pem")).unwrap(),
            jwk(
                include_bytes!("fixtures/rsa_public.pem"),
                Algorithm::RS256,
                "rsa-1",
            ),
        ),
        ec: (
            EncodingKey::from_ec_pem(include_bytes!("fixtures/ec_private.pem")).unwrap(),
            jwk(
                include_bytes!("fixtures/ec_public.pem"),
                Algorithm::ES256,
                "ec-1",
            ),
        ),
    }
}

fn signed(key: &EncodingKey, alg: Algorithm, kid: &str, sub: &str) -> String {
    signed_for(key, alg, kid, sub, 600)
}

fn signed_for(key: &EncodingKey, alg: Algorithm, kid: &str, sub: &str, ttl: i64) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    sign_with(&claims(sub, ttl), &header, key)
}

/// An HTTPS JWKS server on loopback and a client TLS config trusting it.
async fn start_jwks(
    initial: Vec<Jwk>,
) -> (JwksServer, String, Arc<tokio_rustls::rustls::ClientConfig>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let tls = RustlsConfig::from_pem(
        certified.cert.pem().into_bytes(),
        certified.signing_key.serialize_pem().into_bytes(),
    )
    .await
    .unwrap();
    let server = JwksServer::default();
    server.set.lock().unwrap().keys = initial;
    let app = Router::new()
        .fallback(get(serve_jwks))
        .with_state(server.clone());
    let handle = axum_server::Handle::<std::net::SocketAddr>::new();
    let serving =
        axum_server::bind_rustls("127.0.0.1:0".parse().unwrap(), tls).handle(handle.clone());
    tokio::spawn(serving.serve(app.into_make_service()));
    let addr = handle.listening().await.unwrap();
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let client = tokio_rustls::rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        server,
        format!("https://localhost:{}/.well-known/jwks.json", addr.port()),
        Arc::new(client),
    )
}

async fn source(
    url: &str,
    tls: &Arc<tokio_rustls::rustls::ClientConfig>,
    min_refresh: Duration,
) -> JwksSource {
    JwksSource::builder(url, ISSUER)
        .tls_config(Arc::clone(tls))
        .min_refresh_interval(min_refresh)
        .fetch()
        .await
        .unwrap()
}

async fn serve_with(source: JwksSource) -> std::net::SocketAddr {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.algorithms = vec![Algorithm::RS256, Algorithm::ES256];
    let validator = JwtValidator::jwks(source, validation)
        .unwrap()
        .with_audience(&[AUDIENCE]);
    let layer = WsAuthLayer::<Claims>::builder(validator)
        .realm(REALM)
        .build()
        .unwrap();
    serve_router(Router::new().route("/ws", any(echo)).layer(layer)).await
}

fn renew(token: &str, id: &str) -> String {
    json!({"type": "auth.renew", "token": token, "id": id}).to_string()
}

#[tokio::test]
async fn keys_rotate_while_sockets_are_open() {
    let keys = keys();
    let (server, url, tls) = start_jwks(vec![keys.rsa.1.clone()]).await;
    let addr = serve_with(source(&url, &tls, Duration::from_millis(100)).await).await;

    let mut client = connect_bearer(
        addr,
        &signed(&keys.rsa.0, Algorithm::RS256, "rsa-1", "alice"),
    )
    .await;
    server.set.lock().unwrap().keys = vec![keys.ec.1.clone()];
    // Past the refresh interval that the startup fetch began.
    tokio::time::sleep(Duration::from_millis(150)).await;

    // The new key is unknown at first: refused, and a refresh is scheduled.
    let rotated = signed_for(&keys.ec.0, Algorithm::ES256, "ec-1", "alice", 900);
    let hits_before = server.hits.load(Ordering::SeqCst);
    send_text(&mut client, &renew(&rotated, "1")).await;
    let answer = next_json(&mut client).await;
    assert_eq!(
        answer["error_description"], "unknown signing key",
        "{answer}"
    );
    tokio::time::timeout(Duration::from_secs(5), async {
        while server.hits.load(Ordering::SeqCst) == hits_before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the unknown kid triggers a refresh");
    tokio::time::sleep(Duration::from_millis(150)).await;
    send_text(&mut client, &renew(&rotated, "2")).await;
    let answer = next_json(&mut client).await;
    assert_eq!(answer["type"], "auth.renewed", "{answer}");
    send_text(&mut client, "still open").await;
    assert_eq!(
        next_message(&mut client).await,
        tokio_tungstenite::tungstenite::Message::Text("still open".into())
    );

    // New connections: the new key works, the rotated-out one no longer does.
    assert!(
        connect(addr, &[("authorization", &format!("Bearer {rotated}"))])
            .await
            .is_ok()
    );
    let old = signed(&keys.rsa.0, Algorithm::RS256, "rsa-1", "bob");
    let refused = connect(addr, &[("authorization", &format!("Bearer {old}"))])
        .await
        .err()
        .unwrap();
    assert_eq!(refused.status, 401);
}

#[tokio::test]
async fn unknown_kid_floods_are_rate_limited_and_errors_keep_stale_keys() {
    let keys = keys();
    let (server, url, tls) = start_jwks(vec![keys.rsa.1.clone()]).await;
    let interval = Duration::from_millis(500);
    let source = source(&url, &tls, interval).await;
    let addr = serve_with(source.clone()).await;
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    // The startup fetch counts as the last attempt: wait out the interval.
    tokio::time::sleep(interval + Duration::from_millis(50)).await;

    for n in 0..20 {
        let token = signed(
            &keys.rsa.0,
            Algorithm::RS256,
            &format!("made-up-{n}"),
            "mallory",
        );
        let refused = connect(addr, &[("authorization", &format!("Bearer {token}"))])
            .await
            .err()
            .unwrap();
        assert!(refused.challenge.unwrap().contains("unknown signing key"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        2,
        "one refresh per interval, however many unknown kids"
    );

    server.fail.store(true, Ordering::SeqCst);
    assert!(matches!(source.refresh().await, Err(JwksError::Status(status)) if status == 500));
    assert_eq!(source.key_count(), 1, "stale-if-error");
    let good = signed(&keys.rsa.0, Algorithm::RS256, "rsa-1", "alice");
    assert!(
        connect(addr, &[("authorization", &format!("Bearer {good}"))])
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn key_hints_in_tokens_are_never_followed() {
    let keys = keys();
    let (server, url, tls) = start_jwks(vec![keys.rsa.1.clone()]).await;
    let addr = serve_with(source(&url, &tls, Duration::from_millis(1)).await).await;
    let attacker =
        jsonwebtoken::EncodingKey::from_ec_pem(include_bytes!("fixtures/ec_private.pem")).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("rsa-1".into());
    header.jku = Some(url.replace("jwks.json", "attacker-jwks.json"));
    header.x5u = Some(url.replace("jwks.json", "attacker-cert.pem"));
    let token = sign_with(&claims("alice", 600), &header, &attacker);
    let refused = connect(addr, &[("authorization", &format!("Bearer {token}"))])
        .await
        .err()
        .unwrap();
    assert_eq!(refused.status, 401);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let paths = server.paths.lock().unwrap().clone();
    assert!(
        paths.iter().all(|p| p == "/.well-known/jwks.json"),
        "{paths:?}"
    );
}

#[tokio::test]
async fn only_https_urls_and_asymmetric_algorithms_are_accepted() {
    let (_server, url, tls) = start_jwks(vec![keys().rsa.1]).await;
    let plain = JwksSource::builder(url.replace("https://", "http://"), ISSUER)
        .tls_config(Arc::clone(&tls))
        .fetch()
        .await;
    assert!(matches!(plain, Err(JwksError::Url)));
    let source = source(&url, &tls, Duration::from_secs(1)).await;
    assert!(JwtValidator::jwks(source, Validation::new(Algorithm::HS256)).is_err());
}
