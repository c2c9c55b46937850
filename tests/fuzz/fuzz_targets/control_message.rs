//! The control-message detector and the wire types on arbitrary text: no
//! panic, and the detector agrees with a plain reading of the contract.
#![no_main]

use axum_ws_auth::protocol::{ClientMessage, ServerMessage, is_control_message};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let detected = is_control_message(text);
    let by_definition = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => object
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|kind| kind.starts_with("auth.")),
        _ => false,
    };
    assert_eq!(detected, by_definition, "detector disagrees on {text:?}");
    let _ = serde_json::from_str::<ClientMessage>(text);
    let _ = serde_json::from_str::<ServerMessage>(text);
});
