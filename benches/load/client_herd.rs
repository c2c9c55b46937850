//! Client herd: the crate's Rust clients, holding tokens minted in the same
//! second, renew on their own timer with the client's renewal jitter off
//! and on (the server's notice jitter off), so the token endpoint's load is
//! the clients' doing. Needs the `client` feature:
//! `cargo bench --bench load --features client -- client-herd`.

#[cfg(feature = "client")]
pub(crate) use with_client::{client_herd, client_herd_worker};

#[cfg(not(feature = "client"))]
pub(crate) fn client_herd() {
    println!(
        "\n## Client herd: SKIPPED, it runs the crate's Rust client: \
         cargo bench --bench load --features client -- client-herd\n"
    );
}

#[cfg(not(feature = "client"))]
pub(crate) async fn client_herd_worker(_: &crate::records::Records) {
    unreachable!("the client herd starts no worker without the client feature")
}

#[cfg(feature = "client")]
mod with_client {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use axum_ws_auth::client::{AuthClient, ClientEvent, TokenPlacement};
    use tokio::sync::Notify;

    use crate::fleet::{Role, ServerFleet, Worker, all_connected, finish_all};
    use crate::plot;
    use crate::records::{Records, env, epoch_ms, stopped};
    use crate::scale::{HerdRecords, connections};
    use crate::server::ServerSpec;
    use crate::stats::millis;
    use crate::{Mode, SMALL_READ_BUFFER, env_or, hs256_token_until, now};

    /// `LOAD_COUNT` clients on `LOAD_TOKEN` until each has connected once;
    /// every later token request is answered with a token minted then,
    /// valid for `LOAD_RENEW_TTL_S`, and recorded: `a <ms>` for a renewal
    /// (asked while connected), `x` for a reconnection's. Says how many
    /// connected once all have, or after `LOAD_CONNECT_WAIT_S` (120 s).
    pub(crate) async fn client_herd_worker(records: &Records) {
        let count: usize = env("LOAD_COUNT").parse().unwrap();
        let addrs: Vec<String> = env("LOAD_ADDRS").split(',').map(str::to_owned).collect();
        let offset: usize = env("LOAD_OFFSET").parse().unwrap();
        let token = env("LOAD_TOKEN");
        let ttl: u64 = env_or("LOAD_RENEW_TTL_S", 3600);
        let renew_before = Duration::from_millis(env_or("LOAD_RENEW_BEFORE_MS", 10_000));
        let jitter = Duration::from_millis(env_or("LOAD_RENEW_JITTER_MS", 0));
        let connected = Arc::new(AtomicUsize::new(0));
        let all_connected = Arc::new(Notify::new());
        let clients: Vec<AuthClient> = (0..count)
            .map(|n| {
                let url = format!("ws://{}/ws", addrs[(offset + n) % addrs.len()]);
                // The herd's token until the first connection: a retried
                // first attempt must not leave the herd.
                let joined = Arc::new(AtomicBool::new(false));
                let up = Arc::new(AtomicBool::new(false));
                let provider = {
                    let (token, joined, up, records) =
                        (token.clone(), joined.clone(), up.clone(), records.clone());
                    move || {
                        let token = if joined.load(Ordering::Acquire) {
                            records.push(if up.load(Ordering::Acquire) {
                                format!("a {:.1}", epoch_ms())
                            } else {
                                "x".to_owned()
                            });
                            hs256_token_until(now() + ttl)
                        } else {
                            token.clone()
                        };
                        async move { Ok::<_, std::io::Error>(token) }
                    }
                };
                let (connected, all_connected, records) =
                    (connected.clone(), all_connected.clone(), records.clone());
                AuthClient::builder(url, provider)
                    .token_placement(TokenPlacement::Header)
                    .renew_before(renew_before)
                    .renew_jitter(jitter)
                    .on_event(move |event| {
                        match event {
                            ClientEvent::Renewed { .. } => records.push("r".into()),
                            ClientEvent::Connected { .. } => up.store(true, Ordering::Release),
                            ClientEvent::Disconnected { .. } => up.store(false, Ordering::Release),
                            _ => {}
                        }
                        let first = matches!(event, ClientEvent::Connected { .. })
                            && !joined.swap(true, Ordering::AcqRel);
                        if first && connected.fetch_add(1, Ordering::AcqRel) + 1 == count {
                            all_connected.notify_one();
                        }
                    })
                    .connect()
            })
            .collect();
        let wait = Duration::from_secs(env_or("LOAD_CONNECT_WAIT_S", 120));
        let _ = tokio::time::timeout(wait, all_connected.notified()).await;
        let made = connected.load(Ordering::Acquire);
        println!("connected {made} {}", count - made);
        stopped().await;
        drop(clients);
    }

    /// The herd of `connections(50 000)` Rust clients, once per client
    /// renewal jitter in `LOAD_CLIENT_JITTERS` (seconds, default `0,30`).
    pub(crate) fn client_herd() {
        const NOTIFY_BEFORE_S: u64 = 10;
        const PROBES: usize = 200;
        const BUCKET_MS: u64 = 100;
        // The clients' `renew_before`: as long as the servers'
        // `notify_before` by default (every timer running late meets the
        // notice), `LOAD_CLIENT_RENEW_BEFORE_S` for more (as the defaults,
        // 60 s against 30 s, have it).
        let renew_before_s: u64 = env_or("LOAD_CLIENT_RENEW_BEFORE_S", NOTIFY_BEFORE_S);
        let total = connections(50_000);
        let jitters: Vec<u64> = std::env::var("LOAD_CLIENT_JITTERS")
            .ok()
            .map(|list| list.split(',').filter_map(|s| s.parse().ok()).collect())
            .unwrap_or_else(|| vec![0, 30]);
        println!(
            "\n## Client herd: {total} Rust clients whose tokens share one exp; renew_before {renew_before_s} s, the servers' notify_before {NOTIFY_BEFORE_S} s, server notice jitter off; {PROBES} probes echo 64 B every 20 ms\n"
        );
        println!(
            "| client renewal jitter | token requests: peak per 100 ms, per 1 s / mean per s | renewed (reconnections) | probe p99: quiet / renewals | first to last request |\n| --- | --- | --- | --- | --- |"
        );
        let mut series = Vec::new();
        for jitter in jitters {
            let spec = ServerSpec::new(Mode::Wrapped, Some(SMALL_READ_BUFFER))
                .env("LOAD_NOTIFY_BEFORE_MS", NOTIFY_BEFORE_S * 1000)
                .env("LOAD_LEEWAY_MS", 0);
            let fleet = ServerFleet::start(spec, total + PROBES);
            let addrs = fleet.addrs();
            // The client's timer spreads over the whole window only when the
            // wait before `renew_before` is at least twice as long.
            let connecting_s = 10 + total as u64 / 2000;
            let first_exp = now() + connecting_s + renew_before_s + 2 * jitter;
            let mut probes = Worker::probes(PROBES, &addrs);
            let mut herd = Worker::start_many(
                Role::ClientHerd,
                total,
                0,
                &addrs,
                &[
                    ("LOAD_TOKEN", hs256_token_until(first_exp)),
                    ("LOAD_RENEW_BEFORE_MS", (renew_before_s * 1000).to_string()),
                    ("LOAD_RENEW_JITTER_MS", (jitter * 1000).to_string()),
                    ("LOAD_CONNECT_WAIT_S", connecting_s.to_string()),
                ],
            );
            all_connected(&mut probes);
            let (connected, took) = all_connected(&mut herd);
            let window_from = (first_exp - renew_before_s - jitter) as f64 * 1000.0;
            assert!(
                epoch_ms() < window_from,
                "connecting took {took:?}: past the first renewal"
            );
            // Every renewal is due by `exp - renew_before`; the answers to
            // the server's notices wait at most a quarter of what is left.
            let until = (first_exp - NOTIFY_BEFORE_S.min(renew_before_s) + 5) as f64 * 1000.0;
            std::thread::sleep(Duration::from_secs_f64(
                ((until - epoch_ms()) / 1000.0).max(0.0),
            ));
            let records = HerdRecords::parse(&finish_all(herd));
            let probe_records = HerdRecords::parse(&finish_all(probes));
            drop(fleet);

            let asked = &records.asked;
            let (Some(&first), Some(&last)) = (asked.first(), asked.last()) else {
                println!("| {jitter} s | no token request recorded | | | |");
                continue;
            };
            // From the first request: a client's own timer reads `exp` on
            // the server's clock as the upgrade's whole-second `Date` told it,
            // so some fire a little before `window_from`.
            let per_bucket = records.requests_per(first, BUCKET_MS);
            let per_second = records.requests_per(first, 1000);
            let window_s = (jitter as f64).max((last - first) / 1000.0).max(1.0);
            let mean = asked.len() as f64 / window_s;
            let quiet = probe_records.probe_p99(window_from - 20_000.0, window_from);
            let renewals = probe_records.probe_p99(first, last + 1000.0);
            println!(
                "| {} | {}, {} / {mean:.0} ({:.1}x per s) | {} / {connected} ({}) | {:.1} / {:.1} ms | {:.2} s |",
                plot::window_label("", jitter).trim_start(),
                per_bucket.iter().max().unwrap(),
                per_second.iter().max().unwrap(),
                *per_second.iter().max().unwrap() as f64 / mean,
                records.renewed,
                records.reconnects,
                millis(quiet.0),
                millis(renewals.0),
                (last - first) / 1000.0,
            );
            // The plot's axis: seconds against `exp - renew_before`.
            let renew_at = (first_exp - renew_before_s) as f64 * 1000.0;
            series.push(records.series(
                plot::window_label("client renewal jitter", jitter),
                window_from,
                renew_at,
                BUCKET_MS,
            ));
        }
        plot::renewal_rate(
            "client-herd-renewal-rate",
            &format!("Client herd of {total}: token requests per second (100 ms buckets)"),
            BUCKET_MS,
            &series,
        );
    }
}
