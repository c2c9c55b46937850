//! The copyable browser module (`examples/browser/wsauth-client.js`) in
//! real headless Chromium: the demo page connects with
//! `["wsauth.v1", "bearer.<jwt>"]`, renews across several expiries without
//! reconnecting, and application messages keep flowing.
//!
//! Needs Debian's `chromium` (or `CHROMIUM=/path`) and node; playwright-core
//! is installed from `tests/browser/package-lock.json` on first use.

mod common;

use std::path::Path;
use std::process::Command;

use common::ExampleProcess;

#[test]
fn browser_client_renews_across_expiries_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let driver = root.join("tests/browser");
    if !driver.join("node_modules/playwright-core").is_dir() {
        // Installed from the lockfile on first use (no browser download:
        // playwright-core drives the system's Chromium).
        let installed = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&driver)
            .status()
            .expect("npm is installed");
        assert!(installed.success(), "npm ci --prefix tests/browser failed");
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: `apt-get install chromium` or set CHROMIUM (bash .ci/run installs it)"
    );

    // Four-second tokens: the page renews every ~2 s, on the server's notice
    // and on its own timer, through the single-flight fetch.
    let mut server = ExampleProcess::start(
        "browser",
        &[
            ("WS_AUTH_ADDR", "127.0.0.1:0"),
            ("WS_AUTH_TOKEN_TTL_SECS", "4"),
            ("WS_AUTH_NOTIFY_BEFORE_SECS", "2"),
            ("WS_AUTH_LEEWAY_SECS", "0"),
        ],
    );
    let url = server.line_after("listening on ");
    let screenshot = root.join("target/browser-client.png");
    let output = Command::new("node")
        .arg(driver.join("e2e.mjs"))
        .args([url.as_str(), screenshot.to_str().unwrap(), "3"])
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "browser run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(result["state"], "open", "{result}");
    assert_eq!(result["protocol"], "wsauth.v1", "{result}");
    assert_eq!(
        result["connects"], 1,
        "renewal must not reconnect: {result}"
    );
    assert!(result["renewals"].as_u64().unwrap() >= 3, "{result}");
    assert!(result["echoes"].as_u64().unwrap() > 10, "{result}");
    assert_eq!(result["errors"], serde_json::json!([]), "{result}");
    assert!(
        !result["log"].as_str().unwrap().contains("eyJ"),
        "a token reached the page log"
    );
    assert!(screenshot.exists());
}

/// The module's reconnect, stop and single-flight logic with a scripted
/// WebSocket under node's test runner (`tests/browser/client.test.mjs`).
#[test]
fn browser_client_state_machine() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("node")
        .arg("--test")
        .arg(root.join("tests/browser/client.test.mjs"))
        .output()
        .expect("node is installed");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("# fail 0"), "{report}");
    assert!(!report.contains("# pass 0"), "{report}");
}
