//! Fleet scenarios: 100k idle connections over several server processes,
//! the 100k herd of tokens minted in the same second, and abusive clients
//! at the control-frame limits.

use std::time::Duration;

use crate::fleet::{Role, ServerFleet, Worker, all_connected, finish_all};
use crate::plot::{self, Series};
use crate::records::epoch_ms;
use crate::server::ServerSpec;
use crate::stats::{median, millis, percentile, round_order, summary};
use crate::{Mode, SMALL_READ_BUFFER, hs256_token, hs256_token_until, now};

/// `LOAD_CONNECTIONS`, or the scenario's own count.
pub(crate) fn connections(default: usize) -> usize {
    crate::env_or("LOAD_CONNECTIONS", default)
}

/// Idle connections added in four steps, bare and wrapped in alternating
/// order: server memory per connection at each count, summed over the
/// server processes, so a per-layer structure that grows faster than the
/// count shows as a rising overhead.
pub(crate) fn idle_fleet() {
    const ROUNDS: usize = 2;
    const STEPS: usize = 4;
    let total = connections(100_000);
    let token = hs256_token(3600);
    println!(
        "\n## {total} idle connections over several server processes (4 KiB read buffers; {ROUNDS} interleaved rounds)\n"
    );
    // overhead[step][round], per_connection[mode][step][round]
    let mut overhead = vec![Vec::new(); STEPS];
    let mut per_connection = vec![vec![Vec::new(); STEPS]; 2];
    let mut servers = 0;
    for round in 0..ROUNDS {
        let mut this_round = [[0.0; STEPS]; 2];
        for mode in round_order(round) {
            let mut fleet =
                ServerFleet::start(ServerSpec::new(mode, Some(SMALL_READ_BUFFER)), total);
            servers = fleet.addrs().len();
            let (baseline, _) = fleet.stats();
            let mut workers = Vec::new();
            let mut held = 0;
            for slot in &mut this_round[usize::from(mode == Mode::Wrapped)] {
                let share = total / STEPS;
                // Each step's workers take the next source addresses.
                let mut added = Worker::start_many(
                    Role::Idle,
                    share,
                    workers.len(),
                    &fleet.addrs(),
                    &[("LOAD_TOKEN", token.clone())],
                );
                let (connected, took) = all_connected(&mut added);
                held += connected;
                workers.extend(added);
                std::thread::sleep(Duration::from_secs(1));
                let (rss, live) = fleet.stats();
                let kib = (rss - baseline) as f64 / held as f64;
                *slot = kib;
                println!(
                    "  round {round} {}: {held} held (registry {live}), +{connected} in {:.1} s, {kib:.2} KiB each",
                    mode.name(),
                    took.as_secs_f64()
                );
            }
            finish_all(workers);
        }
        for step in 0..STEPS {
            overhead[step].push(this_round[1][step] - this_round[0][step]);
            per_connection[0][step].push(this_round[0][step]);
            per_connection[1][step].push(this_round[1][step]);
        }
    }
    println!(
        "\n{servers} server processes, one client worker process per 17k connections, each from loopback addresses of its own\n"
    );
    println!(
        "| connections | bare KiB/conn (median) | wrapped KiB/conn (median) | overhead KiB/conn: median (min–max) |\n| --- | --- | --- | --- |"
    );
    for step in 0..STEPS {
        println!(
            "| {} | {:.2} | {:.2} | {} |",
            total / STEPS * (step + 1),
            median(&per_connection[0][step]),
            median(&per_connection[1][step]),
            summary(&overhead[step], 2)
        );
    }
}

/// One herd run's records, as milliseconds since the epoch.
#[derive(Default)]
pub(crate) struct HerdRecords {
    /// When each token request was made, sorted.
    pub(crate) asked: Vec<f64>,
    pub(crate) renewed: usize,
    /// Token requests made to reconnect, not to renew (`x`).
    pub(crate) reconnects: usize,
    /// (when, code, the deadline of the token closed; 0 if unknown)
    closes: Vec<(f64, u16, f64)>,
    probes: Vec<(f64, Duration)>,
}

impl HerdRecords {
    pub(crate) fn parse(lines: &[String]) -> Self {
        let mut records = Self::default();
        for line in lines {
            let mut words = line.split_whitespace();
            let number = |word: Option<&str>| word.and_then(|w| w.parse::<f64>().ok());
            match words.next() {
                Some("a") => records.asked.extend(number(words.next())),
                Some("r") => records.renewed += 1,
                Some("x") => records.reconnects += 1,
                Some("c") => {
                    let at = number(words.next()).unwrap();
                    let code = number(words.next()).unwrap() as u16;
                    let deadline = number(words.next()).unwrap_or(0.0);
                    records.closes.push((at, code, deadline));
                }
                Some("p") => {
                    let at = number(words.next()).unwrap();
                    let micros = number(words.next()).unwrap();
                    records
                        .probes
                        .push((at, Duration::from_micros(micros as u64)));
                }
                _ => {}
            }
        }
        records.asked.sort_by(f64::total_cmp);
        records
    }

    /// Token requests per `bucket_ms`, bucket by bucket from `from` (epoch
    /// ms; earlier requests count in the first bucket).
    pub(crate) fn requests_per(&self, from: f64, bucket_ms: u64) -> Vec<usize> {
        let last = self.asked.last().copied().unwrap_or(from);
        let mut counts = vec![0usize; ((last - from).max(0.0) / bucket_ms as f64) as usize + 1];
        for at in &self.asked {
            counts[((at - from).max(0.0) / bucket_ms as f64) as usize] += 1;
        }
        counts
    }

    /// The token requests per `bucket_ms` as a plot's series: from a
    /// second before `from`, on an axis of seconds against `zero` (both
    /// epoch ms), to a second after the last request or `zero`.
    pub(crate) fn series(&self, label: String, from: f64, zero: f64, bucket_ms: u64) -> Series {
        let start = from - 1000.0;
        let last = self.asked.last().copied().unwrap_or(start);
        let mut counts = self.requests_per(start, bucket_ms);
        counts.resize(
            ((last.max(zero) + 1000.0 - start) / bucket_ms as f64) as usize + 1,
            0,
        );
        Series {
            label,
            start_s: (start - zero) / 1000.0,
            counts,
        }
    }

    /// The probes' p99 over `[from, to)` (epoch ms).
    pub(crate) fn probe_p99(&self, from: f64, to: f64) -> (Duration, usize) {
        let mut window: Vec<Duration> = self
            .probes
            .iter()
            .filter(|(at, _)| (from..to).contains(at))
            .map(|(_, rtt)| *rtt)
            .collect();
        window.sort();
        (percentile(&window, 0.99), window.len())
    }
}

/// Tokens minted in the same second (a deploy: every client reconnects at
/// once), through one notice and renewal round and one expiry, with the
/// server's notice jitter off and on. Each client renews on its first
/// notice with a token minted then (as a token endpoint would: `exp` is
/// now plus `renew_ttl`), and not on the second, so its connection closes
/// at that token's deadline; probes on long-lived tokens measure application
/// frames meanwhile. With `LOAD_SHARED_DEADLINE=1` every client renews with
/// one token minted beforehand instead, so all of them close at one
/// instant: the worst case.
pub(crate) fn herd_fleet() {
    const NOTIFY_BEFORE_S: u64 = 10;
    const PROBES: usize = 200;
    const BUCKET_MS: u64 = 100;
    let total = connections(100_000);
    let jitters: Vec<u64> = std::env::var("LOAD_JITTERS")
        .ok()
        .map(|list| list.split(',').filter_map(|s| s.parse().ok()).collect())
        .unwrap_or_else(|| vec![0, 30]);
    let shared_deadline = crate::env_or("LOAD_SHARED_DEADLINE", 0) == 1;
    println!(
        "\n## Herd: {total} connections whose tokens share one exp; notify_before {NOTIFY_BEFORE_S} s, leeway 0; renewal tokens {}; {PROBES} probes echo 64 B every 20 ms\n",
        if shared_deadline {
            "all one, minted beforehand (one shared deadline)"
        } else {
            "minted on the notice"
        }
    );
    println!(
        "| notice jitter | token requests: peak per 100 ms, per 1 s / mean per s over the notice window | renewed | probe p99: quiet / notices / expiry | 4401 lateness against its token's deadline p50 / p99 / max: at the clients / at the servers (close frame flushed, summed over the servers) | first deadline to last close |\n| --- | --- | --- | --- | --- | --- |"
    );
    let mut series = Vec::new();
    for jitter in jitters {
        let spec = ServerSpec::new(Mode::Wrapped, Some(SMALL_READ_BUFFER))
            .env("LOAD_NOTIFY_BEFORE_MS", NOTIFY_BEFORE_S * 1000)
            .env("LOAD_NOTICE_JITTER_MS", jitter * 1000)
            .env("LOAD_LEEWAY_MS", 0);
        let mut fleet = ServerFleet::start(spec, total + PROBES);
        let addrs = fleet.addrs();
        // Room for connecting them all before the first notice is due
        // (100k take about 20 s here).
        let connecting_s = 10 + total as u64 / 2000;
        let first_exp = now() + connecting_s + NOTIFY_BEFORE_S + jitter;
        let renew_ttl = 20 + NOTIFY_BEFORE_S + jitter;
        let mut probes = Worker::probes(PROBES, &addrs);
        let mut herd = Worker::start_many(
            Role::Herd,
            total,
            0,
            &addrs,
            &[
                ("LOAD_TOKEN", hs256_token_until(first_exp)),
                ("LOAD_RENEW_TTL_S", renew_ttl.to_string()),
                (
                    "LOAD_RENEW_TOKEN",
                    if shared_deadline {
                        hs256_token_until(first_exp + renew_ttl)
                    } else {
                        String::new()
                    },
                ),
                ("LOAD_RENEW_EXP", (first_exp + renew_ttl).to_string()),
            ],
        );
        all_connected(&mut probes);
        let (connected, took) = all_connected(&mut herd);
        let notices_from = (first_exp - NOTIFY_BEFORE_S - jitter) as f64 * 1000.0;
        assert!(
            epoch_ms() < notices_from,
            "connecting took {took:?}: past the first notice"
        );
        // Until every herd connection is gone, or a minute after the last
        // deadline could be.
        let give_up = (first_exp + renew_ttl + 60) as f64 * 1000.0;
        while fleet.stats().1 > PROBES as u64 && epoch_ms() < give_up {
            std::thread::sleep(Duration::from_millis(500));
        }
        let server_lateness = fleet.lateness();
        let herd_records = HerdRecords::parse(&finish_all(herd));
        let probe_records = HerdRecords::parse(&finish_all(probes));
        drop(fleet);

        let asked = &herd_records.asked;
        let (first, last) = (asked[0], *asked.last().unwrap());
        let per_bucket = herd_records.requests_per(notices_from, BUCKET_MS);
        let per_second = herd_records.requests_per(notices_from, 1000);
        let window_s = (jitter as f64).max((last - first) / 1000.0).max(1.0);
        let mean = asked.len() as f64 / window_s;
        // Each close against the deadline of the token it closed.
        let expired: Vec<(f64, f64)> = herd_records
            .closes
            .iter()
            .filter(|(_, code, deadline)| *code == 4401 && *deadline > 0.0)
            .map(|(at, _, deadline)| (*at, *deadline))
            .collect();
        let mut lateness: Vec<Duration> = expired
            .iter()
            .map(|(at, deadline)| Duration::from_secs_f64((at - deadline).max(0.0) / 1000.0))
            .collect();
        lateness.sort();
        let closes_4401 = lateness.len();
        let first_deadline = expired.iter().map(|c| c.1).fold(f64::MAX, f64::min);
        let last_close = expired.iter().map(|c| c.0).fold(f64::MIN, f64::max);
        let deadlines: std::collections::BTreeSet<u64> =
            expired.iter().map(|c| c.1 as u64).collect();
        let quiet = probe_records.probe_p99(notices_from - 20_000.0, notices_from);
        let notices = probe_records.probe_p99(first, last + 1000.0);
        let expiry = probe_records.probe_p99(first_deadline - 1000.0, last_close + 1000.0);
        println!(
            "| {jitter} s | {}, {} / {mean:.0} ({:.1}x per s) | {} / {connected} | {:.1} / {:.1} / {:.1} ms | {:.0} / {:.0} / {:.0} ms / {:.1} / {:.1} / {:.1} ms ({} closes) | {:.2} s, {} distinct deadlines ({closes_4401} closed 4401) |",
            per_bucket.iter().max().unwrap(),
            per_second.iter().max().unwrap(),
            *per_second.iter().max().unwrap() as f64 / mean,
            herd_records.renewed,
            millis(quiet.0),
            millis(notices.0),
            millis(expiry.0),
            millis(percentile(&lateness, 0.5)),
            millis(percentile(&lateness, 0.99)),
            millis(lateness.last().copied().unwrap_or_default()),
            millis(percentile(&server_lateness, 0.5)),
            millis(percentile(&server_lateness, 0.99)),
            millis(server_lateness.last().copied().unwrap_or_default()),
            server_lateness.len(),
            (last_close - first_deadline) / 1000.0,
            deadlines.len(),
        );
        // The plot's axis: seconds against the moment notify_before ahead
        // of exp.
        let notify_at = (first_exp - NOTIFY_BEFORE_S) as f64 * 1000.0;
        series.push(herd_records.series(
            plot::window_label("notice jitter", jitter),
            notices_from,
            notify_at,
            BUCKET_MS,
        ));
    }
    plot::renewal_rate(
        "herd-renewal-rate",
        &format!("Herd of {total}: token requests per second (100 ms buckets)"),
        BUCKET_MS,
        &series,
    );
}

/// 10k connections at the control-frame limits against one server, with
/// probes on ordinary connections: server RSS over time, and the probes'
/// p99 before and during.
pub(crate) fn abuse() {
    let abusers = connections(10_000);
    const PROBES: usize = 100;
    // Quiet and abuse alternate, each phase this long, the order reversed
    // every other round: a p99 of a few thousand samples moves by 2x from
    // one quiet stretch to the next, so a ratio needs a quiet stretch next
    // to each abused one.
    const PHASE_S: u64 = 8;
    /// Skipped at the start of each phase while it takes effect.
    const SETTLE_MS: f64 = 1000.0;
    let rounds: usize = crate::env_or("LOAD_ROUNDS", 4);
    println!(
        "\n## Abuse: {abusers} connections at the control-frame limits, one server process: each a 125 B ping a second, its 3 invalid 16 KiB control messages, an unusable renewal every 6 s (the default limits); quiet and abused phases of {PHASE_S} s alternate\n"
    );
    let token = hs256_token(3600);
    let spec = ServerSpec::new(Mode::Wrapped, Some(SMALL_READ_BUFFER)).env("LOAD_RENEW_LIMIT", 10);
    let mut fleet = ServerFleet::start(spec, abusers + PROBES);
    let addrs = fleet.addrs();
    let env = [("LOAD_TOKEN", token)];
    let mut probes = vec![Worker::start(Role::Probe, 10, PROBES, &addrs, &env)];
    let mut abusers = Worker::start_many(Role::Abuse, abusers, 0, &addrs, &env);
    all_connected(&mut probes);
    all_connected(&mut abusers);
    let (idle_rss, _) = fleet.stats();
    // (abused, from, to) of every phase, in epoch milliseconds.
    let mut phases = Vec::new();
    let mut rss_over_time = Vec::new();
    for round in 0..rounds {
        for abused in [round % 2 == 1, round % 2 == 0] {
            for worker in &mut abusers {
                if abused { worker.go() } else { worker.pause() }
            }
            let from = epoch_ms();
            for _ in 0..PHASE_S {
                std::thread::sleep(Duration::from_secs(1));
                rss_over_time.push(fleet.stats().0 / 1024);
            }
            phases.push((abused, from + SETTLE_MS, epoch_ms()));
        }
    }
    let peak_rss = rss_over_time.iter().copied().max().unwrap_or(0) * 1024;
    let (live, _) = (fleet.stats().1, ());
    let abuser_records = HerdRecords::parse(&finish_all(abusers));
    let probe_records = HerdRecords::parse(&finish_all(probes));
    std::thread::sleep(Duration::from_secs(1));
    let (after_rss, _) = fleet.stats();
    let p99 = |abused: bool| -> Vec<f64> {
        phases
            .iter()
            .filter(|(phase_abused, ..)| *phase_abused == abused)
            .map(|(_, from, to)| millis(probe_records.probe_p99(*from, *to).0))
            .collect()
    };
    let (quiet, during) = (p99(false), p99(true));
    let ratios: Vec<f64> = quiet.iter().zip(&during).map(|(q, d)| d / q).collect();
    let samples = |abused: bool| -> usize {
        phases
            .iter()
            .filter(|(phase_abused, ..)| *phase_abused == abused)
            .map(|(_, from, to)| probe_records.probe_p99(*from, *to).1)
            .sum()
    };
    println!("| measure | value |\n| --- | --- |");
    println!(
        "| server RSS: connected and idle / peak during abuse / after | {} / {} / {} MiB |",
        idle_rss / 1024,
        peak_rss / 1024,
        after_rss / 1024
    );
    println!(
        "| server RSS each second, quiet and abused phases alternating (MiB) | {} |",
        rss_over_time
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "| probe p99 per round, quiet / abused (ms) | {} |",
        quiet
            .iter()
            .zip(&during)
            .map(|(q, d)| format!("{q:.2} / {d:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| probe p99 abused / quiet: median of the {rounds} rounds' ratios (min–max) | {}x ({} and {} samples) |",
        summary(&ratios, 2),
        samples(false),
        samples(true)
    );
    println!(
        "| abusers closed by the server during the run | {} (connections live at the end: {live}) |",
        abuser_records.closes.len()
    );
}
