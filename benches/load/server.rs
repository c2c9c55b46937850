//! The servers under test: bare axum and the authenticated socket, both
//! echoing, run in a child process so their memory can be read apart from
//! the clients'.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::any;
use axum_ws_auth::{AuthUpgrade, AuthWebSocket, Connections, JwtValidator, WsAuthLayer};
use jsonwebtoken::Validation;

use crate::lateness::Lateness;
use crate::{AUDIENCE, Mode, SECRET, env_or, keys};

/// Echoes data frames until the connection is over. A close is not
/// echoed: reading on after it lets tungstenite send its close reply and
/// end cleanly, the closing handshake the wrapped socket also completes.
/// (Breaking out at the close, as this harness first did, dropped the
/// socket without a reply: one write less per connection for bare axum,
/// which made the handshake comparison unfair.) Pings and pongs are not
/// echoed either: tungstenite answers a ping with its pong, and echoing it
/// back as a ping made the client pong in turn, five frames for each ping
/// of the abuse scenario.
async fn bare_echo(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        if is_data(&message) && socket.send(message).await.is_err() {
            break;
        }
    }
}

fn is_data(message: &Message) -> bool {
    matches!(message, Message::Text(_) | Message::Binary(_))
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
        if is_data(&message) && socket.send(message).await.is_err() {
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

/// The herd and abuse scenarios set the layer's timing and limits through
/// the server child's environment.
fn wrapped_router(validator: JwtValidator, read_buffer: Option<usize>) -> (Router, Connections) {
    let layer = WsAuthLayer::<Claims>::builder(validator.with_audience(&[AUDIENCE]))
        // The renewal storm renews 10k connections at once, some twice.
        .renew_limit(env_or("LOAD_RENEW_LIMIT", 1000))
        .notify_before(Duration::from_millis(env_or(
            "LOAD_NOTIFY_BEFORE_MS",
            30_000,
        )))
        .notice_jitter(Duration::from_millis(env_or("LOAD_NOTICE_JITTER_MS", 0)))
        .leeway(Duration::from_secs(env_or("LOAD_LEEWAY_MS", 5_000) / 1000))
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

pub(crate) async fn serve_in_process(router: Router, port: u16) -> SocketAddr {
    // A node tuned for 17k connections: an accept queue of 4096 (the
    // kernel's somaxconn here) instead of tokio's 1024, so a connect storm
    // is not dropped and retried at the TCP level seconds later.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .unwrap();
    let listener = socket.listen(4096).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// CPU time this process has used, user and system, in microseconds
/// (the kernel counts it in ticks of 10 ms).
fn cpu_micros() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks * 10_000
}

pub(crate) fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The child-process server: prints `ready <addr>`, answers on stdin
/// `stats` with `rss_kib live tasks cpu_micros`, `lateness` with
/// `count p50 p99 max` (ms) of its 4401 closes' lateness against their
/// deadlines, `lateness-take` with every such sample (µs, one line, then
/// forgotten); exits when stdin closes. `LOAD_PORT` picks its port (a
/// restarted server takes its old one back).
pub(crate) fn serve_child(mode: Mode, read_buffer: Option<usize>, alg: String) {
    let port = env_or("LOAD_PORT", 0);
    let lateness = Lateness::install();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (router, connections) = router(mode, read_buffer, &alg);
        let addr = serve_in_process(router, port).await;
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
                    println!("{} {live} {tasks} {}", rss_kib(), cpu_micros());
                }
                Some(Ok(command)) if command == "lateness" => println!("{}", lateness.summary()),
                Some(Ok(command)) if command == "lateness-take" => {
                    let micros: Vec<String> = lateness
                        .take()
                        .iter()
                        .map(|late| late.as_micros().to_string())
                        .collect();
                    println!("{}", micros.join(" "));
                }
                Some(Ok(_)) => {}
                _ => break,
            }
        }
    });
}

/// How a server child is started.
#[derive(Clone)]
pub(crate) struct ServerSpec<'a> {
    pub(crate) mode: Mode,
    pub(crate) read_buffer: Option<usize>,
    pub(crate) alg: &'a str,
    /// Extra environment (notice timing, `LOAD_PORT`).
    pub(crate) env: Vec<(&'static str, String)>,
    /// Pinned to core 0 (the single-server scenarios, whose harness runs
    /// under `taskset -c 1`); the fleets share both cores.
    pub(crate) pinned: bool,
}

impl<'a> ServerSpec<'a> {
    /// A server pinned to core 0 (fleets unpin theirs), HS256, no extra
    /// environment.
    pub(crate) fn new(mode: Mode, read_buffer: Option<usize>) -> Self {
        Self {
            mode,
            read_buffer,
            alg: "HS256",
            env: Vec::new(),
            pinned: true,
        }
    }

    pub(crate) fn alg(mut self, alg: &'a str) -> Self {
        self.alg = alg;
        self
    }

    pub(crate) fn env(mut self, name: &'static str, value: impl ToString) -> Self {
        self.env.push((name, value.to_string()));
        self
    }

    pub(crate) fn unpinned(mut self) -> Self {
        self.pinned = false;
        self
    }

    pub(crate) fn start(&self) -> ChildServer {
        let mut command = if self.pinned {
            let mut taskset = Command::new("taskset");
            taskset
                .args(["-c", "0"])
                .arg(std::env::current_exe().unwrap());
            taskset
        } else {
            Command::new(std::env::current_exe().unwrap())
        };
        command.args(["serve", self.mode.name()]);
        command.arg(
            self.read_buffer
                .map_or("-".to_owned(), |size| size.to_string()),
        );
        command.arg(self.alg);
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("server child did not start: {line:?}"))
            .parse()
            .unwrap();
        ChildServer {
            child,
            stdin,
            stdout,
            addr,
        }
    }
}

pub(crate) struct ChildServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub(crate) addr: SocketAddr,
}

impl ChildServer {
    pub(crate) fn start(mode: Mode, read_buffer: Option<usize>) -> Self {
        ServerSpec::new(mode, read_buffer).start()
    }

    /// (RSS KiB, live connections, alive tasks) of the server process.
    pub(crate) fn stats(&mut self) -> (u64, u64, u64) {
        let numbers = self.numbers();
        (numbers[0], numbers[1], numbers[2])
    }

    /// CPU time the server process has used so far.
    pub(crate) fn cpu(&mut self) -> Duration {
        Duration::from_micros(self.numbers()[3])
    }

    /// How late each of the server's 4401 closes left against its
    /// deadline, since the last call.
    pub(crate) fn lateness(&mut self) -> Vec<Duration> {
        self.ask("lateness-take")
            .into_iter()
            .map(Duration::from_micros)
            .collect()
    }

    fn numbers(&mut self) -> Vec<u64> {
        self.ask("stats")
    }

    fn ask(&mut self, command: &str) -> Vec<u64> {
        writeln!(self.stdin, "{command}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
