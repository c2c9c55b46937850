//! A real `redis-server` on a free loopback port, stopped by its PID on
//! drop, or one loud `SKIPPED` line when the binary is missing (a failure
//! under `CI=true`). Included with `#[path = "common/redis.rs"] mod redis_server;`.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const INSTALL: &str = "install with: apt-get install redis-server";

/// The server binary: `REDIS_SERVER`, else `/usr/bin/redis-server`, else
/// `redis-server` on PATH.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REDIS_SERVER") {
        return Some(PathBuf::from(path)).filter(|path| path.is_file());
    }
    let system = PathBuf::from("/usr/bin/redis-server");
    if system.is_file() {
        return Some(system);
    }
    crate::common::on_path("redis-server")
}

/// Skips a Redis test (one loud line), or fails it under CI.
pub fn skip(test: &str, why: &str) {
    crate::common::skip_without(test, why, INSTALL);
}

/// One `redis-server` process.
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    pub port: u16,
    /// The dump directory when persistence is on.
    dir: Option<PathBuf>,
    child: Option<Child>,
}

impl RedisServer {
    /// A server without persistence, or None (after [`skip`]) without the
    /// binary.
    pub fn start(test: &str) -> Option<Self> {
        Self::launch(test, false)
    }

    /// A server that saves its data in a temporary directory on
    /// [`restart`](Self::restart) (`SHUTDOWN SAVE`) and loads it back.
    pub fn start_persistent(test: &str) -> Option<Self> {
        Self::launch(test, true)
    }

    fn launch(test: &str, persistent: bool) -> Option<Self> {
        let Some(binary) = binary() else {
            skip(test, "redis-server not found (set REDIS_SERVER)");
            return None;
        };
        let dir = persistent.then(|| {
            let dir = std::env::temp_dir().join(format!(
                "axum-ws-auth-redis-{}-{}",
                std::process::id(),
                free_port()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            dir
        });
        let mut server = Self {
            binary,
            port: free_port(),
            dir,
            child: None,
        };
        server.spawn();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) {
        let mut command = Command::new(&self.binary);
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match &self.dir {
            // Persistence through the RDB file only, written at SHUTDOWN SAVE.
            Some(dir) => {
                command.arg("--dir").arg(dir).args(["--save", ""]);
            }
            None => {
                command.args(["--save", ""]);
            }
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        self.wait_for_ping();
    }

    fn wait_for_ping(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if matches!(self.command(&["PING"]).as_deref(), Ok("+PONG")) {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("redis-server on port {} exited: {status}", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Connects and sends one command; the stream to read the reply from.
    fn send(&self, args: &[&str]) -> std::io::Result<TcpStream> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes())?;
        Ok(stream)
    }

    /// Sends one command (inline arguments, no spaces inside) and returns
    /// the first line of the reply.
    pub fn command(&self, args: &[&str]) -> std::io::Result<String> {
        let stream = self.send(args)?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        Ok(line.trim_end().to_owned())
    }

    /// Sends one command whose reply is an array of bulk strings (`ZRANGE`,
    /// `KEYS`, ...) and returns its elements.
    pub fn array(&self, args: &[&str]) -> std::io::Result<Vec<String>> {
        let stream = self.send(args)?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let invalid =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let count: usize = line
            .trim_end()
            .strip_prefix('*')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| invalid(&format!("not an array: {line:?}")))?;
        let mut elements = Vec::with_capacity(count);
        for _ in 0..count {
            line.clear();
            reader.read_line(&mut line)?;
            let len: usize = line
                .trim_end()
                .strip_prefix('$')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| invalid(&format!("not a bulk string: {line:?}")))?;
            let mut bulk = vec![0; len + 2];
            std::io::Read::read_exact(&mut reader, &mut bulk)?;
            bulk.truncate(len);
            elements.push(String::from_utf8(bulk).map_err(|_| invalid("not UTF-8"))?);
        }
        Ok(elements)
    }

    /// The members of a sorted set with their scores, lowest first.
    pub fn scores(&self, key: &str) -> Vec<(String, u64)> {
        let flat = self
            .array(&["ZRANGE", key, "0", "-1", "WITHSCORES"])
            .unwrap();
        flat.chunks(2)
            .map(|pair| (pair[0].clone(), pair[1].parse().unwrap()))
            .collect()
    }

    /// `ZCARD key`.
    pub fn zcard(&self, key: &str) -> usize {
        let reply = self.command(&["ZCARD", key]).unwrap();
        reply.trim_start_matches(':').parse().unwrap()
    }

    /// Publishes raw bytes on `channel`, as any Redis client could.
    pub fn publish(&self, channel: &str, payload: &[u8]) -> std::io::Result<String> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut request = Vec::new();
        request.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n");
        request.extend_from_slice(format!("${}\r\n{channel}\r\n", channel.len()).as_bytes());
        request.extend_from_slice(format!("${}\r\n", payload.len()).as_bytes());
        request.extend_from_slice(payload);
        request.extend_from_slice(b"\r\n");
        stream.write_all(&request)?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        Ok(line.trim_end().to_owned())
    }

    /// Stops the server: with `SHUTDOWN SAVE` when persistent (its data
    /// survives), else killed.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if self.dir.is_some() {
            let _ = self.command(&["SHUTDOWN", "SAVE"]);
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills it (no save: a crash) and starts it again on the same port;
    /// a persistent server loads whatever its last snapshot holds.
    pub fn crash_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn();
    }

    /// Starts it again on the same port (and dump directory).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn dump_dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A loopback port nobody listens on at the moment of asking.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
