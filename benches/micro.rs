//! Micro-benchmarks of the per-request and per-frame work:
//! `cargo bench --bench micro`.

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use axum_ws_auth::JwtValidator;
use axum_ws_auth::protocol::is_control_message;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Header, Validation};
use serde::Deserialize;
use serde_json::json;

#[path = "support/keys.rs"]
mod keys;

#[derive(Deserialize)]
#[allow(dead_code)]
struct Claims {
    sub: String,
    exp: u64,
    scope: String,
}

fn claims() -> serde_json::Value {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    json!({"sub": "user-1234", "exp": exp, "aud": "bench", "scope": "chat read write"})
}

fn validation(c: &mut Criterion) {
    let secret = b"benchmark secret of at least 32 bytes";
    let mut group = c.benchmark_group("validate");
    for (name, alg, decoding, encoding) in keys::signing_keys(secret) {
        let validator = JwtValidator::new(decoding, Validation::new(alg))
            .unwrap()
            .with_audience(&["bench"]);
        let token = jsonwebtoken::encode(&Header::new(alg), &claims(), &encoding).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| validator.validate::<Claims>(black_box(&token)).unwrap())
        });
    }
    group.finish();
}

fn control_detection(c: &mut Criterion) {
    let small = "x".repeat(64);
    let chat = json!({"type": "chat", "room": "general", "text": "y".repeat(4000)}).to_string();
    let renew = json!({"type": "auth.renew", "token": "a".repeat(300), "id": "r1"}).to_string();
    let mut group = c.benchmark_group("is_control_message");
    for (name, text) in [
        ("app text 64 B", &small),
        ("app JSON 4 KiB", &chat),
        ("auth.renew", &renew),
    ] {
        group.bench_function(name, |b| b.iter(|| is_control_message(black_box(text))));
    }
    group.finish();
}

criterion_group!(benches, validation, control_detection);
criterion_main!(benches);
