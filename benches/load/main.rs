//! Load harness: the authenticated socket against bare axum WebSockets, in
//! the same run, on this machine.
//!
//! ```text
//! taskset -c 1 cargo bench --bench load -- all   # the one-server scenarios below
//! cargo bench --bench load -- throughput       # echo msgs/s, 100 connections, 64 B and 4 KiB
//! cargo bench --bench load -- handshake        # upgrades/s: bare vs HS256/RS256/ES256/EdDSA
//! cargo bench --bench load -- idle-memory      # server RSS per idle connection, 10k connections
//! cargo bench --bench load -- renewal-storm    # 10k renewals within a second
//! cargo bench --bench load -- max-connections  # what one server process holds (fd limit)
//! cargo bench --bench load -- leak             # 100k connect/close cycles
//! cargo bench --bench load -- scale            # 100k idle over several server processes
//! cargo bench --bench load -- herd             # 100k same-exp tokens: notice jitter off/on, PNG
//! cargo bench --bench load -- abuse            # 10k connections at the control-frame limits
//! cargo bench --bench load --features client -- storm  # servers restarted under 50k Rust clients
//! cargo bench --bench load --features client -- client-herd  # 50k Rust clients' renewal jitter off/on, PNG
//! ```
//!
//! `LOAD_SECS` sets the length of the timed runs (default 5);
//! `LOAD_CONNECTIONS` the size of `scale`, `herd`, `abuse`, `storm` and
//! `client-herd`. Servers run
//! as child processes (this binary with `serve`), so their memory can be
//! read apart from the clients'; the fleet scenarios also run their clients
//! in worker processes (`worker <role>`), see `fleet.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

mod client;
mod client_herd;
mod fleet;
#[path = "../support/keys.rs"]
mod keys;
mod lateness;
mod plot;
mod records;
mod scale;
mod server;
mod single;
mod stats;
mod storm;
mod worker;

const SECRET: &[u8] = b"load harness secret, at least 32 bytes";
const AUDIENCE: &str = "load";
/// A read buffer sized for small messages, against axum's 128 KiB default.
const SMALL_READ_BUFFER: usize = 4 * 1024;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Bare,
    Wrapped,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Bare => "bare",
            Mode::Wrapped => "wrapped",
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(ttl: u64) -> Value {
    claims_until(now() + ttl)
}

fn claims_until(exp: u64) -> Value {
    json!({"sub": "load", "exp": exp, "aud": AUDIENCE})
}

fn hs256_token(ttl: u64) -> String {
    hs256_token_until(now() + ttl)
}

fn hs256_token_until(exp: u64) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &claims_until(exp),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

/// `name` from the environment, parsed, or `default` when unset or
/// unparsable: how every scenario, server child and worker takes its knobs.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn run_secs() -> Duration {
    Duration::from_secs(env_or("LOAD_SECS", 5))
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    match args.first().map(String::as_str) {
        Some("serve") => {
            let mode = if args.get(1).map(String::as_str) == Some("bare") {
                Mode::Bare
            } else {
                Mode::Wrapped
            };
            let read_buffer = args.get(2).and_then(|s| s.parse().ok());
            let alg = args.get(3).cloned().unwrap_or_else(|| "HS256".into());
            return server::serve_child(mode, read_buffer, alg);
        }
        Some("worker") => return worker::worker_main(args.get(1).map_or("", String::as_str)),
        _ => {}
    }
    let scenario = args.first().cloned().unwrap_or_else(|| "all".into());
    println!(
        "# axum-ws-auth load harness ({} cores, LOAD_SECS={})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        run_secs().as_secs()
    );
    // The fleet scenarios drive processes and need no runtime here.
    match scenario.as_str() {
        "scale" => return scale::idle_fleet(),
        "herd" => return scale::herd_fleet(),
        "abuse" => return scale::abuse(),
        "storm" => return storm::storm(),
        "client-herd" => return client_herd::client_herd(),
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let all = scenario == "all";
        if all || scenario == "throughput" {
            single::throughput().await;
        }
        if all || scenario == "handshake" {
            single::handshake().await;
        }
        if all || scenario == "idle-memory" {
            single::idle_memory().await;
        }
        if all || scenario == "renewal-storm" {
            single::renewal_storm().await;
        }
        if all || scenario == "max-connections" {
            single::max_connections().await;
        }
        if all || scenario == "leak" {
            single::leak().await;
        }
    });
}
