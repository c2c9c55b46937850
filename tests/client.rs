//! The Rust client against a real server: renewal across several
//! expiries, single-flight token fetches, reconnect with backoff, stop on
//! 4403.
#![cfg(feature = "client")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum_ws_auth::client::{AuthClient, Backoff, ClientEvent, Message, TokenPlacement};
use common::*;
use serde_json::json;

async fn next_event(client: &mut AuthClient) -> ClientEvent {
    tokio::time::timeout(Duration::from_secs(15), client.next_event())
        .await
        .expect("no client event within 15 s")
        .expect("client stopped")
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
            .authorize(|claims: &Claims| claims.scope != "denied"),
    )
    .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let provider = {
        let calls = calls.clone();
        move || {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                // The first connection's renewals are all refused.
                let mut claims = claims("alice", 2);
                if (1..=3).contains(&call) {
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
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(matches!(
        next_event(&mut client).await,
        ClientEvent::Connected { .. }
    ));
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
