//! How a connection ends when the application lets go: on any thread, with
//! or without a runtime, both halves at once.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::support::Backpressure;
use super::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn dropping_both_halves_at_once_on_two_threads_always_sends_the_close() {
    let runtime = runtime();
    let layer = layer(defaults);
    let token = sign(SECRET, "alice", wall_now() + 3600, 0);
    for round in 0..500 {
        let Setup { socket, mut peer } =
            runtime.block_on(async { open(&layer, &token, Backpressure::ROOMY) });
        let (mut sender, receiver) = socket.split();
        if round % 2 == 0 {
            // Several clones, dropped together with the receiver.
            let clone = sender.clone();
            drop(std::mem::replace(&mut sender, clone));
        }
        let start = Arc::new(Barrier::new(2));
        // Neither thread has a runtime: the drops start tasks on the
        // connection's own.
        let threads = [
            std::thread::spawn({
                let start = Arc::clone(&start);
                move || {
                    start.wait();
                    drop(sender);
                }
            }),
            std::thread::spawn({
                let start = Arc::clone(&start);
                move || {
                    start.wait();
                    drop(receiver);
                }
            }),
        ];
        for thread in threads {
            thread.join().expect("dropping a half panicked");
        }
        let close = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), peer.expect_close()).await
        });
        assert_eq!(close.expect("close frame lost").0, 1000, "round {round}");
    }
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), layer.connections().closed())
            .await
            .expect("a connection stayed registered");
    });
}

#[test]
fn dropping_the_socket_outside_any_runtime_closes_it_normally() {
    let runtime = runtime();
    let layer = layer(defaults);
    let token = sign(SECRET, "alice", wall_now() + 3600, 0);
    let Setup { socket, mut peer } =
        runtime.block_on(async { open(&layer, &token, Backpressure::ROOMY) });
    std::thread::spawn(move || drop(socket))
        .join()
        .expect("dropping outside a runtime panicked");
    let close = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), peer.expect_close()).await
    });
    assert_eq!(close.expect("no close frame").0, 1000);
}

/// A connection registered during shutdown is closed at once, and its
/// registration is released when that close is over, even while the
/// application still holds the socket: `Connections::closed()` resolves.
#[test]
fn connections_opened_during_shutdown_are_released_once_closed() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let layer = layer(defaults);
    layer.connections().shutdown();
    let token = sign(SECRET, "alice", wall_now() + 3600, 0);
    let settings = Arc::clone(layer.settings());
    let valid = settings.check_token(&token).unwrap();
    let mut held = Vec::new();
    runtime.block_on(async {
        for _ in 0..3000 {
            let (transport, mut peer) = support::pipe(Backpressure::ROOMY);
            peer.vanish();
            let socket = spawn(
                transport,
                crate::upgrade::Authenticated {
                    claims: Arc::new(valid.claims.clone()),
                    registered: Arc::new(valid.registered.clone()),
                    source: crate::token::TokenSource::Header,
                    protocol: None,
                    settings: Arc::clone(&settings),
                },
            );
            held.push((socket, peer));
        }
        let closed =
            tokio::time::timeout(Duration::from_secs(10), layer.connections().closed()).await;
        assert!(
            closed.is_ok(),
            "{} connections still registered although every close finished",
            layer.connections().count()
        );
    });
}
