//! Arbitrary upgrade requests through the layer: token sources, subprotocol
//! lists, cookies, queries and tokens. No panic, only the contract's
//! statuses, and never the token in a response.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::response::Response;
use axum_ws_auth::{JwtValidator, WsAuthLayer};
use http::{HeaderName, HeaderValue, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, Service, ServiceExt, service_fn};

const SECRET: &[u8] = b"fuzzing secret of at least 32 bytes!";

fn layer() -> &'static WsAuthLayer<serde_json::Value> {
    static LAYER: OnceLock<WsAuthLayer<serde_json::Value>> = OnceLock::new();
    LAYER.get_or_init(|| {
        WsAuthLayer::builder(JwtValidator::hs256(SECRET).unwrap())
            .cookie_source("jwt")
            .query_source(true)
            .allowed_origins(["https://app.example"])
            .allow_missing_origin(true)
            .build()
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    // Lines: the first is the path and query, the others `name: value`.
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let path = lines.next().unwrap_or("/");
    let mut builder = Request::builder().uri(format!("/ws{}", path.trim()));
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_bytes(value.trim().as_bytes()),
        ) else {
            continue;
        };
        builder = builder.header(name, value);
    }
    let Ok(request) = builder.body(Body::empty()) else {
        return;
    };
    let inner = service_fn(|_request: Request<Body>| async {
        Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
    });
    let mut service = layer().layer(inner);
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let response = runtime
        .block_on(async { service.ready().await.unwrap().call(request).await })
        .unwrap();
    let status = response.status();
    assert!(
        [StatusCode::OK, StatusCode::BAD_REQUEST, StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&status),
        "unexpected status {status}"
    );
    if status != StatusCode::OK {
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        for word in text.split(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == '=' || c == '&') {
            let token = word.strip_prefix("bearer.").unwrap_or(word);
            if token.len() >= 24 && token.matches('.').count() == 2 {
                assert!(!challenge.contains(token), "token echoed in WWW-Authenticate");
            }
        }
    }
});
