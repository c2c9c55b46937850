//! Load harness: the authenticated socket against bare axum WebSockets, in
//! the same run, on this machine.
//!
//! ```text
//! taskset -c 1 cargo bench --bench load -- all   # every scenario below
//! cargo bench --bench load -- throughput   # echo msgs/s, 100 connections, 64 B and 4 KiB
//! cargo bench --bench load -- handshake    # upgrades/s: bare vs HS256/RS256/ES256/EdDSA
//! cargo bench --bench load -- idle-memory  # server RSS per idle connection, 10k connections
//! cargo bench --bench load -- renewal-storm
//! cargo bench --bench load -- leak         # 100k connect/close cycles
//! cargo bench --bench load -- herd         # 5k same-exp tokens: notice jitter off/on
//! cargo bench --bench load -- max-connections  # what one server process holds (fd limit)
//! ```
//!
//! `LOAD_SECS` sets the length of the timed runs (default 5). Scenarios
//! with 10k connections run the server as a child process (this binary with
//! `serve`), so its memory can be read apart from the clients'.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::any;
use axum_ws_auth::{AuthUpgrade, AuthWebSocket, Connections, JwtValidator, WsAuthLayer};
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{EncodingKey, Header, Validation};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[path = "support/keys.rs"]
mod keys;

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

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
    json!({"sub": "load", "exp": now() + ttl, "aud": AUDIENCE})
}

fn hs256_token(ttl: u64) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &claims(ttl),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

// ---------------------------------------------------------------- servers

async fn bare_echo(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        if matches!(message, Message::Close(_)) || socket.send(message).await.is_err() {
            break;
        }
    }
}

/// What a typical application's claims look like; a `serde_json::Value`
/// would cost several hundred bytes more per connection.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Claims {
    sub: String,
    exp: u64,
}

async fn wrapped_echo(mut socket: AuthWebSocket<Claims>) {
    while let Some(Ok(message)) = socket.recv().await {
        if matches!(message, Message::Close(_)) || socket.send(message).await.is_err() {
            break;
        }
    }
}

fn bare_router(read_buffer: Option<usize>) -> Router {
    Router::new().route(
        "/ws",
        any(move |ws: WebSocketUpgrade| async move {
            let ws = match read_buffer {
                Some(size) => ws.read_buffer_size(size),
                None => ws,
            };
            ws.on_upgrade(bare_echo)
        }),
    )
}

fn wrapped_router(validator: JwtValidator, read_buffer: Option<usize>) -> (Router, Connections) {
    // The herd scenario sets the notice timing of its server child.
    let millis = |name: &str, default: u64| {
        Duration::from_millis(
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default),
        )
    };
    let layer = WsAuthLayer::<Claims>::builder(validator.with_audience(&[AUDIENCE]))
        .renew_limit(1000)
        .notify_before(millis("LOAD_NOTIFY_BEFORE_MS", 30_000))
        .notice_jitter(millis("LOAD_NOTICE_JITTER_MS", 0))
        .leeway(Duration::from_secs(
            millis("LOAD_LEEWAY_MS", 5_000).as_secs(),
        ))
        .build()
        .unwrap();
    let connections = layer.connections();
    let router = Router::new()
        .route(
            "/ws",
            any(move |upgrade: AuthUpgrade<Claims>| async move {
                let upgrade = match read_buffer {
                    Some(size) => upgrade.map_upgrade(|ws| ws.read_buffer_size(size)),
                    None => upgrade,
                };
                let response: Response = upgrade.on_upgrade(wrapped_echo);
                response
            }),
        )
        .route_layer(layer);
    (router, connections)
}

fn router(mode: Mode, read_buffer: Option<usize>, alg: &str) -> (Router, Option<Connections>) {
    match mode {
        Mode::Bare => (bare_router(read_buffer), None),
        Mode::Wrapped => {
            let (_, algorithm, decoding, _) = keys::signing_keys(SECRET)
                .into_iter()
                .find(|(name, ..)| *name == alg)
                .expect("a known algorithm");
            let validator = JwtValidator::new(decoding, Validation::new(algorithm)).unwrap();
            let (router, connections) = wrapped_router(validator, read_buffer);
            (router, Some(connections))
        }
    }
}

async fn serve_in_process(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The child-process server: prints `ready <addr>`, answers `stats` on
/// stdin with `rss_kib live tasks`, exits when stdin closes.
fn serve_child(mode: Mode, read_buffer: Option<usize>, alg: String) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (router, connections) = router(mode, read_buffer, &alg);
        let addr = serve_in_process(router).await;
        println!("ready {addr}");
        let mut lines = BufReader::new(std::io::stdin()).lines();
        loop {
            let line = tokio::task::block_in_place(|| lines.next());
            match line {
                Some(Ok(command)) if command == "stats" => {
                    let live = connections.as_ref().map_or(0, Connections::count);
                    let tasks = tokio::runtime::Handle::current()
                        .metrics()
                        .num_alive_tasks();
                    println!("{} {live} {tasks}", rss_kib());
                }
                Some(Ok(_)) => {}
                _ => break,
            }
        }
    });
}

struct ChildServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl ChildServer {
    fn start(mode: Mode, read_buffer: Option<usize>) -> Self {
        Self::start_with(mode, read_buffer, "HS256")
    }

    fn start_with(mode: Mode, read_buffer: Option<usize>, alg: &str) -> Self {
        Self::spawn(mode, read_buffer, alg, &[])
    }

    fn start_env(mode: Mode, read_buffer: Option<usize>, env: &[(&str, String)]) -> Self {
        Self::spawn(mode, read_buffer, "HS256", env)
    }

    fn spawn(mode: Mode, read_buffer: Option<usize>, alg: &str, env: &[(&str, String)]) -> Self {
        // Pinned to core 0 (run the harness itself under `taskset -c 1`), so
        // the server does not compete with the clients for a core.
        let mut command = Command::new("taskset");
        command
            .args(["-c", "0"])
            .arg(std::env::current_exe().unwrap());
        command.args(["serve", mode.name()]);
        command.arg(read_buffer.map_or("-".to_owned(), |size| size.to_string()));
        command.arg(alg);
        command.envs(env.iter().map(|(name, value)| (name, value)));
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("ready ").unwrap().parse().unwrap();
        Self {
            child,
            stdin,
            stdout,
            addr,
        }
    }

    /// (RSS KiB, live connections, alive tasks) of the server process.
    fn stats(&mut self) -> (u64, u64, u64) {
        writeln!(self.stdin, "stats").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let numbers: Vec<u64> = line
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        (numbers[0], numbers[1], numbers[2])
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- clients

async fn connect(addr: SocketAddr, token: &str) -> Client {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    for attempt in 0.. {
        match tokio_tungstenite::connect_async(request.clone()).await {
            Ok((client, _)) => return client,
            Err(error) if attempt < 20 => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("connect failed: {error}"),
        }
    }
    unreachable!()
}

async fn connect_many(addr: SocketAddr, token: &str, count: usize) -> Vec<Client> {
    let mut clients = Vec::with_capacity(count);
    for batch in (0..count).collect::<Vec<_>>().chunks(250) {
        let connecting: Vec<_> = batch.iter().map(|_| connect(addr, token)).collect();
        clients.extend(futures_util::future::join_all(connecting).await);
    }
    clients
}

/// Echo round trips per second over `connections` ping-pong connections.
async fn echo_rate(addr: SocketAddr, connections: usize, size: usize, run: Duration) -> f64 {
    let token = hs256_token(3600);
    let clients = connect_many(addr, &token, connections).await;
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + run;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let count = count.clone();
            tokio::spawn(async move {
                let payload = WsMessage::Binary(vec![0x5a; size].into());
                while Instant::now() < deadline {
                    client.send(payload.clone()).await.unwrap();
                    match client.next().await {
                        Some(Ok(WsMessage::Binary(_))) => count.fetch_add(1, Ordering::Relaxed),
                        other => panic!("unexpected {other:?}"),
                    };
                }
                let _ = client.close(None).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Upgrades per second with `concurrency` loops of connect + close.
async fn handshake_rate(addr: SocketAddr, token: &str, concurrency: usize, run: Duration) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + run;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (count, token) = (count.clone(), token.to_owned());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let mut client = connect(addr, &token).await;
                    count.fetch_add(1, Ordering::Relaxed);
                    let _ = client.close(None).await;
                    while let Some(Ok(_)) = client.next().await {}
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

// -------------------------------------------------------------- scenarios

fn run_secs() -> Duration {
    Duration::from_secs(
        std::env::var("LOAD_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    )
}

async fn throughput() {
    const ROUNDS: usize = 6;
    println!(
        "\n## Echo throughput, 100 connections (round trips/s; median of {ROUNDS} interleaved rounds; server process on core 0)\n"
    );
    println!(
        "| frame | bare | wrapped | ratio (median of per-round ratios) | spread (min–max) |\n| --- | --- | --- | --- | --- |"
    );
    for size in [64, 4096] {
        let (mut bare_rates, mut wrapped_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            // Alternate which goes first, so warm-up and drift favour neither.
            let order = if round.is_multiple_of(2) {
                [Mode::Bare, Mode::Wrapped]
            } else {
                [Mode::Wrapped, Mode::Bare]
            };
            let mut rates = [0.0; 2];
            for mode in order {
                let server = ChildServer::start(mode, None);
                let rate = echo_rate(server.addr, 100, size, run_secs()).await;
                rates[usize::from(mode == Mode::Wrapped)] = rate;
            }
            bare_rates.push(rates[0]);
            wrapped_rates.push(rates[1]);
            ratios.push(rates[1] / rates[0]);
        }
        let spread = spread(&ratios);
        println!(
            "| {size} B | {:.0} | {:.0} | {:.3} | {:.3}–{:.3} |",
            median(&mut bare_rates),
            median(&mut wrapped_rates),
            median(&mut ratios),
            spread.0,
            spread.1
        );
    }
}

/// The smallest and largest of `values`.
fn spread(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| {
            (low.min(*value), high.max(*value))
        })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

async fn handshake() {
    println!(
        "\n## Handshake rate, 16 concurrent connect+close loops (upgrades/s; server process on core 0)\n"
    );
    println!("| variant | upgrades/s | ratio to bare |\n| --- | --- | --- |");
    let bare = ChildServer::start(Mode::Bare, None);
    let bare_rate = handshake_rate(bare.addr, "unused", 16, run_secs()).await;
    drop(bare);
    println!("| bare axum | {bare_rate:.0} | 1.000 |");
    for (name, alg, _, encoding) in keys::signing_keys(SECRET) {
        let server = ChildServer::start_with(Mode::Wrapped, None, name);
        let token = jsonwebtoken::encode(&Header::new(alg), &claims(3600), &encoding).unwrap();
        let rate = handshake_rate(server.addr, &token, 16, run_secs()).await;
        println!("| {name} | {rate:.0} | {:.3} |", rate / bare_rate);
    }
}

async fn idle_memory() {
    const CONNECTIONS: usize = 10_000;
    println!("\n## Server memory per idle connection, {CONNECTIONS} connections (KiB)\n");
    println!(
        "| read buffer | bare | wrapped | overhead per connection |\n| --- | --- | --- | --- |"
    );
    let token = hs256_token(3600);
    for read_buffer in [None, Some(SMALL_READ_BUFFER)] {
        let mut per_connection = Vec::new();
        for mode in [Mode::Bare, Mode::Wrapped] {
            let mut server = ChildServer::start(mode, read_buffer);
            let (before, _, _) = server.stats();
            let clients = connect_many(server.addr, &token, CONNECTIONS).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (after, _, _) = server.stats();
            per_connection.push((after - before) as f64 / CONNECTIONS as f64);
            drop(clients);
        }
        let label = read_buffer.map_or("axum default (128 KiB)".to_owned(), |b| {
            format!("{} KiB", b / 1024)
        });
        println!(
            "| {label} | {:.2} | {:.2} | {:.2} KiB |",
            per_connection[0],
            per_connection[1],
            per_connection[1] - per_connection[0]
        );
    }
}

async fn renewal_storm() {
    const CONNECTIONS: usize = 10_000;
    const PROBES: usize = 20;
    println!("\n## Renewal storm: {CONNECTIONS} connections renew within 1 s\n");
    let mut server = ChildServer::start(Mode::Wrapped, Some(SMALL_READ_BUFFER));
    let addr = server.addr;
    let clients = connect_many(addr, &hs256_token(3600), CONNECTIONS).await;
    let probes = connect_many(addr, &hs256_token(3600), PROBES).await;

    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let probe_tasks: Vec<_> = probes
        .into_iter()
        .map(|mut probe| {
            let measuring = measuring.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while measuring.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    probe
                        .send(WsMessage::Binary(vec![1; 64].into()))
                        .await
                        .unwrap();
                    probe.next().await.unwrap().unwrap();
                    samples.push((sent, sent.elapsed()));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                samples
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(2)).await;
    let storm_start = Instant::now();
    let renewal = json!({"type": "auth.renew", "token": hs256_token(7200), "id": "s"}).to_string();
    let spread = Duration::from_secs(1);
    let renewing: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(n, mut client)| {
            let renewal = renewal.clone();
            let at = storm_start + spread.mul_f64(n as f64 / CONNECTIONS as f64);
            tokio::spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                client.send(WsMessage::Text(renewal.into())).await.unwrap();
                let answer = client.next().await.unwrap().unwrap();
                let renewed = answer.to_text().unwrap().contains("auth.renewed");
                (renewed, client)
            })
        })
        .collect();
    let mut renewed = 0;
    let mut keep = Vec::new();
    for task in renewing {
        let (ok, client) = task.await.unwrap();
        renewed += usize::from(ok);
        keep.push(client);
    }
    let storm = storm_start.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(false, Ordering::Relaxed);
    let storm_end = storm_start + storm;
    let (mut baseline, mut during) = (Vec::new(), Vec::new());
    for task in probe_tasks {
        for (sent, latency) in task.await.unwrap() {
            if sent < storm_start {
                baseline.push(latency);
            } else if sent <= storm_end {
                during.push(latency);
            }
        }
    }
    baseline.sort();
    during.sort();
    let (rss, live, _) = server.stats();
    println!("| measure | value |\n| --- | --- |");
    println!("| renewals accepted | {renewed} / {CONNECTIONS} |");
    println!(
        "| storm duration (last auth.renewed) | {:.0} ms |",
        storm.as_secs_f64() * 1000.0
    );
    println!(
        "| probe p50 / p99 before | {:?} / {:?} |",
        percentile(&baseline, 0.5),
        percentile(&baseline, 0.99)
    );
    println!(
        "| probe p50 / p99 during | {:?} / {:?} |",
        percentile(&during, 0.5),
        percentile(&during, 0.99)
    );
    println!(
        "| server RSS, live connections | {} MiB, {live} |",
        rss / 1024
    );
    drop(keep);
}

/// As many idle connections as one server process holds under this
/// machine's descriptor limit (20 000 per process, not raisable), bare and
/// wrapped: the count, and memory per connection at that count.
async fn max_connections() {
    const TARGET: usize = 19_990;
    println!("\n## One server process: up to {TARGET} idle connections, 4 KiB read buffer\n");
    println!(
        "| variant | connections held | server RSS | per connection |\n| --- | --- | --- | --- |"
    );
    let token = hs256_token(3600);
    for mode in [Mode::Bare, Mode::Wrapped] {
        let mut server = ChildServer::start(mode, Some(SMALL_READ_BUFFER));
        let (before, _, _) = server.stats();
        let mut clients = Vec::with_capacity(TARGET);
        while clients.len() < TARGET {
            let batch = (TARGET - clients.len()).min(500);
            let connecting: Vec<_> = (0..batch)
                .map(|_| try_connect(server.addr, &token))
                .collect();
            let results = futures_util::future::join_all(connecting).await;
            let failed = results.iter().any(Option::is_none);
            clients.extend(results.into_iter().flatten());
            if failed {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (after, live, _) = server.stats();
        println!(
            "| {} | {} (registry: {live}) | {} MiB | {:.2} KiB |",
            mode.name(),
            clients.len(),
            after / 1024,
            (after - before) as f64 / clients.len() as f64
        );
        drop(clients);
    }
}

async fn try_connect(addr: SocketAddr, token: &str) -> Option<Client> {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(request)
        .await
        .ok()
        .map(|(client, _)| client)
}

/// Tokens minted in the same second, through one notice-renewal round and
/// one expiry, with the server's notice jitter off and on.
async fn herd() {
    const CONNECTIONS: usize = 5_000;
    const NOTIFY_BEFORE_MS: u64 = 5_000;
    println!(
        "\n## Herd: {CONNECTIONS} connections whose tokens share one exp; notify_before 5 s, leeway 0\n"
    );
    println!(
        "| notice jitter | renewal requests: peak 100 ms / mean | spread of requests | renewed | expiry close lateness p50 / p99 | all closed (last close after exp) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for jitter_ms in [0u64, 10_000] {
        let server = ChildServer::start_env(
            Mode::Wrapped,
            Some(SMALL_READ_BUFFER),
            &[
                ("LOAD_NOTIFY_BEFORE_MS", NOTIFY_BEFORE_MS.to_string()),
                ("LOAD_NOTICE_JITTER_MS", jitter_ms.to_string()),
                ("LOAD_LEEWAY_MS", "0".into()),
            ],
        );
        let first_exp = now() + 20 + jitter_ms / 1000;
        let second_exp = first_exp + 20 + jitter_ms / 1000;
        let token = jsonwebtoken::encode(
            &Header::default(),
            &json!({"sub": "herd", "exp": first_exp, "aud": AUDIENCE}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let renewal = json!({"type": "auth.renew", "id": "h", "token": jsonwebtoken::encode(
            &Header::default(),
            &json!({"sub": "herd", "exp": second_exp, "aud": AUDIENCE}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()})
        .to_string();
        let clients = connect_many(server.addr, &token, CONNECTIONS).await;
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|mut client| {
                let renewal = renewal.clone();
                tokio::spawn(async move {
                    // The moment this client asks its token endpoint: the notice.
                    let mut asked = None;
                    let mut renewed = false;
                    while let Some(Ok(message)) = client.next().await {
                        match message {
                            WsMessage::Text(text)
                                if asked.is_none() && text.as_str().contains("auth.expiring") =>
                            {
                                asked = Some(SystemTime::now());
                                client
                                    .send(WsMessage::Text(renewal.clone().into()))
                                    .await
                                    .unwrap();
                            }
                            WsMessage::Text(text) if text.as_str().contains("auth.renewed") => {
                                renewed = true;
                            }
                            WsMessage::Close(frame) => {
                                let code = frame.map_or(0, |f| u16::from(f.code));
                                return (asked, renewed, code, SystemTime::now());
                            }
                            _ => {}
                        }
                    }
                    (asked, renewed, 0, SystemTime::now())
                })
            })
            .collect();
        let mut asked = Vec::new();
        let mut lateness = Vec::new();
        let mut renewed = 0;
        for task in tasks {
            let (at, ok, code, closed) = task.await.unwrap();
            asked.extend(at);
            renewed += usize::from(ok);
            assert_eq!(code, 4401, "every connection ends at its deadline");
            let deadline = UNIX_EPOCH + Duration::from_secs(second_exp);
            lateness.push(closed.duration_since(deadline).unwrap_or_default());
        }
        asked.sort();
        lateness.sort();
        let (first, last) = (asked[0], *asked.last().unwrap());
        let span = last.duration_since(first).unwrap_or_default();
        let buckets = (span.as_millis() / 100 + 1) as usize;
        let mut counts = vec![0usize; buckets];
        for at in &asked {
            counts[(at.duration_since(first).unwrap_or_default().as_millis() / 100) as usize] += 1;
        }
        let mean = asked.len() as f64 / buckets as f64;
        let peak = *counts.iter().max().unwrap() as f64;
        println!(
            "| {} s | {:.0} / {:.0} per 100 ms ({:.1}x) | {:.1} s | {renewed} / {CONNECTIONS} | {:.0} / {:.0} ms | {:.0} ms |",
            jitter_ms / 1000,
            peak,
            mean,
            peak / mean,
            span.as_secs_f64(),
            percentile(&lateness, 0.5).as_secs_f64() * 1000.0,
            percentile(&lateness, 0.99).as_secs_f64() * 1000.0,
            lateness.last().unwrap().as_secs_f64() * 1000.0,
        );
        drop(server);
    }
}

async fn leak() {
    const CYCLES: usize = 100_000;
    const CONCURRENCY: usize = 32;
    println!("\n## Leak check: {CYCLES} connect/close cycles\n");
    let mut server = ChildServer::start(Mode::Wrapped, Some(SMALL_READ_BUFFER));
    let addr = server.addr;
    let token = hs256_token(3600);
    let cycle = |n: usize| {
        let token = token.clone();
        async move {
            let per_task = n / CONCURRENCY;
            let tasks: Vec<_> = (0..CONCURRENCY)
                .map(|_| {
                    let token = token.clone();
                    tokio::spawn(async move {
                        for _ in 0..per_task {
                            let mut client = connect(addr, &token).await;
                            let _ = client.close(None).await;
                            while let Some(Ok(_)) = client.next().await {}
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        }
    };
    cycle(2_000).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_before, live_before, tasks_before) = server.stats();
    let start = Instant::now();
    cycle(CYCLES).await;
    let elapsed = start.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_after, live_after, tasks_after) = server.stats();
    println!("| measure | after warm-up | after {CYCLES} cycles |\n| --- | --- | --- |");
    println!("| server RSS | {rss_before} KiB | {rss_after} KiB |");
    println!("| live connections (registry) | {live_before} | {live_after} |");
    println!("| alive tokio tasks | {tasks_before} | {tasks_after} |");
    println!(
        "| cycle rate | | {:.0}/s |",
        CYCLES as f64 / elapsed.as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    if args.first().map(String::as_str) == Some("serve") {
        let mode = if args.get(1).map(String::as_str) == Some("bare") {
            Mode::Bare
        } else {
            Mode::Wrapped
        };
        let read_buffer = args.get(2).and_then(|s| s.parse().ok());
        let alg = args.get(3).cloned().unwrap_or_else(|| "HS256".into());
        serve_child(mode, read_buffer, alg);
        return;
    }
    let scenario = args.first().cloned().unwrap_or_else(|| "all".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        println!(
            "# axum-ws-auth load harness ({} cores, LOAD_SECS={})",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            run_secs().as_secs()
        );
        let all = scenario == "all";
        if all || scenario == "throughput" {
            throughput().await;
        }
        if all || scenario == "handshake" {
            handshake().await;
        }
        if all || scenario == "idle-memory" {
            idle_memory().await;
        }
        if all || scenario == "renewal-storm" {
            renewal_storm().await;
        }
        if all || scenario == "max-connections" {
            max_connections().await;
        }
        if all || scenario == "herd" {
            herd().await;
        }
        if all || scenario == "leak" {
            leak().await;
        }
    });
}
