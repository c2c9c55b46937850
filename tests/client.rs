//! The Rust client against a real server: renewal across several
//! expiries, single-flight token fetches, reconnect with backoff, stop on
//! 4403 and on repeated refusals, timeouts, unusable tokens, a skewed
//! clock, extreme `exp` values, the backoff reset rule and a clean close.
//! Timer-only paths run on tokio's paused clock; real-time tests stay short.
#![cfg(feature = "client")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum_ws_auth::client::{
    AuthClient, Backoff, ClientError, ClientEvent, Message, TokenPlacement,
};
use axum_ws_auth::policy::{PolicyDenial, PolicyRequest};
use common::*;
use serde_json::json;

async fn next_event(client: &mut AuthClient) -> ClientEvent {
    tokio::time::timeout(Duration::from_secs(15), client.next_event())
        .await
        .expect("no client event within 15 s")
        .expect("client stopped")
}

/// A token provider whose calls numbered in `failing` (the first is 0) fail
/// like a refresh endpoint that is down; the others mint a token for alice
/// living `ttl` seconds plus the call's number, so each outlives the one
/// before even when minted in the same second (a renewal must carry a later
/// `exp`).
fn failing_provider(
    failing: std::ops::RangeInclusive<usize>,
    ttl: i64,
) -> impl Fn() -> std::future::Ready<Result<String, std::io::Error>> + Send + Sync + 'static {
    let calls = AtomicUsize::new(0);
    move || {
        let call = calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if failing.contains(&call) {
            Err(std::io::Error::other("refresh endpoint down"))
        } else {
            Ok(token("alice", ttl + call as i64))
        })
    }
}

fn fast_backoff() -> Backoff {
    Backoff {
        base: Duration::from_millis(50),
        max: Duration::from_millis(200),
    }
}

#[tokio::test]
async fn renews_across_several_expiries_without_dropping_and_fetches_single_flight() {
    // Two-second tokens, a notice one second ahead: a renewal every second.
    let addr = serve(
        builder()
            .leeway(Duration::ZERO)
            .notify_before(Duration::from_secs(1)),
    )
    .await;
    let fetches = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most_in_flight = Arc::new(AtomicUsize::new(0));
    let provider = {
        let (fetches, in_flight, most) =
            (fetches.clone(), in_flight.clone(), most_in_flight.clone());
        move || {
            let (fetches, in_flight, most) = (fetches.clone(), in_flight.clone(), most.clone());
            async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // A slow refresh endpoint: notice and own timer overlap.
                tokio::time::sleep(Duration::from_millis(150)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(token("alice", 2))
            }
        }
    };
    let mut client = AuthClient::builder(format!("ws://{addr}/ws"), provider)
        .renew_before(Duration::from_secs(1))
        .backoff(fast_backoff())
        .connect();
    assert_eq!(
        next_event(&mut client).await,
        ClientEvent::Connected {
            protocol: Some("wsauth.v1".into())
        }
    );
    let mut renewals = 0;
    let mut echoes = 0;
    let mut sent = 0;
    while renewals < 3 {
        client
            .send(Message::Text(format!("m{sent}").into()))
            .await
            .unwrap();
        sent += 1;
        match next_event(&mut client).await {
            ClientEvent::Renewed { .. } => renewals += 1,
            ClientEvent::Message(Message::Text(text)) => {
                assert_eq!(text.as_str(), format!("m{echoes}"));
                echoes += 1;
            }
            ClientEvent::RenewRejected { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(echoes > 0);
    assert_eq!(
        most_in_flight.load(Ordering::SeqCst),
        1,
        "token fetches overlapped"
    );
    assert!(fetches.load(Ordering::SeqCst) >= 4);
    client.close().await;
}

#[tokio::test]
async fn reconnects_with_backoff_after_4429_and_after_4401() {
    // A renewal limit of one: the second renewal closes with 4429.
    let addr = serve(
        builder()
            .renew_limit(1)
            .leeway(Duration::ZERO)
            .notify_before(Duration::from_secs(1)),
    )
    .await;
    let mut client = AuthClient::builder(format!("ws://{addr}/ws"), || async {
        Ok::<_, std::io::Error>(token("alice", 2))
    })
    .token_placement(TokenPlacement::Header)
    .renew_before(Duration::from_millis(1500))
    .backoff(fast_backoff())
    .connect();
    assert!(matches!(
        next_event(&mut client).await,
        ClientEvent::Connected { .. }
    ));
    let mut saw = Vec::new();
    while saw.len() < 2 {
        match next_event(&mut client).await {
            ClientEvent::Disconnected { code, retry_in, .. } => {
                assert!(retry_in <= Duration::from_millis(200));
                saw.push(code);
                assert!(matches!(
                    next_event(&mut client).await,
                    ClientEvent::Connected { .. }
                ));
            }
            ClientEvent::Renewed { .. } | ClientEvent::RenewRejected { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        saw.iter()
            .all(|code| *code == Some(4429) || *code == Some(4401)),
        "{saw:?}"
    );
    client.close().await;
}

#[tokio::test]
async fn a_rejected_renewal_runs_into_4401_and_the_client_reconnects() {
    let addr = serve(
        builder()
            .leeway(Duration::ZERO)
            .notify_before(Duration::from_secs(1))
            .policy(|request: PolicyRequest<Claims>| {
                let denied = request.claims().scope == "denied";
                std::future::ready(if denied {
                    Err(PolicyDenial::Forbidden)
                } else {
                    Ok(())
                })
            }),
    )
    .await;
    // Every renewal on the first connection is refused, however many the
    // client tries (it answers the server's notice even after giving up).
    let calls = Arc::new(AtomicUsize::new(0));
    let denying = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let provider = {
        let (calls, denying) = (calls.clone(), denying.clone());
        move || {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            let deny = call > 0 && denying.load(Ordering::SeqCst);
            async move {
                let mut claims = claims("alice", 2);
                if deny {
                    claims["scope"] = json!("denied");
                }
                Ok::<_, std::io::Error>(sign(&claims))
            }
        }
    };
    let mut client = AuthClient::builder(format!("ws://{addr}/ws"), provider)
        .backoff(fast_backoff())
        .connect();
    assert!(matches!(
        next_event(&mut client).await,
        ClientEvent::Connected { .. }
    ));
    loop {
        match next_event(&mut client).await {
            ClientEvent::RenewRejected { .. } => {}
            ClientEvent::Disconnected { code, .. } => {
                assert_eq!(code, Some(4401));
                denying.store(false, Ordering::SeqCst);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // A reconnect that raced the switch is refused once and retried.
    loop {
        match next_event(&mut client).await {
            ClientEvent::Connected { .. } => break,
            ClientEvent::Error(ClientError::Refused(403)) | ClientEvent::Disconnected { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    client.close().await;
}

#[tokio::test]
async fn stops_for_good_on_4403() {
    let addr = serve(
        builder()
            .leeway(Duration::ZERO)
            .notify_before(Duration::from_secs(1)),
    )
    .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let provider = {
        let calls = calls.clone();
        move || {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, std::io::Error>(token(if call == 0 { "alice" } else { "mallory" }, 2)) }
        }
    };
    let mut client = AuthClient::builder(format!("ws://{addr}/ws"), provider)
        .backoff(fast_backoff())
        .connect();
    assert!(matches!(
        next_event(&mut client).await,
        ClientEvent::Connected { .. }
    ));
    assert_eq!(
        next_event(&mut client).await,
        ClientEvent::Stopped {
            code: Some(4403),
            reason: "forbidden".into()
        }
    );
    assert!(client.next_event().await.is_none());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "no reconnect after 4403");
}

async fn recv(events: &mut tokio::sync::mpsc::UnboundedReceiver<ClientEvent>) -> ClientEvent {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("no client event within 10 s")
        .expect("callback dropped")
}

async fn next_from_stream(client: &mut AuthClient) -> ClientEvent {
    use futures_util::StreamExt;
    tokio::time::timeout(Duration::from_secs(10), client.next())
        .await
        .expect("no client event within 10 s")
        .expect("client stopped")
}

fn instant_backoff() -> Backoff {
    Backoff {
        base: Duration::from_millis(1),
        max: Duration::from_millis(8),
    }
}

/// A provider that counts its calls and answers with `answer(call)`.
fn counting<F>(
    answer: F,
) -> (
    Arc<AtomicUsize>,
    impl Fn() -> std::future::Ready<Result<String, std::io::Error>> + Send + Sync + 'static,
)
where
    F: Fn(usize) -> String + Send + Sync + 'static,
{
    let calls = Arc::new(AtomicUsize::new(0));
    let provider = {
        let calls = calls.clone();
        move || std::future::ready(Ok(answer(calls.fetch_add(1, Ordering::SeqCst))))
    };
    (calls, provider)
}

#[tokio::test]
async fn repeated_refusals_stop_after_the_configured_number_of_attempts() {
    // 403: the application refuses every token.
    let addr = serve(
        builder()
            .policy(|_: PolicyRequest<Claims>| std::future::ready(Err(PolicyDenial::Forbidden))),
    )
    .await;
    let (calls, provider) = counting(|_| token("alice", 60));
    let mut client = AuthClient::builder(format!("ws://{addr}/ws"), provider)
        .backoff(instant_backoff())
        .max_refused_handshakes(3)
        .connect();
    for attempt in 0..2 {
        assert_eq!(
            next_event(&mut client).await,
            ClientEvent::Error(ClientError::Refused(403))
        );
        match next_event(&mut client).await {
            ClientEvent::Disconnected {
                code: Some(403),
                attempt: a,
                ..
            } => assert_eq!(a, attempt),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        next_event(&mut client).await,
        ClientEvent::Error(ClientError::Refused(403))
    );
    match next_event(&mut client).await {
        ClientEvent::Stopped {
            code: Some(403),
            reason,
        } => assert!(reason.contains("refused 3 times"), "{reason}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(client.next_event().await.is_none());
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // 401: an expired token, every time.
    let addr = serve(builder().leeway(Duration::ZERO)).await;
    let (calls, provider) = counting(|_| token("alice", -60));
    let mut client = AuthClient::builder(format!("ws://{addr}/ws"), provider)
        .token_placement(TokenPlacement::Header)
        .backoff(instant_backoff())
        .max_refused_handshakes(2)
        .connect();
    let mut events = Vec::new();
    while let Some(event) = client.next_event().await {
        events.push(event);
    }
    assert!(matches!(
        events.last(),
        Some(ClientEvent::Stopped {
            code: Some(401),
            ..
        })
    ));
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_400_handshake_stops_at_once() {
    let addr = serve(builder()).await;
    // Only the bearer entry: the server refuses the protocol list with 400.
    let mut client = AuthClient::builder(format!("ws://{addr}/ws"), || async {
        Ok::<_, std::io::Error>(token("alice", 60))
    })
    .protocols(Vec::<String>::new())
    .connect();
    assert_eq!(
        next_event(&mut client).await,
        ClientEvent::Error(ClientError::Refused(400))
    );
    assert!(matches!(
        next_event(&mut client).await,
        ClientEvent::Stopped {
            code: Some(400),
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_token_provider_that_never_answers_times_out_and_is_retried() {
    let calls = Arc::new(AtomicUsize::new(0));
    let provider = {
        let calls = calls.clone();
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<String, std::io::Error>>()
        }
    };
    // Never reached: no token ever arrives.
    let mut client = AuthClient::builder("ws://127.0.0.1:9/ws", provider)
        .backoff(fast_backoff())
        .connect();
    let start = tokio::time::Instant::now();
    for attempt in 0..3 {
        assert_eq!(
            client.next_event().await.unwrap(),
            ClientEvent::Error(ClientError::TokenTimeout(Duration::from_secs(10)))
        );
        match client.next_event().await.unwrap() {
            ClientEvent::Disconnected {
                code: None,
                attempt: a,
                ..
            } => assert_eq!(a, attempt),
            other => panic!("unexpected {other:?}"),
        }
    }
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
        "{waited:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    client.close().await;
}

#[tokio::test]
async fn tokens_are_trimmed_and_an_html_page_is_an_error_event_then_a_retry() {
    for placement in [TokenPlacement::Subprotocol, TokenPlacement::Header] {
        let addr = serve(builder()).await;
        let (calls, provider) = counting(|call| match call {
            0 => "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>\n".into(),
            _ => format!("{}\n", token("alice", 60)),
        });
        let mut client = AuthClient::builder(format!("ws://{addr}/ws"), provider)
            .token_placement(placement)
            .backoff(instant_backoff())
            .connect();
        match next_event(&mut client).await {
            ClientEvent::Error(error @ ClientError::UnusableToken(_)) => {
                assert!(!error.to_string().contains("html"), "{error}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            next_event(&mut client).await,
            ClientEvent::Disconnected {
                attempt: 0,
                code: None,
                ..
            }
        ));
        assert!(matches!(
            next_event(&mut client).await,
            ClientEvent::Connected { .. }
        ));
        client.send(Message::Text("hi".into())).await.unwrap();
        assert_eq!(
            next_event(&mut client).await,
            ClientEvent::Message(Message::Text("hi".into()))
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        client.close().await;
    }
}

// On the paused clock: the timeouts are exact, and `close` shows it does
// not wait for the attempt by returning before that attempt's timeout.
#[tokio::test(start_paused = true)]
async fn a_listener_that_never_answers_the_upgrade_times_out() {
    let addr = silent_listener().await;
    let mut client = AuthClient::builder(format!("ws://{addr}/ws"), || async {
        Ok::<_, std::io::Error>(token("alice", 60))
    })
    .handshake_timeout(Duration::from_millis(200))
    .backoff(instant_backoff())
    .connect();
    let start = tokio::time::Instant::now();
    for attempt in 0..2 {
        assert_eq!(
            next_event(&mut client).await,
            ClientEvent::Error(ClientError::HandshakeTimeout(Duration::from_millis(200)))
        );
        assert!(matches!(
            next_event(&mut client).await,
            ClientEvent::Disconnected { attempt: a, .. } if a == attempt
        ));
    }
    // Each attempt waited out its whole timeout.
    assert!(start.elapsed() >= Duration::from_millis(400));
    // close() does not wait for an attempt under way: it returns before
    // the third attempt's timeout could pass.
    let closing = tokio::time::Instant::now();
    client.close().await;
    assert!(closing.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn close_sends_a_close_frame_and_the_server_sees_a_normal_close() {
    let (addr, mut seen) = serve_recording(builder()).await;
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let client = AuthClient::builder(format!("ws://{addr}/ws"), || async {
        Ok::<_, std::io::Error>(token("alice", 60))
    })
    .on_event(move |event| {
        let _ = tx.send(event);
    })
    // close() can only return early because the server answered.
    .close_timeout(Duration::from_secs(3600))
    .connect();
    assert!(matches!(
        recv(&mut events).await,
        ClientEvent::Connected { .. }
    ));
    client.send(Message::Text("bye soon".into())).await.unwrap();
    assert_eq!(
        recv(&mut events).await,
        ClientEvent::Message(Message::Text("bye soon".into()))
    );
    tokio::time::timeout(Duration::from_secs(15), client.close())
        .await
        .expect("close() returns on the server's close reply");
    let mut server_saw = Vec::new();
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_secs(5), seen.recv()).await {
        let end = item == Seen::End;
        server_saw.push(item);
        if end {
            break;
        }
    }
    assert_eq!(
        server_saw,
        [
            Seen::Text("bye soon".into()),
            Seen::Close(Some(1000)),
            Seen::End
        ]
    );
    assert_eq!(
        recv(&mut events).await,
        ClientEvent::Stopped {
            code: Some(1000),
            reason: "closed by the application".into()
        }
    );
}

#[tokio::test]
async fn backoff_grows_against_a_server_that_closes_at_once_and_resets_after_data_or_time() {
    async fn attempts(mut client: AuthClient, rounds: usize, say_hello: bool) -> Vec<u32> {
        let mut attempts = Vec::new();
        while attempts.len() < rounds {
            match next_event(&mut client).await {
                ClientEvent::Connected { .. } if say_hello => {
                    client.send(Message::Text("hello".into())).await.unwrap();
                }
                ClientEvent::Disconnected { attempt, .. } => attempts.push(attempt),
                _ => {}
            }
        }
        client.close().await;
        attempts
    }
    let connect = |addr: std::net::SocketAddr| {
        AuthClient::builder(format!("ws://{addr}/ws"), || async {
            Ok::<_, std::io::Error>(token("alice", 60))
        })
        .backoff(instant_backoff())
        .backoff_reset_after(Duration::from_millis(300))
        .connect()
    };
    // Accepts, then drops the connection at once: delays keep growing.
    let addr = serve_flaky(builder(), Duration::ZERO, false).await;
    assert_eq!(attempts(connect(addr), 5, false).await, [0, 1, 2, 3, 4]);
    // Application data came through before the drop: a fresh start each time.
    let addr = serve_flaky(builder(), Duration::ZERO, true).await;
    assert_eq!(attempts(connect(addr), 3, true).await, [0, 0, 0]);
    // Open for longer than `backoff_reset_after`: the same.
    let addr = serve_flaky(builder(), Duration::from_millis(400), false).await;
    assert_eq!(attempts(connect(addr), 2, false).await, [0, 0]);
}

#[tokio::test]
async fn a_client_clock_hours_off_does_not_renew_in_a_loop() {
    // A renewal loop would pass 5 renewals in a few hundred milliseconds
    // and be closed with 4429.
    for skew in [3 * 3600, -3 * 3600_i64] {
        let addr = serve(
            builder()
                .renew_limit(5)
                .leeway(Duration::ZERO)
                .notify_before(Duration::from_secs(1)),
        )
        .await;
        // Whole-second `exp`: four-second tokens renewed about a second
        // ahead are always newer than the last.
        let (calls, provider) = counting(|_| token("alice", 4));
        let clock = move || {
            let now = std::time::SystemTime::now();
            let by = Duration::from_secs(skew.unsigned_abs());
            if skew > 0 { now + by } else { now - by }
        };
        let mut client = AuthClient::builder(format!("ws://{addr}/ws"), provider)
            .wall_clock(clock)
            .renew_before(Duration::from_secs(1))
            .renew_jitter(Duration::ZERO)
            .backoff(fast_backoff())
            .connect();
        assert!(matches!(
            next_event(&mut client).await,
            ClientEvent::Connected { .. }
        ));
        let mut renewed = 0;
        let until = tokio::time::Instant::now() + Duration::from_millis(4500);
        while let Ok(event) = tokio::time::timeout_at(until, client.next_event()).await {
            match event.unwrap() {
                ClientEvent::Renewed { .. } => renewed += 1,
                other => panic!("skew {skew}: unexpected {other:?}"),
            }
        }
        // A renewal every 2 s or so, and the connection survived its tokens.
        assert!(
            (1..=4).contains(&renewed),
            "skew {skew}: {renewed} renewals"
        );
        assert!(calls.load(Ordering::SeqCst) <= 4);
        client.close().await;
    }
}

#[tokio::test]
async fn extreme_exp_values_do_not_panic_and_the_connection_works() {
    use futures_util::StreamExt;

    let addr = serve(builder()).await;
    for exp in [u64::MAX, 1 << 53, (1 << 53) + 1] {
        let provider = move || async move {
            let mut claims = claims("alice", 60);
            claims["exp"] = json!(exp);
            Ok::<_, std::io::Error>(sign(&claims))
        };
        let mut client = AuthClient::builder(format!("ws://{addr}/ws"), provider).connect();
        assert!(
            matches!(
                next_from_stream(&mut client).await,
                ClientEvent::Connected { .. }
            ),
            "{exp}"
        );
        client.send(Message::Text("far".into())).await.unwrap();
        assert_eq!(
            next_from_stream(&mut client).await,
            ClientEvent::Message(Message::Text("far".into())),
            "{exp}"
        );
        // Nothing to renew for centuries: no renewal, no panic, no close.
        let quiet = tokio::time::timeout(Duration::from_millis(300), client.next()).await;
        assert!(quiet.is_err(), "{exp}: {quiet:?}");
        client.close().await;
    }
}

/// Linux drops a SYN to a listener whose accept queue is full, so the TCP
/// connect itself hangs.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_tcp_connect_that_hangs_times_out() {
    let (addr, _listener, _fillers) = full_listener().await;
    let mut client = AuthClient::builder(format!("ws://{addr}/ws"), || async {
        Ok::<_, std::io::Error>(token("alice", 60))
    })
    .connect_timeout(Duration::from_millis(200))
    .backoff(instant_backoff())
    .connect();
    assert_eq!(
        next_event(&mut client).await,
        ClientEvent::Error(ClientError::ConnectTimeout(Duration::from_millis(200)))
    );
    assert!(matches!(
        next_event(&mut client).await,
        ClientEvent::Disconnected { attempt: 0, .. }
    ));
    client.close().await;
}

#[tokio::test]
async fn a_failed_renewal_fetch_is_an_error_event_and_is_retried() {
    let addr = serve(
        builder()
            .leeway(Duration::ZERO)
            .notify_before(Duration::from_secs(1)),
    )
    .await;
    let provider = failing_provider(1..=1, 5);
    let mut client = AuthClient::builder(format!("ws://{addr}/ws"), provider)
        .renew_before(Duration::from_secs(2))
        .renew_jitter(Duration::ZERO)
        .backoff(fast_backoff())
        .connect();
    assert!(matches!(
        next_event(&mut client).await,
        ClientEvent::Connected { .. }
    ));
    assert_eq!(
        next_event(&mut client).await,
        ClientEvent::Error(ClientError::TokenProvider("refresh endpoint down".into()))
    );
    let event = next_event(&mut client).await;
    assert!(matches!(event, ClientEvent::Renewed { .. }), "{event:?}");
    client.close().await;
}

#[tokio::test]
async fn a_token_endpoint_down_for_a_while_after_the_notice_does_not_cost_the_connection() {
    // Eight-second tokens, a notice six seconds ahead; the refresh endpoint
    // fails the first five calls after it (more than the old three retries).
    let addr = serve(
        builder()
            .leeway(Duration::ZERO)
            .notify_before(Duration::from_secs(6)),
    )
    .await;
    let provider = failing_provider(1..=5, 8);
    let mut client = AuthClient::builder(format!("ws://{addr}/ws"), provider)
        .renew_before(Duration::from_secs(1))
        .renew_jitter(Duration::ZERO)
        .backoff(fast_backoff())
        .connect();
    assert!(matches!(
        next_event(&mut client).await,
        ClientEvent::Connected { .. }
    ));
    let mut errors = 0;
    loop {
        match next_event(&mut client).await {
            ClientEvent::Error(ClientError::TokenProvider(_)) => errors += 1,
            ClientEvent::Renewed { .. } => break,
            other => panic!("unexpected {other:?} after {errors} provider errors"),
        }
    }
    assert_eq!(errors, 5);
    client.close().await;
}

/// A token for alice with `iat` now, living `ttl` seconds.
fn fresh_token(ttl: i64) -> String {
    let mut claims = claims("alice", ttl);
    claims["iat"] = json!(now());
    sign(&claims)
}

#[tokio::test]
async fn an_early_notice_asking_for_reauthentication_is_answered_without_reconnecting() {
    use axum::Router;
    use axum::routing::any;
    use axum_ws_auth::revocation::Selector;

    let layer = builder().leeway(Duration::ZERO).build().unwrap();
    let connections = layer.connections();
    let addr = serve_router(Router::new().route("/ws", any(echo)).layer(layer)).await;
    // Ten-minute tokens: only the request brings a notice. The first
    // renewal fetch returns a token the provider had cached from before
    // the request (a later exp, but issued earlier): the server refuses
    // it, and the client retries with a fresh one in time.
    let cached = {
        let mut claims = claims("alice", 900);
        claims["iat"] = json!(now() - 30);
        sign(&claims)
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let provider = {
        let calls = calls.clone();
        move || {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            let token = match call {
                0 => fresh_token(600),
                1 => cached.clone(),
                n => fresh_token(900 + n as i64),
            };
            async move { Ok::<_, std::io::Error>(token) }
        }
    };
    let mut client = AuthClient::builder(format!("ws://{addr}/ws"), provider)
        .renew_jitter(Duration::ZERO)
        .backoff(fast_backoff())
        .connect();
    assert!(matches!(
        next_event(&mut client).await,
        ClientEvent::Connected { .. }
    ));
    // The server's clock has moved on a second since the connection's
    // token was minted, so the fresh one has a later exp.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let grace = Duration::from_secs(5);
    assert_eq!(connections.reauthenticate(Selector::All, grace), 1);
    match next_event(&mut client).await {
        ClientEvent::RenewRejected { description, .. } => assert_eq!(
            description.as_deref(),
            Some("token issued before the re-authentication request")
        ),
        other => panic!("expected the cached token to be refused, got {other:?}"),
    }
    assert!(matches!(
        next_event(&mut client).await,
        ClientEvent::Renewed { .. }
    ));
    // Past the grace: the same connection carries on.
    tokio::time::sleep(grace + Duration::from_secs(1)).await;
    client
        .send(Message::Text("still connected".into()))
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut client).await,
        ClientEvent::Message(Message::Text("still connected".into()))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(connections.count(), 1);
    client.close().await;
}

#[tokio::test]
async fn a_client_clock_corrected_after_connecting_does_not_renew_in_a_loop() {
    use std::sync::atomic::AtomicI64;

    // Six-second tokens, a notice one second ahead, four renewals a minute.
    let addr = serve(
        builder()
            .renew_limit(4)
            .leeway(Duration::ZERO)
            .notify_before(Duration::from_secs(1)),
    )
    .await;
    let (calls, provider) = counting(|_| token("alice", 6));
    // The local clock is right at first (the upgrade's `Date` agrees), then
    // NTP steps it forward; the server's clock does not move.
    let jump_ms = Arc::new(AtomicI64::new(0));
    let clock = {
        let jump_ms = jump_ms.clone();
        move || {
            std::time::SystemTime::now()
                + Duration::from_millis(jump_ms.load(Ordering::SeqCst) as u64)
        }
    };
    let mut client = AuthClient::builder(format!("ws://{addr}/ws"), provider)
        .wall_clock(clock)
        .renew_before(Duration::from_secs(2))
        .renew_jitter(Duration::ZERO)
        .backoff(fast_backoff())
        .connect();
    assert!(matches!(
        next_event(&mut client).await,
        ClientEvent::Connected { .. }
    ));
    // Connected, the client has learnt the server's clock from the upgrade's
    // `Date` and armed its timer. Now NTP steps the local clock 2.5 s forward.
    jump_ms.store(2_500, Ordering::SeqCst);
    let mut renewed = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(12);
    while let Ok(event) = tokio::time::timeout_at(until, client.next_event()).await {
        match event.unwrap() {
            ClientEvent::Renewed { .. } => renewed += 1,
            other => panic!("unexpected {other:?} after {renewed} renewals"),
        }
    }
    // One renewal by the client's own timer (about t = 4 s); with the stale
    // offset every later token looks three seconds from expiry, and a client
    // that trusted it would renew every 1.5 s and run into 4429. The
    // server's notice (about t = 9 s) teaches it the server's clock again.
    assert!((2..=3).contains(&renewed), "{renewed} renewals in 12 s");
    assert!(calls.load(Ordering::SeqCst) <= 4);
    client.close().await;
}

/// A server that never answers a renewal (a broken or overloaded one): the
/// client gives the answer up after 10 s with an error event, and answers
/// the notice that came meanwhile (before, every later notice was ignored
/// until the connection ended with 4401).
#[tokio::test]
async fn a_renewal_the_server_never_answers_is_reported_and_a_later_notice_answered() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (renewals_tx, mut renewals) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        // tungstenite's callback signature: its error type is a whole response.
        #[allow(clippy::result_large_err)]
        fn select(_: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
            let protocol = "wsauth.v1".parse().unwrap();
            response
                .headers_mut()
                .insert("sec-websocket-protocol", protocol);
            Ok(response)
        }
        let mut ws = tokio_tungstenite::accept_hdr_async(tcp, select)
            .await
            .unwrap();
        let notice = |secs: u64| {
            json!({"type": "auth.expiring", "exp": now() + secs, "expires_in": secs}).to_string()
        };
        ws.send(notice(60).into()).await.unwrap();
        let mut seen = 0;
        while let Some(Ok(frame)) = ws.next().await {
            let Ok(text) = frame.to_text() else { continue };
            let Ok(renew) = serde_json::from_str::<serde_json::Value>(text) else {
                continue;
            };
            if renew["type"] != "auth.renew" {
                continue;
            }
            seen += 1;
            let _ = renewals_tx.send(std::time::Instant::now());
            if seen == 1 {
                // Unanswered; the server asks again, 40 s left.
                tokio::time::sleep(Duration::from_secs(2)).await;
                ws.send(notice(40).into()).await.unwrap();
            } else {
                let renewed =
                    json!({"type": "auth.renewed", "exp": now() + 600, "id": renew["id"]});
                ws.send(renewed.to_string().into()).await.unwrap();
            }
        }
    });
    let mut client = AuthClient::builder(format!("ws://{addr}/ws"), || async {
        Ok::<_, std::io::Error>(token("alice", 60))
    })
    .token_placement(TokenPlacement::Header)
    .renew_jitter(Duration::ZERO)
    .connect();
    assert!(matches!(
        next_event(&mut client).await,
        ClientEvent::Connected { .. }
    ));
    let first = renewals.recv().await.unwrap();
    assert_eq!(
        next_event(&mut client).await,
        ClientEvent::Error(ClientError::RenewalUnanswered(Duration::from_secs(10)))
    );
    let second = renewals.recv().await.unwrap();
    assert!(
        second - first >= Duration::from_secs(10),
        "{:?}",
        second - first
    );
    assert!(matches!(
        next_event(&mut client).await,
        ClientEvent::Renewed { .. }
    ));
    client.close().await;
}
