//! Micro-benchmarks of the per-request and per-frame work:
//! `cargo bench --bench micro`.

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use axum_ws_auth::JwtValidator;
use axum_ws_auth::protocol::is_control_message;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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

/// `head`, then `piece` repeated, then `open`, padded with `x` so that with
/// `tail` the frame is exactly 1 MiB (the padding ends up inside a string).
fn one_mib(head: &str, piece: &str, open: &str, tail: &str) -> String {
    let size = 1 << 20;
    let mut frame = head.to_owned();
    while frame.len() + piece.len() + open.len() + tail.len() <= size {
        frame.push_str(piece);
    }
    frame.push_str(open);
    frame.push_str(&"x".repeat(size - frame.len() - tail.len()));
    frame.push_str(tail);
    frame
}

/// A 1 MiB application text frame that passes the pre-filter (it contains
/// `auth.`), against what bare axum already pays for it.
///
/// `is_control_message` runs the same streaming pass as the socket driver's
/// classification; for an application frame over the control-size limit the
/// two do the same work. Bare axum's per-frame cost is tungstenite's UTF-8
/// validation of the payload (`str::from_utf8`). The tree the classifier
/// built before (`serde_json::Map`) is shown for comparison.
fn json_1mib(c: &mut Criterion) {
    let chat = one_mib(
        r#"{"type":"chat","room":"general","body":""#,
        r#"see auth.renew in the docs, \u0061 escapes and \"quotes\". "#,
        "",
        r#""}"#,
    );
    let records = one_mib(
        r#"{"type":"batch","items":["#,
        r#"{"id":12345,"user":"user-42","ok":true,"score":0.75,"text":"auth. tokens renew"},"#,
        r#"{"id":0,"text":""#,
        r#""}]}"#,
    );
    let mut group = c.benchmark_group("json_1mib");
    group.throughput(Throughput::Bytes(1 << 20));
    for (name, frame) in [("one string", &chat), ("small records", &records)] {
        assert_eq!(frame.len(), 1 << 20);
        assert!(serde_json::from_str::<serde_json::Value>(frame).is_ok());
        assert!(!is_control_message(frame));
        group.bench_function(format!("{name}/is_control_message"), |b| {
            b.iter(|| is_control_message(black_box(frame)))
        });
        let bytes = frame.as_bytes();
        group.bench_function(format!("{name}/bare: str::from_utf8"), |b| {
            b.iter(|| std::str::from_utf8(black_box(bytes)).is_ok())
        });
        group.bench_function(format!("{name}/before: serde_json::Map"), |b| {
            b.iter(|| {
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(black_box(frame))
                    .is_ok()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, validation, control_detection, json_1mib);
criterion_main!(benches);
