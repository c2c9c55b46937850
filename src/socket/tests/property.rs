//! Seeded randomized runs of one connection against the contract's
//! invariants: application frames both ways from several writers, good and
//! bad renewals, invalid control messages, clock jumps, a peer that reads
//! in bursts over a transport with backpressure, and the application
//! letting go. After every run:
//!
//! - no application frame passed in either direction after the deadline;
//! - every token got at most one notice, and the one that expired exactly
//!   one, before the close;
//! - every renewal and invalid control message was answered as the
//!   contract says, before the close;
//! - the close code is the one of the first thing that ended the
//!   connection (expiry, identity change, rate limit, bad requests, the
//!   application letting go);
//! - frames arrive complete and in order, and nothing hangs: every task
//!   ends and the registry empties.
//!
//! `WS_AUTH_PROPERTY_CASES` runs more seeds (default 96);
//! `WS_AUTH_PROPERTY_SEED` replays one.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Message;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

use super::support::Backpressure;
use super::*;
use crate::testing::Rng;

/// What the peer expects as the answer to one of its control messages.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Renewed(u64),
    Rejected(&'static str, &'static str),
}

const HANG: Duration = Duration::from_secs(3600);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_contract_holds_under_random_interleavings() {
    let cases: u64 = std::env::var("WS_AUTH_PROPERTY_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(96);
    let seeds: Vec<u64> = match std::env::var("WS_AUTH_PROPERTY_SEED") {
        Ok(seed) => vec![seed.parse().expect("WS_AUTH_PROPERTY_SEED is a number")],
        Err(_) => (0..cases).map(|n| 0x5EED_0000 + n).collect(),
    };
    let replay = seeds.len() == 1;
    let mut codes: BTreeMap<u16, usize> = BTreeMap::new();
    let mut renewed = 0;
    for seed in seeds {
        let outcome = timeout(HANG, run_case(seed))
            .await
            .unwrap_or_else(|_| panic!("seed {seed} hung"));
        *codes.entry(outcome.code).or_default() += 1;
        renewed += outcome.renewed;
    }
    eprintln!("close codes {codes:?}, renewals accepted {renewed}");
    // The generator must keep reaching every way a connection ends.
    if !replay {
        for code in [1000, 4400, 4401, 4403, 4429] {
            assert!(
                codes.contains_key(&code),
                "no run ended with {code}: {codes:?}"
            );
        }
        assert!(renewed > 0);
    }
}

struct Outcome {
    code: u16,
    renewed: usize,
}

#[allow(clippy::too_many_lines)]
async fn run_case(seed: u64) -> Outcome {
    let mut rng = Rng(seed);
    let notify = secs(rng.pick(&[0, 2, 5]));
    let leeway = secs(rng.pick(&[0, 1, 3]));
    let renew_limit = rng.pick(&[3u32, 5, 10]);
    let invalid_limit = 2;
    let layer = layer(|b| {
        b.notify_before(notify)
            .leeway(leeway)
            .renew_limit(renew_limit)
            .invalid_control_limit(invalid_limit)
    });
    let shape = if rng.chance(60) {
        Backpressure::tight(1 + rng.below(6))
    } else {
        Backpressure::ROOMY
    };
    // A starved timer task: expiry must hold without it, and it must catch
    // up once it runs again.
    let stalled = rng.chance(20);
    layer.settings().timers.stall(stalled);
    let mut exp = wall_now() + 3 + rng.below(20) as u64;
    let Setup { socket, peer } = open(&layer, &sign(SECRET, "alice", exp, 0), shape);
    let wire = peer.wire();
    let half = Arc::clone(&socket.receiver.half);
    let probe = Arc::clone(&peer.probe);
    let to_socket = peer.to_socket.clone().unwrap();
    let (sender, mut receiver) = socket.split();

    // The application: a reader (or a dropped receiver) and some writers.
    let delivered = Arc::new(Mutex::new(Vec::<String>::new()));
    let late_inbound = Arc::new(Mutex::new(0usize));
    let mut reader = if rng.chance(75) {
        let (delivered, late_inbound) = (Arc::clone(&delivered), Arc::clone(&late_inbound));
        let half = Arc::clone(&half);
        Some(tokio::spawn(async move {
            while let Some(Ok(message)) = receiver.recv().await {
                if half.deadline().has_passed() {
                    *late_inbound.lock().unwrap() += 1;
                }
                if let Message::Text(text) = message {
                    delivered.lock().unwrap().push(text.as_str().to_owned());
                }
            }
        }))
    } else {
        drop(receiver);
        None
    };
    let reads = reader.is_some();
    let writer_count = 1 + rng.below(4);
    let mut writers = Vec::new();
    for writer in 0..writer_count {
        let mut sender = sender.clone();
        let pace = Duration::from_millis(rng.pick(&[0, 1, 20, 300]));
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while sender
                .send(Message::Text(format!("w{writer}:{n}").into()))
                .await
                .is_ok()
            {
                n += 1;
                tokio::time::sleep(pace.max(Duration::from_millis(1))).await;
            }
        }));
    }
    drop(sender);

    // The peer reads in bursts, with pauses that let the transport fill.
    let received = Arc::new(Mutex::new(Vec::<(Instant, Message)>::new()));
    let (pauses_tx, mut pauses) = mpsc::unbounded_channel::<(u64, u64)>();
    for _ in 0..10_000 {
        let _ = pauses_tx.send((1 + rng.below(40) as u64, rng.pick(&[0, 10, 200, 1500])));
    }
    let peer_reader = {
        let received = Arc::clone(&received);
        let mut peer = peer;
        peer.hang_up();
        tokio::spawn(async move {
            loop {
                let (burst, pause) = pauses.recv().await.unwrap_or((1_000_000, 0));
                for _ in 0..burst {
                    let Some(message) = peer.recv().await else {
                        return;
                    };
                    let is_close = matches!(message, Message::Close(_));
                    received.lock().unwrap().push((Instant::now(), message));
                    if is_close {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        })
    };

    // The script, and the model of what must happen.
    let send = |text: String| {
        let _ = to_socket.send(Ok(Message::Text(text.into())));
    };
    let mut expected_code: Option<u16> = None;
    let mut attempts: VecDeque<Instant> = VecDeque::new();
    let mut invalid = 0;
    let mut answers: BTreeMap<String, Answer> = BTreeMap::new();
    let mut sent_app = Vec::new();
    let mut application_gone = false;
    let steps = 10 + rng.below(40);
    for step in 0..steps {
        let deadline = half.deadline().deadline();
        let wait = Duration::from_millis(rng.pick(&[0, 1, 50, 400, 1500, 4000]));
        if Instant::now() + wait >= deadline {
            tokio::time::sleep_until(deadline).await;
            expected_code = Some(4401);
            break;
        }
        tokio::time::sleep(wait).await;
        let id = format!("s{step}");
        let renew = |attempts: &mut VecDeque<Instant>| {
            let now = Instant::now();
            while attempts
                .front()
                .is_some_and(|first| now.duration_since(*first) >= secs(60))
            {
                attempts.pop_front();
            }
            if attempts.len() >= renew_limit as usize {
                return false;
            }
            attempts.push_back(now);
            true
        };
        let json =
            |token: &str| json!({"type": "auth.renew", "token": token, "id": id}).to_string();
        match rng.below(20) {
            0..=7 => {
                let text = format!("p{step}");
                send(text.clone());
                sent_app.push(text);
            }
            8..=10 => {
                let new_exp = exp + 1 + rng.below(30) as u64;
                send(json(&sign(SECRET, "alice", new_exp, 1)));
                if !renew(&mut attempts) {
                    expected_code = Some(4429);
                    break;
                }
                answers.insert(id.clone(), Answer::Renewed(new_exp));
                exp = new_exp;
            }
            11 => {
                send(json(&sign(OTHER_SECRET, "alice", exp + 60, 1)));
                if !renew(&mut attempts) {
                    expected_code = Some(4429);
                    break;
                }
                answers.insert(
                    id.clone(),
                    Answer::Rejected("invalid_token", "signature invalid"),
                );
            }
            12 => {
                send(json(&sign(SECRET, "alice", exp - rng.below(2) as u64, 1)));
                if !renew(&mut attempts) {
                    expected_code = Some(4429);
                    break;
                }
                let reason = "token not newer than the current one";
                answers.insert(id.clone(), Answer::Rejected("invalid_token", reason));
            }
            13 => {
                send(json(&sign(SECRET, "alice", wall_now() - 120, 1)));
                if !renew(&mut attempts) {
                    expected_code = Some(4429);
                    break;
                }
                answers.insert(
                    id.clone(),
                    Answer::Rejected("invalid_token", "token expired"),
                );
            }
            14..=15 => {
                send(json!({"type": "auth.bogus", "id": id}).to_string());
                invalid += 1;
                if invalid > invalid_limit {
                    expected_code = Some(4400);
                    break;
                }
                let reason = "unknown control message type";
                answers.insert(id.clone(), Answer::Rejected("invalid_request", reason));
            }
            16 if rng.chance(25) => {
                send(json(&sign(SECRET, "mallory", exp + 60, 1)));
                expected_code = Some(if renew(&mut attempts) { 4403 } else { 4429 });
                break;
            }
            17 if rng.chance(25) => {
                for writer in &writers {
                    writer.abort();
                }
                if let Some(reader) = &reader {
                    reader.abort();
                }
                application_gone = true;
                expected_code = Some(1000);
                break;
            }
            _ => {}
        }
        settle().await;
        if let Some(Answer::Renewed(new_exp)) = answers.get(&format!("s{step}")) {
            assert_eq!(
                half.deadline().exp(),
                *new_exp,
                "seed {seed}: renewal applied"
            );
        }
        // Control frames wait only for room on the wire.
        assert!(
            !half.control_pending() || wire.queued() >= shape.in_flight,
            "seed {seed}: a control frame waits while the wire has room ({} queued)",
            wire.queued()
        );
    }
    let expected_code = match expected_code {
        Some(code) => code,
        None => {
            tokio::time::sleep_until(half.deadline().deadline()).await;
            4401
        }
    };
    if expected_code == 4401 {
        // The peer keeps talking past the deadline, now or after the
        // writers had their turn; none of it may reach the application.
        if rng.chance(50) {
            send("late0".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(rng.pick(&[0, 10, 2000]))).await;
        send("late1".to_owned());
    }
    layer.settings().timers.stall(false);
    let final_deadline = half.deadline().deadline();
    let final_exp = half.deadline().exp();
    if application_gone {
        // `abort` takes effect when the runtime next gets to the tasks: the
        // application is gone (its halves dropped) before the peer hangs
        // up, as the model's 1000 assumes. A peer that hangs up first is a
        // lost connection, with no close frame to see.
        for writer in writers.drain(..) {
            let _ = writer.await;
        }
        if let Some(reader) = reader.take() {
            let _ = reader.await;
        }
    }
    drop(to_socket);

    // Everything winds down by itself.
    timeout(HANG, peer_reader)
        .await
        .unwrap_or_else(|_| panic!("seed {seed}: the peer never saw the close"))
        .unwrap();
    for writer in writers {
        let ended = timeout(HANG, writer).await;
        assert!(ended.is_ok(), "seed {seed}: a writer stayed parked");
    }
    if let Some(reader) = reader {
        let ended = timeout(HANG, reader).await;
        assert!(ended.is_ok(), "seed {seed}: the reader never saw the end");
    }
    timeout(HANG, layer.connections().closed())
        .await
        .unwrap_or_else(|_| panic!("seed {seed}: the connection stayed registered"));

    // What the peer saw.
    let received = received.lock().unwrap();
    let (closed_at, close) = received.last().expect("the peer saw frames");
    let Message::Close(Some(close)) = close else {
        panic!("seed {seed}: the last frame is not a close: {close:?}");
    };
    assert_eq!(close.code, expected_code, "seed {seed}: close code");
    if expected_code == 4401 {
        assert!(*closed_at >= final_deadline, "seed {seed}: closed early");
    }
    let mut notices: BTreeMap<u64, usize> = BTreeMap::new();
    let mut next = vec![0usize; writer_count];
    let mut answered: BTreeMap<String, Answer> = BTreeMap::new();
    for (_, message) in received.iter() {
        let Message::Text(text) = message else {
            continue;
        };
        let text = text.as_str();
        if let Some((writer, n)) = text.strip_prefix('w').and_then(|rest| rest.split_once(':')) {
            let (writer, n): (usize, usize) = (writer.parse().unwrap(), n.parse().unwrap());
            assert_eq!(n, next[writer], "seed {seed}: writer {writer} out of order");
            next[writer] += 1;
            continue;
        }
        let control: Value = serde_json::from_str(text).unwrap();
        let id = control["id"].as_str().map(str::to_owned);
        match control["type"].as_str().unwrap() {
            "auth.expiring" => *notices.entry(control["exp"].as_u64().unwrap()).or_default() += 1,
            "auth.renewed" => {
                let exp = control["exp"].as_u64().unwrap();
                assert!(answered.insert(id.unwrap(), Answer::Renewed(exp)).is_none());
            }
            "auth.renew_rejected" => {
                let error = control["error"].as_str().unwrap();
                let reason = control["error_description"].as_str().unwrap();
                let expected = answers
                    .get(id.as_deref().unwrap())
                    .unwrap_or_else(|| panic!("seed {seed}: unexpected answer {control}"));
                let Answer::Rejected(want_error, want_reason) = expected else {
                    panic!("seed {seed}: {control} for a good renewal");
                };
                assert_eq!((error, reason), (*want_error, *want_reason), "seed {seed}");
                answered.insert(id.unwrap(), expected.clone());
            }
            other => panic!("seed {seed}: unknown control message {other}"),
        }
    }
    assert_eq!(
        answered, answers,
        "seed {seed}: every control message answered"
    );
    assert!(
        notices.values().all(|&count| count == 1),
        "seed {seed}: notices per token {notices:?}"
    );
    if expected_code == 4401 && !stalled {
        assert_eq!(
            notices.get(&final_exp),
            Some(&1),
            "seed {seed}: the expiring token's notice"
        );
    }
    assert!(
        probe.late_frames().is_empty(),
        "seed {seed}: frames sent after the deadline {:?}",
        probe.late_frames()
    );
    assert_eq!(
        *late_inbound.lock().unwrap(),
        0,
        "seed {seed}: frames read after the deadline"
    );
    if reads && !application_gone {
        assert_eq!(
            *delivered.lock().unwrap(),
            sent_app,
            "seed {seed}: peer frames delivered in order"
        );
    }
    let renewed = answers
        .values()
        .filter(|answer| matches!(answer, Answer::Renewed(_)))
        .count();
    Outcome {
        code: expected_code,
        renewed,
    }
}
