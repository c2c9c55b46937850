//! Scenarios against one server process: throughput, handshakes, idle
//! memory, a renewal storm, the descriptor limit and the leak check.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::Header;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::client::{connect, connect_many, echo_rate, handshake_rate, try_connect};
use crate::server::{ChildServer, ServerSpec};
use crate::stats::{median, percentile, round_order, summary};
use crate::{Mode, SECRET, SMALL_READ_BUFFER, claims, hs256_token, keys, run_secs};

/// Interleaved rounds per comparison: `LOAD_ROUNDS`, 6 by default (1 to
/// profile one server).
fn rounds() -> usize {
    crate::env_or("LOAD_ROUNDS", 6)
}

pub(crate) async fn throughput() {
    let rounds = rounds();
    println!(
        "\n## Echo throughput, 100 connections (round trips/s; {rounds} interleaved rounds; server process on core 0)\n"
    );
    println!(
        "| frame | bare (median) | wrapped (median) | ratio: median of per-round ratios (min–max) | server CPU per round trip, bare / wrapped (median µs) |\n| --- | --- | --- | --- | --- |"
    );
    let token = hs256_token(3600);
    for size in [64, 4096] {
        let (mut rates, mut cpu, mut ratios) = ([vec![], vec![]], [vec![], vec![]], vec![]);
        for round in 0..rounds {
            let mut this_round = [0.0; 2];
            for mode in round_order(round) {
                let mut server = ChildServer::start(mode, None);
                let before = server.cpu();
                let run = echo_rate(server.addr, 100, size, &token, run_secs()).await;
                let index = usize::from(mode == Mode::Wrapped);
                cpu[index].push(run.micros_each(server.cpu() - before));
                rates[index].push(run.rate());
                this_round[index] = run.rate();
            }
            ratios.push(this_round[1] / this_round[0]);
        }
        println!(
            "| {size} B | {:.0} | {:.0} | {} | {:.1} / {:.1} |",
            median(&rates[0]),
            median(&rates[1]),
            summary(&ratios, 3),
            median(&cpu[0]),
            median(&cpu[1]),
        );
    }
}

/// Bare and each algorithm in every round, the order reversed every other
/// round; each algorithm's ratio is taken against the bare run of its own
/// round.
pub(crate) async fn handshake() {
    println!(
        "\n## Handshake rate, 16 concurrent connect+close loops (upgrades/s; {} interleaved rounds; server process on core 0)\n",
        rounds()
    );
    println!(
        "| variant | upgrades/s (median) | ratio to bare: median of per-round ratios (min–max) | server CPU per upgrade (median µs) |\n| --- | --- | --- | --- |"
    );
    // `LOAD_ALGS=HS256,ES256` runs bare and those only.
    let algs = std::env::var("LOAD_ALGS").unwrap_or_default();
    let rounds = rounds();
    let mut variants: Vec<(&str, Option<String>)> = vec![("bare axum", None)];
    for (name, alg, _, encoding) in keys::signing_keys(SECRET) {
        if !algs.is_empty() && !algs.split(',').any(|wanted| wanted == name) {
            continue;
        }
        let token = jsonwebtoken::encode(&Header::new(alg), &claims(3600), &encoding).unwrap();
        variants.push((name, Some(token)));
    }
    let mut rates = vec![Vec::new(); variants.len()];
    let mut cpu = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..variants.len()).collect();
        if !round.is_multiple_of(2) {
            order.reverse();
        }
        for index in order {
            let (name, token) = &variants[index];
            let mut server = match token {
                None => ChildServer::start(Mode::Bare, None),
                Some(_) => ServerSpec::new(Mode::Wrapped, None).alg(name).start(),
            };
            let token = token.as_deref().unwrap_or("unused");
            let before = server.cpu();
            let run = handshake_rate(server.addr, token, 16, run_secs()).await;
            cpu[index].push(run.micros_each(server.cpu() - before));
            rates[index].push(run.rate());
        }
    }
    for (index, (name, _)) in variants.iter().enumerate() {
        let ratios: Vec<f64> = rates[index]
            .iter()
            .zip(&rates[0])
            .map(|(rate, bare)| rate / bare)
            .collect();
        println!(
            "| {name} | {:.0} | {} | {:.1} |",
            median(&rates[index]),
            summary(&ratios, 3),
            median(&cpu[index])
        );
    }
}

pub(crate) async fn idle_memory() {
    const CONNECTIONS: usize = 10_000;
    const MEMORY_ROUNDS: usize = 4;
    println!(
        "\n## Server memory per idle connection, {CONNECTIONS} connections (KiB; {MEMORY_ROUNDS} interleaved rounds)\n"
    );
    println!(
        "| read buffer | bare (median) | wrapped (median) | overhead per connection: median of per-round differences (min–max) |\n| --- | --- | --- | --- |"
    );
    let token = hs256_token(3600);
    for read_buffer in [None, Some(SMALL_READ_BUFFER)] {
        let (mut bare, mut wrapped, mut overhead) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..MEMORY_ROUNDS {
            let mut per_connection = [0.0; 2];
            for mode in round_order(round) {
                let mut server = ChildServer::start(mode, read_buffer);
                let (before, _, _) = server.stats();
                let clients = connect_many(server.addr, &token, CONNECTIONS).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let (after, _, _) = server.stats();
                per_connection[usize::from(mode == Mode::Wrapped)] =
                    (after - before) as f64 / CONNECTIONS as f64;
                drop(clients);
            }
            bare.push(per_connection[0]);
            wrapped.push(per_connection[1]);
            overhead.push(per_connection[1] - per_connection[0]);
        }
        let label = read_buffer.map_or("axum default (128 KiB)".to_owned(), |b| {
            format!("{} KiB", b / 1024)
        });
        println!(
            "| {label} | {:.2} | {:.2} | {} KiB |",
            median(&bare),
            median(&wrapped),
            summary(&overhead, 2)
        );
    }
}

pub(crate) async fn renewal_storm() {
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
/// wrapped in interleaved rounds: the count, and memory per connection at
/// that count.
pub(crate) async fn max_connections() {
    const TARGET: usize = 19_990;
    let rounds = rounds();
    println!(
        "\n## One server process: up to {TARGET} idle connections, 4 KiB read buffer ({rounds} interleaved rounds)\n"
    );
    println!(
        "| round | variant | connections held | server RSS | per connection |\n| --- | --- | --- | --- | --- |"
    );
    let token = hs256_token(3600);
    let mut overhead = Vec::new();
    for round in 0..rounds {
        let mut per_connection = [0.0; 2];
        for mode in round_order(round) {
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
            let kib = (after - before) as f64 / clients.len() as f64;
            per_connection[usize::from(mode == Mode::Wrapped)] = kib;
            println!(
                "| {} | {} | {} (registry: {live}) | {} MiB | {kib:.2} KiB |",
                round + 1,
                mode.name(),
                clients.len(),
                after / 1024,
            );
            drop(clients);
        }
        overhead.push(per_connection[1] - per_connection[0]);
    }
    println!(
        "\noverhead per connection, median of per-round differences (min–max): {} KiB",
        summary(&overhead, 2)
    );
}

pub(crate) async fn leak() {
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
