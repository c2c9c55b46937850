//! Scale beyond one process: several server processes, each on its own
//! port as several nodes would be, and client worker processes, each from
//! loopback source addresses of its own (`source_address`). A process here
//! may hold at most 20 000 descriptors, so 100k connections need at least
//! six of each.
//!
//! The parent drives workers over their stdin and stdout (`connected`,
//! then `stop`, then `done`); a worker writes what it measured to a file,
//! one record a line, that the parent reads when it is done.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::{ChildServer, ServerSpec};

/// Connections one process takes on, under its 20 000 descriptors.
pub(crate) const PER_PROCESS: usize = 17_000;

/// Several server processes of one kind, on ports of their own.
pub(crate) struct ServerFleet<'a> {
    /// For restarting them: only the storm does (it needs the client).
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    spec: ServerSpec<'a>,
    servers: Vec<ChildServer>,
}

impl<'a> ServerFleet<'a> {
    /// Enough servers for `connections`, none pinned (they share both
    /// cores with the workers).
    pub(crate) fn start(spec: ServerSpec<'a>, connections: usize) -> Self {
        let spec = spec.unpinned();
        let servers = (0..connections.div_ceil(PER_PROCESS))
            .map(|_| spec.start())
            .collect();
        Self { spec, servers }
    }

    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|server| server.addr).collect()
    }

    /// Summed RSS (KiB) and live registry entries of every server.
    pub(crate) fn stats(&mut self) -> (u64, u64) {
        self.servers.iter_mut().fold((0, 0), |(rss, live), server| {
            let (r, l, _) = server.stats();
            (rss + r, live + l)
        })
    }

    /// How late every server's 4401 closes left against their deadlines
    /// (server-side, no client scheduling in it), sorted; forgotten by the
    /// servers.
    pub(crate) fn lateness(&mut self) -> Vec<Duration> {
        let mut lateness: Vec<Duration> = self
            .servers
            .iter_mut()
            .flat_map(ChildServer::lateness)
            .collect();
        lateness.sort();
        lateness
    }

    /// Kills every server at once (a deploy, a crash).
    #[cfg(feature = "client")]
    pub(crate) fn kill(&mut self) -> Vec<SocketAddr> {
        let addrs = self.addrs();
        self.servers.clear();
        addrs
    }

    /// Starts the servers again on `addrs`' ports.
    #[cfg(feature = "client")]
    pub(crate) fn restart(&mut self, addrs: &[SocketAddr]) {
        self.servers = addrs
            .iter()
            .map(|addr| {
                let mut spec = self.spec.clone();
                spec.env.push(("LOAD_PORT", addr.port().to_string()));
                spec.start()
            })
            .collect();
    }
}

/// What a worker process does once connected.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Role {
    /// Hold the connections, idle.
    Idle,
    /// Renew on the first `auth.expiring` (recording the moment, as a
    /// token endpoint would see it), not on the second; record the close.
    Herd,
    /// Echo a 64 B frame every 20 ms per connection, recording round trips.
    Probe,
    /// Control frames and control messages at the limits.
    Abuse,
    /// The crate's Rust client, reconnecting with backoff.
    Storm,
    /// The crate's Rust client, renewing on its own timer.
    ClientHerd,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Idle => "idle",
            Role::Herd => "herd",
            Role::Probe => "probe",
            Role::Abuse => "abuse",
            Role::Storm => "storm",
            Role::ClientHerd => "client-herd",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        [
            Role::Idle,
            Role::Herd,
            Role::Probe,
            Role::Abuse,
            Role::Storm,
            Role::ClientHerd,
        ]
        .into_iter()
        .find(|role| role.name() == name)
    }
}

/// The loopback source address of connection `n` of worker `worker`: each
/// worker has a /16 of its own (127.1.0.0/16 for the first), each address
/// of which carries 250 connections at most. A `bind` to port 0 searches
/// the address's ephemeral ports for a free one, so one address carrying
/// 17k connections makes every new bind scan thousands of taken ports (the
/// kernel spent both cores on it, and 100k connections took minutes).
pub(crate) fn source_address(worker: u8, n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        worker + 1,
        (n / 250) as u8,
        (n % 250 + 1) as u8,
    ))
}

/// A client worker process.
pub(crate) struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    out: PathBuf,
}

impl Worker {
    /// Starts worker `index` for `count` connections spread over `addrs`
    /// (connection n goes to server `(offset + n) % addrs.len()`).
    pub(crate) fn start(
        role: Role,
        index: usize,
        count: usize,
        addrs: &[SocketAddr],
        env: &[(&str, String)],
    ) -> Self {
        let out = std::env::temp_dir().join(format!(
            "ws-auth-load-{}-{}-{index}.txt",
            std::process::id(),
            role.name()
        ));
        let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["worker", role.name()])
            .env("LOAD_ADDRS", addrs.join(","))
            .env("LOAD_WORKER", index.to_string())
            .env("LOAD_COUNT", count.to_string())
            .env("LOAD_OFFSET", index.to_string())
            .env("LOAD_OUT", &out)
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
            out,
        }
    }

    /// The probes of a herd: one worker (number 10, a source /16 of its
    /// own) holding `count` connections on hour-long tokens.
    pub(crate) fn probes(count: usize, addrs: &[SocketAddr]) -> Vec<Self> {
        vec![Self::start(
            Role::Probe,
            10,
            count,
            addrs,
            &[("LOAD_TOKEN", crate::hs256_token(3600))],
        )]
    }

    /// Starts enough workers for `connections`, numbered from `first`
    /// (each number its own source address).
    pub(crate) fn start_many(
        role: Role,
        connections: usize,
        first: usize,
        addrs: &[SocketAddr],
        env: &[(&str, String)],
    ) -> Vec<Self> {
        let workers = connections.div_ceil(PER_PROCESS);
        (0..workers)
            .map(|n| {
                let count = connections / workers + usize::from(n < connections % workers);
                Self::start(role, first + n, count, addrs, env)
            })
            .collect()
    }

    /// Starts what the worker's role waits for (the abusers' abuse).
    pub(crate) fn go(&mut self) {
        writeln!(self.stdin, "go").unwrap();
    }

    /// Pauses it until the next `go`.
    pub(crate) fn pause(&mut self) {
        writeln!(self.stdin, "pause").unwrap();
    }

    /// The worker's next line (its word and what follows).
    pub(crate) fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "a worker exited early");
        line.trim().to_owned()
    }

    /// Waits for `connected <ok> <failed>`; returns the connections made.
    pub(crate) fn connected(&mut self) -> usize {
        let line = self.line();
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("connected"), "worker said {line:?}");
        let ok: usize = words.next().unwrap().parse().unwrap();
        let failed: usize = words.next().unwrap().parse().unwrap();
        if failed > 0 {
            eprintln!("worker: {line}");
        }
        ok
    }

    /// Tells the worker to stop, and reads what it recorded.
    pub(crate) fn finish(mut self) -> Vec<String> {
        let _ = writeln!(self.stdin, "stop");
        loop {
            let line = self.line();
            if line == "done" {
                break;
            }
            println!("worker: {line}");
        }
        let _ = self.child.wait();
        let records = std::fs::read_to_string(&self.out).unwrap_or_default();
        let _ = std::fs::remove_file(&self.out);
        records.lines().map(str::to_owned).collect()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until every worker has connected; the total and how long it took.
pub(crate) fn all_connected(workers: &mut [Worker]) -> (usize, Duration) {
    let start = Instant::now();
    let total = workers.iter_mut().map(Worker::connected).sum();
    (total, start.elapsed())
}

/// Stops every worker and gathers their records.
pub(crate) fn finish_all(workers: Vec<Worker>) -> Vec<String> {
    workers.into_iter().flat_map(Worker::finish).collect()
}
