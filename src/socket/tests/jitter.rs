//! Notice jitter: tokens minted in the same second get their notices
//! spread over the configured window, never outside it, and all at
//! `notify_before` without it.

use std::time::Duration;

use tokio::time::Instant;

use super::support::Backpressure;
use super::*;

/// Opens `count` connections whose tokens share one `exp`; returns how far
/// ahead of `exp` each got its notice.
async fn notice_leads(layer: &WsAuthLayer<Claims>, count: usize) -> Vec<Duration> {
    let exp = wall_now() + 600;
    let watchers: Vec<_> = (0..count)
        .map(|n| {
            let Setup { socket, mut peer } = open(
                layer,
                &sign(SECRET, &format!("user{n}"), exp, 0),
                Backpressure::ROOMY,
            );
            let exp_at = deadline(&socket) - Duration::from_secs(5);
            tokio::spawn(async move {
                let notice = peer.next_json().await;
                assert_eq!(notice["type"], "auth.expiring");
                assert_eq!(notice["exp"], exp);
                drop(socket);
                exp_at - Instant::now()
            })
        })
        .collect();
    let mut leads = Vec::new();
    for watcher in watchers {
        leads.push(watcher.await.unwrap());
    }
    leads
}

#[tokio::test(start_paused = true)]
async fn notices_of_tokens_minted_together_spread_over_the_window() {
    let layer = layer(|b| defaults(b).notice_jitter(Duration::from_secs(60)));
    let leads = notice_leads(&layer, 240).await;
    let mut buckets = [0usize; 6];
    for lead in &leads {
        // 30 s to 90 s ahead, less the timer's sub-millisecond rounding.
        assert!(
            *lead > Duration::from_millis(29_999) && *lead <= Duration::from_secs(90),
            "{lead:?}"
        );
        let bucket = (lead.as_secs_f64() - 30.0) / 10.0;
        buckets[(bucket as usize).min(5)] += 1;
    }
    // 40 expected in each 10 s slice.
    assert!(
        buckets.iter().all(|&n| (15..=70).contains(&n)),
        "{buckets:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn without_jitter_every_notice_comes_notify_before_ahead() {
    let layer = layer(defaults);
    for lead in notice_leads(&layer, 20).await {
        assert!(
            lead <= Duration::from_secs(30) && lead > Duration::from_millis(29_999),
            "{lead:?}"
        );
    }
}

/// A notice lead the monotonic clock cannot reach back to (`notify_before`
/// of `Duration::MAX`, meaning "at once"; on platforms whose `Instant`
/// cannot go before boot, any lead longer than the uptime, jitter
/// included) means a notice at once. Real time: a paused clock reads the
/// same instant twice and hides a notice instant that moves with the clock.
#[test]
fn a_notice_lead_beyond_the_clock_sends_the_notice_at_once() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for jitter in [Duration::ZERO, Duration::MAX] {
            let layer = layer(|b| {
                b.notify_before(Duration::MAX)
                    .notice_jitter(jitter)
                    .leeway(Duration::ZERO)
            });
            let exp = wall_now() + 3600;
            let Setup { socket, mut peer } =
                open(&layer, &sign(SECRET, "alice", exp, 0), Backpressure::ROOMY);
            let notice = tokio::time::timeout(Duration::from_secs(2), peer.next_json())
                .await
                .unwrap_or_else(|_| panic!("jitter {jitter:?}: no notice"));
            assert_eq!(notice["type"], "auth.expiring");
            assert_eq!(notice["exp"], exp);
            drop(socket);
        }
    });
}
