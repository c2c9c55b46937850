//! Chromium, node and playwright-core for the browser tests, or one loud
//! `SKIPPED` line when they are missing (a failure under `CI=true`).
//! Included with `#[path = "common/browser.rs"] mod browser_tools;`.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const INSTALL: &str = "install with: apt-get install chromium nodejs npm";

use crate::common::on_path;

/// Skips a browser test (one loud line), or fails it under CI.
pub fn skip(test: &str, why: &str) {
    crate::common::skip_without(test, why, INSTALL);
}

/// node, and the Chromium to drive when `chromium` is true; None (after
/// [`skip`]) when one is missing.
pub fn tools(test: &str, chromium: bool) -> Option<(PathBuf, PathBuf)> {
    let browser =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    if chromium && !browser.is_file() {
        skip(
            test,
            &format!("chromium not found at {} (set CHROMIUM)", browser.display()),
        );
        return None;
    }
    let Some(node) = on_path("node") else {
        skip(test, "node not found on PATH");
        return None;
    };
    Some((node, browser))
}

/// playwright-core from the lockfile; false (after [`skip`]) without npm.
pub fn playwright(test: &str, driver: &Path) -> bool {
    if driver.join("node_modules/playwright-core").is_dir() {
        return true;
    }
    let Some(npm) = on_path("npm") else {
        skip(
            test,
            "npm not found on PATH (needed once for tests/browser/node_modules)",
        );
        return false;
    };
    // No browser download: playwright-core drives the system's Chromium.
    let installed = Command::new(npm)
        .args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(driver)
        .status()
        .map(|status| status.success());
    assert!(
        matches!(installed, Ok(true)),
        "npm ci --prefix tests/browser failed: {installed:?}"
    );
    true
}
