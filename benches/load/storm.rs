//! Reconnect storm: every server restarts under 50k of the crate's Rust
//! clients, which reconnect with their jittered backoff. Needs the
//! `client` feature: `cargo bench --bench load --features client -- storm`.

#[cfg(feature = "client")]
pub(crate) use with_client::{storm, storm_worker};

#[cfg(not(feature = "client"))]
pub(crate) fn storm() {
    println!(
        "\n## Reconnect storm: SKIPPED, it runs the crate's Rust client: \
         cargo bench --bench load --features client -- storm\n"
    );
}

#[cfg(not(feature = "client"))]
pub(crate) async fn storm_worker(_: &crate::records::Records) {
    unreachable!("the storm scenario starts no worker without the client feature")
}

#[cfg(feature = "client")]
mod with_client {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use axum_ws_auth::client::{AuthClient, ClientEvent, TokenPlacement};
    use jsonwebtoken::Header;
    use tokio::sync::mpsc;

    use crate::fleet::{Role, ServerFleet, Worker, all_connected, finish_all};
    use crate::records::{Records, env, epoch_ms, stopped};
    use crate::server::ServerSpec;
    use crate::stats::{millis, percentile};
    use crate::{Mode, SECRET, SMALL_READ_BUFFER, claims, keys};

    /// One client's reconnection, as its events tell it.
    #[derive(Default)]
    struct Reconnection {
        connected: u32,
        /// When the attempt now under way started: the last disconnection
        /// plus the delay it announced.
        attempt_started: Option<Instant>,
        handshake: Option<Duration>,
    }

    /// A milestone of the worker: every client connected once, or again.
    enum Milestone {
        AllConnected,
        AllBack,
    }

    pub(crate) async fn storm_worker(records: &Records) {
        let count: usize = env("LOAD_COUNT").parse().unwrap();
        let addrs: Vec<String> = env("LOAD_ADDRS").split(',').map(str::to_owned).collect();
        let offset: usize = env("LOAD_OFFSET").parse().unwrap();
        let token = env("LOAD_TOKEN");
        let states: Arc<Mutex<Vec<Reconnection>>> = Arc::new(Mutex::new(
            (0..count).map(|_| Reconnection::default()).collect(),
        ));
        let counts = Arc::new(Mutex::new([0usize; 2]));
        let (milestones, mut reached) = mpsc::unbounded_channel();
        let clients: Vec<AuthClient> = (0..count)
            .map(|n| {
                let token = token.clone();
                let (states, counts, milestones) =
                    (states.clone(), counts.clone(), milestones.clone());
                let url = format!("ws://{}/ws", addrs[(offset + n) % addrs.len()]);
                AuthClient::builder(url, move || {
                    let token = token.clone();
                    async move { Ok::<_, std::io::Error>(token) }
                })
                .token_placement(TokenPlacement::Header)
                .on_event(move |event| {
                    let mut states = states.lock().unwrap();
                    let state = &mut states[n];
                    match event {
                        ClientEvent::Disconnected { retry_in, .. } => {
                            state.attempt_started = Some(Instant::now() + retry_in);
                        }
                        ClientEvent::Connected { .. } => {
                            state.connected += 1;
                            if state.connected == 2 {
                                state.handshake = state.attempt_started.map(|at| at.elapsed());
                            }
                            if state.connected <= 2 {
                                let mut counts = counts.lock().unwrap();
                                let index = state.connected as usize - 1;
                                counts[index] += 1;
                                if counts[index] == count {
                                    let _ = milestones.send(if index == 0 {
                                        Milestone::AllConnected
                                    } else {
                                        Milestone::AllBack
                                    });
                                }
                            }
                        }
                        _ => {}
                    }
                })
                .connect()
            })
            .collect();
        while let Some(milestone) = reached.recv().await {
            match milestone {
                Milestone::AllConnected => println!("connected {count} 0"),
                Milestone::AllBack => {
                    println!("back {:.1}", epoch_ms());
                    break;
                }
            }
        }
        for state in states.lock().unwrap().iter() {
            if let Some(handshake) = state.handshake {
                records.push(format!("h {}", handshake.as_micros()));
            }
        }
        stopped().await;
        drop(clients);
    }

    /// Restarts the servers under 50k clients, with HS256 and with ES256.
    pub(crate) fn storm() {
        let connections = crate::scale::connections(50_000);
        println!(
            "\n## Reconnect storm: {connections} Rust clients (default backoff: 0.5 s base, 30 s cap, full jitter); every server killed, restarted 1 s later\n"
        );
        println!(
            "| alg | servers | all back after restart | handshake (reconnecting attempt) p50 / p99 / max |\n| --- | --- | --- | --- |"
        );
        for (name, alg, _, encoding) in keys::signing_keys(SECRET) {
            if !matches!(name, "HS256" | "ES256") {
                continue;
            }
            let token = jsonwebtoken::encode(&Header::new(alg), &claims(3600), &encoding).unwrap();
            let spec = ServerSpec::new(Mode::Wrapped, Some(SMALL_READ_BUFFER)).alg(name);
            let mut fleet = ServerFleet::start(spec, connections);
            let addrs = fleet.addrs();
            let mut workers = Worker::start_many(
                Role::Storm,
                connections,
                0,
                &addrs,
                &[("LOAD_TOKEN", token)],
            );
            let (connected, _) = all_connected(&mut workers);
            assert_eq!(connected, connections);
            let addrs = fleet.kill();
            std::thread::sleep(Duration::from_secs(1));
            let restarted = epoch_ms();
            fleet.restart(&addrs);
            let back: Vec<f64> = workers
                .iter_mut()
                .map(|worker| {
                    let line = worker.line();
                    line.strip_prefix("back ").unwrap().parse::<f64>().unwrap()
                })
                .collect();
            let all_back = back.iter().copied().fold(f64::MIN, f64::max) - restarted;
            let mut handshakes: Vec<Duration> = finish_all(workers)
                .iter()
                .filter_map(|record| record.strip_prefix("h "))
                .map(|micros| Duration::from_micros(micros.parse().unwrap()))
                .collect();
            handshakes.sort();
            println!(
                "| {name} | {} | {:.1} s | {:.1} / {:.1} / {:.1} ms ({} samples) |",
                addrs.len(),
                all_back / 1000.0,
                millis(percentile(&handshakes, 0.5)),
                millis(percentile(&handshakes, 0.99)),
                millis(handshakes.last().copied().unwrap_or_default()),
                handshakes.len()
            );
        }
    }
}
