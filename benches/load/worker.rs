//! The client worker process (this binary with `worker <role>`): connects
//! its share of the fleet's connections from its own source address, plays
//! its role until told to stop, and writes what it measured.
//!
//! Records, one a line: `a <ms>` a renewal asked for (the moment a token
//! endpoint would be called), `r` renewed, `c <ms> <code> [<deadline ms>]`
//! a close frame received (and the deadline of the token it closed), `p <ms> <µs>` a probe round trip sent at `<ms>`; `<ms>` are
//! milliseconds since the Unix epoch, so records of several processes line
//! up.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::client::{Client, try_connect_from};
use crate::env_or;
use crate::fleet::{Role, source_address};
use crate::records::{Records, env, epoch_ms, stopped};

fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").unwrap();
    stdout.flush().unwrap();
}

/// Connects `LOAD_COUNT` connections with `LOAD_TOKEN`, round robin over
/// `LOAD_ADDRS`, 250 under way at a time. An attempt that has not finished
/// in 3 s (a SYN dropped by a full accept queue waits for the kernel's
/// retransmission, a second and more) is abandoned and made again, up to
/// five times, so one straggler holds back nothing else.
async fn connect_share(token: &str) -> Vec<Client> {
    let addrs: Vec<SocketAddr> = env("LOAD_ADDRS")
        .split(',')
        .map(|addr| addr.parse().unwrap())
        .collect();
    let worker: u8 = env_or("LOAD_WORKER", 0);
    let count: usize = env_or("LOAD_COUNT", 0);
    let offset: usize = env_or("LOAD_OFFSET", 0);
    let connect = |n: usize| {
        let addr = addrs[(offset + n) % addrs.len()];
        async move {
            let mut last = String::new();
            for _ in 0..5 {
                let attempt = try_connect_from(Some(source_address(worker, n)), addr, token);
                match tokio::time::timeout(Duration::from_secs(3), attempt).await {
                    Ok(Ok(client)) => return Ok(client),
                    Ok(Err(error)) => last = error,
                    Err(_) => last = "no answer in 3 s".into(),
                }
            }
            Err(last)
        }
    };
    let results: Vec<Result<Client, String>> = futures_util::stream::iter(0..count)
        .map(connect)
        .buffer_unordered(250)
        .collect()
        .await;
    let mut clients = Vec::with_capacity(count);
    let (mut failed, mut first_error) = (0, String::new());
    for result in results {
        match result {
            Ok(client) => clients.push(client),
            Err(error) => {
                failed += 1;
                if first_error.is_empty() {
                    first_error = error;
                }
            }
        }
    }
    say(&format!(
        "connected {} {failed} {first_error}",
        clients.len()
    ));
    clients
}

pub(crate) fn worker_main(role: &str) {
    let role = Role::from_name(role).unwrap_or_else(|| panic!("unknown role {role}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let records = Records::default();
    runtime.block_on(async {
        match role {
            Role::Storm => crate::storm::storm_worker(&records).await,
            Role::ClientHerd => crate::client_herd::client_herd_worker(&records).await,
            role => {
                let clients = connect_share(&env("LOAD_TOKEN")).await;
                play(role, clients, &records).await;
            }
        }
    });
    records.write();
    say("done");
    // The connections go with the process; no orderly close of 17k.
    std::process::exit(0);
}

async fn play(role: Role, clients: Vec<Client>, records: &Records) {
    let (go, started) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let records = records.clone();
            match role {
                Role::Idle => tokio::spawn(idle(client)),
                Role::Herd => tokio::spawn(herd_member(client, Renewal::from_env(), records)),
                Role::Probe => tokio::spawn(probe(client, records)),
                Role::Abuse => tokio::spawn(abuser(client, started.clone(), records)),
                Role::Storm | Role::ClientHerd => {
                    unreachable!("these workers have their own clients")
                }
            }
        })
        .collect();
    if role == Role::Abuse {
        // `go` and `pause` as often as the parent likes, then `stop`.
        loop {
            match stopped().await.as_str() {
                "go" => go.send_replace(true),
                "pause" => go.send_replace(false),
                _ => break,
            };
        }
    } else {
        stopped().await;
    }
    for task in tasks {
        task.abort();
    }
}

async fn idle(mut client: Client) {
    while let Some(Ok(_)) = client.next().await {}
}

/// The token a herd member renews with.
enum Renewal {
    /// Minted when asked, valid this many seconds (`LOAD_RENEW_TTL_S`).
    Minted(u64),
    /// One token for every member (`LOAD_RENEW_TOKEN`, expiring at
    /// `LOAD_RENEW_EXP`).
    Shared { token: String, exp: u64 },
}

impl Renewal {
    fn from_env() -> Self {
        match std::env::var("LOAD_RENEW_TOKEN") {
            Ok(token) if !token.is_empty() => Renewal::Shared {
                token,
                exp: env("LOAD_RENEW_EXP").parse().unwrap(),
            },
            _ => Renewal::Minted(env_or("LOAD_RENEW_TTL_S", 60)),
        }
    }

    /// The token and its `exp`.
    fn token(&self) -> (String, u64) {
        match self {
            Renewal::Minted(ttl) => {
                let exp = crate::now() + ttl;
                (crate::hs256_token_until(exp), exp)
            }
            Renewal::Shared { token, exp } => (token.clone(), *exp),
        }
    }
}

/// Renews once, on the first notice, with a token "the endpoint" mints at
/// that moment (`exp` = now + `ttl` s, as a real token endpoint would), so
/// renewals spread by the notice jitter spread the next expiries too; or
/// with the one shared token, so that every member closes at one instant.
async fn herd_member(mut client: Client, renewal: Renewal, records: Records) {
    // The deadline of the token the connection lives under now (0: the
    // first, which the parent knows).
    let mut deadline_ms = 0;
    let mut asked = false;
    while let Some(Ok(message)) = client.next().await {
        match message {
            WsMessage::Text(text) if !asked && text.as_str().contains("auth.expiring") => {
                asked = true;
                records.push(format!("a {:.1}", epoch_ms()));
                let (token, exp) = renewal.token();
                let renewal = serde_json::json!({
                    "type": "auth.renew",
                    "id": "h",
                    "token": token,
                });
                deadline_ms = exp * 1000;
                if client
                    .send(WsMessage::Text(renewal.to_string().into()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            WsMessage::Text(text) if text.as_str().contains("auth.renewed") => {
                records.push("r".into());
            }
            WsMessage::Close(frame) => {
                let code = frame.map_or(0, |f| u16::from(f.code));
                records.push(format!("c {:.1} {code} {deadline_ms}", epoch_ms()));
                return;
            }
            _ => {}
        }
    }
}

async fn probe(mut client: Client, records: Records) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (at, sent) = (epoch_ms(), Instant::now());
        if client
            .send(WsMessage::Binary(vec![7; 64].into()))
            .await
            .is_err()
        {
            return;
        }
        loop {
            match client.next().await {
                Some(Ok(WsMessage::Binary(_))) => break,
                Some(Ok(_)) => continue,
                _ => return,
            }
        }
        records.push(format!("p {at:.1} {}", sent.elapsed().as_micros()));
    }
}

/// Control frames at the limits, for as long as the run lasts: a ping with
/// the largest payload RFC 6455 allows (125 B) every `LOAD_PING_MS`
/// (default 1 s); on the first ticks, the invalid control messages
/// tolerated (`LOAD_INVALID`, default 3, each exactly `LOAD_CONTROL_BYTES`
/// long, default 16 KiB); a renewal with an unusable token every
/// `LOAD_RENEW_EVERY_MS` (default 6 s: the default limit of ten a minute).
/// Each abuser starts at its own point of the ping period, as independent
/// clients would. Reads everything the server answers while abusing; abuses
/// between each `go` and the next `pause` only.
async fn abuser(
    mut client: Client,
    mut started: tokio::sync::watch::Receiver<bool>,
    records: Records,
) {
    let period = Duration::from_millis(env_or("LOAD_PING_MS", 1_000));
    let control_bytes: usize = env_or("LOAD_CONTROL_BYTES", 16 * 1024);
    let mut invalid: u32 = env_or("LOAD_INVALID", 3);
    let prefix = r#"{"type":"auth.bogus","pad":""#;
    let bogus = format!(
        "{prefix}{}\"}}",
        "x".repeat(control_bytes - prefix.len() - 2)
    );
    let renewal = r#"{"type":"auth.renew","token":"not.a.token"}"#;
    let renew_every = Duration::from_millis(env_or("LOAD_RENEW_EVERY_MS", 6_000));
    // Each `go` starts a phase of abuse, each `pause` ends it.
    'phases: loop {
        if started.wait_for(|go| *go).await.is_err() {
            return;
        }
        let phase = period.mul_f64(fastrand_unit());
        let start = tokio::time::Instant::now() + phase;
        let mut ping = tokio::time::interval_at(start, period);
        let mut renew = tokio::time::interval_at(start + renew_every, renew_every);
        loop {
            let sent = tokio::select! {
                    paused = async { started.wait_for(|go| !*go).await.is_ok() } => {
                        if !paused {
                            return;
                        }
                        continue 'phases;
                    }
                _ = ping.tick() => {
                    let ping = client.send(WsMessage::Ping(vec![b'p'; 125].into())).await;
                    if invalid > 0 && ping.is_ok() {
                        invalid -= 1;
                        client.send(WsMessage::Text(bogus.clone().into())).await
                    } else {
                        ping
                    }
                }
                _ = renew.tick() => client.send(WsMessage::Text(renewal.into())).await,
                message = client.next() => match message {
                    Some(Ok(WsMessage::Close(frame))) => {
                        let code = frame.map_or(0, |f| u16::from(f.code));
                        records.push(format!("c {:.1} {code}", epoch_ms()));
                        return;
                    }
                    Some(Ok(_)) => Ok(()),
                    _ => return,
                },
            };
            if sent.is_err() {
                return;
            }
        }
    }
}

/// A number in [0, 1) that differs per call, without a random crate.
fn fastrand_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}
