//! The copyable browser module (`examples/browser/wsauth-client.js`) in
//! real headless Chromium: the demo page connects with
//! `["wsauth.v1", "bearer.<jwt>"]`, renews across several expiries without
//! reconnecting, and application messages keep flowing; several tabs share
//! one token fetch per renewal; the page recovers at once after offline and
//! sleep; a refused handshake gives up and `restart()` brings it back; the
//! page renews in place when the server asks for re-authentication.
//!
//! Needs Debian's `chromium` (or `CHROMIUM=/path`), node and npm;
//! playwright-core is installed from `tests/browser/package-lock.json` on
//! first use. On a machine without them these tests are skipped with one line
//! on stderr naming the install command; under `CI=true` they fail instead.

mod common;

#[path = "common/browser.rs"]
mod browser_tools;

use std::path::Path;
use std::process::Command;

use browser_tools::{playwright, tools};
use common::ExampleProcess;

#[test]
fn browser_client_renews_across_expiries_in_chromium() {
    const TEST: &str = "browser_client::browser_client_renews_across_expiries_in_chromium";
    // Four-second tokens: the page renews every ~2 s, on the server's notice
    // and on its own timer, through the single-flight fetch.
    let Some(result) = run_e2e(
        TEST,
        &[
            ("WS_AUTH_TOKEN_TTL_SECS", "4"),
            ("WS_AUTH_NOTIFY_BEFORE_SECS", "2"),
            ("WS_AUTH_LEEWAY_SECS", "0"),
        ],
        "browser-client.png",
        "3",
        None,
    ) else {
        return;
    };
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
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/browser-client.png")
            .exists()
    );

    // The other scenarios assert in e2e.mjs; their outcome, in short:
    let tabs = &result["tabs"];
    assert_eq!(tabs["connectFetches"], 1, "three tabs, one fetch: {tabs}");
    let renewed = tabs["renewed"].as_array().unwrap();
    let most = renewed
        .iter()
        .filter_map(serde_json::Value::as_u64)
        .max()
        .unwrap();
    assert!(
        tabs["renewalFetches"].as_u64().unwrap() <= most + 1,
        "one fetch per renewal round, not one per tab: {tabs}"
    );
    // Back online, both reconnected before their 5 s offline fallback
    // could fire, on the page's paused clock (e2e.mjs throws otherwise).
    for scenario in ["offline", "sleep"] {
        let page_ms = result[scenario]["pageMs"].as_u64().unwrap();
        assert!(page_ms < 5_000, "{scenario}: {result}");
    }
    assert_eq!(result["restart"]["closed"]["gaveUp"], true, "{result}");
    assert_eq!(result["restart"]["state"], "open", "{result}");

    // Never a token in what the pages showed or reported.
    let text = result.to_string();
    for marker in ["eyJ", "bearer."] {
        assert!(!text.contains(marker), "a token reached the page: {marker}");
    }
}

/// The server asks for re-authentication (`Connections::reauthenticate`,
/// through the example's admin route): the page answers the early
/// `auth.expiring` by renewing over the same socket, and is still open past
/// the deadline the request set.
#[test]
fn browser_client_renews_in_place_when_the_server_asks_for_reauthentication() {
    const TEST: &str =
        "browser_client::browser_client_renews_in_place_when_the_server_asks_for_reauthentication";
    // Two-minute tokens: no renewal of the page's own during the scenario.
    let Some(result) = run_e2e(
        TEST,
        &[
            ("WS_AUTH_TOKEN_TTL_SECS", "120"),
            ("WS_AUTH_NOTIFY_BEFORE_SECS", "10"),
            ("WS_AUTH_LEEWAY_SECS", "0"),
            ("WS_AUTH_DEMO_ADMIN", "1"),
        ],
        "browser-client-reauth.png",
        "0",
        Some("reauth"),
    ) else {
        return;
    };
    let reauth = &result["reauth"];
    assert_eq!(reauth["asked"], 1, "{result}");
    assert_eq!(reauth["connects"], 1, "no reconnect: {result}");
    assert!(reauth["renewed"].as_u64().unwrap() >= 1, "{result}");
    assert_eq!(reauth["state"], "open", "{result}");
    assert_eq!(result["errors"], serde_json::json!([]), "{result}");
    assert!(
        !result.to_string().contains("eyJ"),
        "a token reached the page"
    );
}

/// Runs `tests/browser/e2e.mjs` in Chromium against the browser example
/// started with `env`; its one JSON line, or None when the tools are
/// missing (after the loud skip).
fn run_e2e(
    test: &str,
    env: &[(&str, &str)],
    screenshot: &str,
    renewals: &str,
    only: Option<&str>,
) -> Option<serde_json::Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let driver = root.join("tests/browser");
    let (node, chromium) = tools(test, true)?;
    if !playwright(test, &driver) {
        return None;
    }
    let mut server_env = vec![("WS_AUTH_ADDR", "127.0.0.1:0")];
    server_env.extend_from_slice(env);
    let mut server = ExampleProcess::start("browser", &server_env);
    let url = server.line_after("listening on ");
    let screenshot = root.join("target").join(screenshot);
    let mut command = Command::new(node);
    command
        .arg(driver.join("e2e.mjs"))
        .args([url.as_str(), screenshot.to_str().unwrap(), renewals])
        .env("CHROMIUM", &chromium);
    if let Some(only) = only {
        command.env("E2E_ONLY", only);
    }
    let output = command.output().expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "browser run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_str(stdout.trim()).expect("one JSON line"))
}

/// The module's state machine (tokens, timeouts, backoff, timers, clock skew,
/// jitter, tabs, wake and offline, giving up and restart) with a scripted
/// WebSocket and fake timers under node's test runner
/// (`tests/browser/client.test.mjs`, and the review's regression tests in
/// `tests/browser/review.test.mjs`).
#[test]
fn browser_client_state_machine() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some((node, _)) = tools("browser_client::browser_client_state_machine", false) else {
        return;
    };
    let output = Command::new(node)
        .arg("--test")
        .arg(root.join("tests/browser/client.test.mjs"))
        .arg(root.join("tests/browser/review.test.mjs"))
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
