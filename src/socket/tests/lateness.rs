//! How late a close at the deadline leaves, as the metric
//! `ws_auth_expiry_close_lateness_seconds` records it: from the deadline to
//! the moment the 4401 frame is flushed to the transport, not the moment
//! the close was decided. Each test installs its own recorder on its
//! (current-thread) runtime's thread.

use super::support::Backpressure;
use super::*;
use crate::connection::Selector;
use crate::protocol::CloseReason;
use crate::testing::MetricsProbe;

const LATENESS: &str = "ws_auth_expiry_close_lateness_seconds";
const CLOSED_4401: &str = "ws_auth_server_closes_total{code=\"4401\"}";

/// The one lateness sample, in seconds.
#[track_caller]
fn one_sample(metrics: &MetricsProbe) -> f64 {
    let samples = metrics.values(LATENESS);
    assert_eq!(samples.len(), 1, "lateness samples: {samples:?}");
    samples[0]
}

/// A connection expiring in two minutes whose wire holds one frame: once
/// its notice is out and unread, nothing more leaves until the peer reads.
fn behind_an_unread_notice(layer: &WsAuthLayer<Claims>) -> Setup {
    let token = sign(SECRET, "alice", wall_now() + 120, 0);
    open(layer, &token, Backpressure::tight(1))
}

#[tokio::test(start_paused = true)]
async fn a_close_at_the_deadline_records_its_lateness() {
    let metrics = MetricsProbe::default();
    let _recorder = metrics::set_default_local_recorder(&metrics);
    let exp = wall_now() + 120;
    let Setup { socket, mut peer } = start_with(defaults, &sign(SECRET, "alice", exp, 0));
    let deadline = deadline(&socket);

    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    assert_eq!(peer.expect_close().await.0, 4401);
    assert_fired_at(deadline);
    // The timer fires within the millisecond after the deadline, and the
    // frame leaves on that visit of the close task.
    let late = one_sample(&metrics);
    assert!((0.0..0.001).contains(&late), "lateness {late} s");
    assert_eq!(metrics.values(CLOSED_4401), [1.0]);
    drop(socket);
}

#[tokio::test(start_paused = true)]
async fn lateness_counts_until_a_backed_up_transport_takes_the_close_frame() {
    let metrics = MetricsProbe::default();
    let _recorder = metrics::set_default_local_recorder(&metrics);
    let Setup { socket, mut peer } = behind_an_unread_notice(&layer(defaults));
    let deadline = deadline(&socket);

    // The deadline passes with the notice unread: the close is decided and
    // handed to the transport on time, but cannot be flushed.
    let stuck = Duration::from_millis(250);
    tokio::time::sleep_until(deadline + stuck).await;
    assert!(peer.wire().queued() == 1, "only the notice is on the wire");
    assert!(
        metrics.values(LATENESS).is_empty(),
        "recorded before the frame left"
    );
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    assert_eq!(peer.expect_close().await.0, 4401);
    let late = one_sample(&metrics);
    let stuck = stuck.as_secs_f64();
    assert!(
        (stuck..stuck + 0.001).contains(&late),
        "lateness {late} s, expected the {stuck} s the frame waited"
    );
    assert_eq!(metrics.values(CLOSED_4401), [1.0]);
    drop(socket);
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_reauthentication_records_lateness_against_its_deadline() {
    let metrics = MetricsProbe::default();
    let _recorder = metrics::set_default_local_recorder(&metrics);
    let layer = layer(defaults);
    let Setup { socket, mut peer } = open(
        &layer,
        &sign(SECRET, "alice", wall_now() + 3600, 0),
        Backpressure::ROOMY,
    );
    let app = App::run(socket);
    layer
        .connections()
        .reauthenticate(Selector::All, Duration::from_secs(10));
    assert_eq!(peer.next_json().await["type"], "auth.expiring");
    let deadline = app.deadline();
    assert_eq!(peer.expect_close().await.0, 4401);
    assert_fired_at(deadline);
    let late = one_sample(&metrics);
    assert!((0.0..0.001).contains(&late), "lateness {late} s");
}

#[tokio::test(start_paused = true)]
async fn closes_before_the_deadline_record_no_lateness() {
    let metrics = MetricsProbe::default();
    let _recorder = metrics::set_default_local_recorder(&metrics);
    let layer = layer(defaults);
    let token = sign(SECRET, "alice", wall_now() + 3600, 0);
    // A 4401 the application asks for, and a revocation's 4403.
    for reason in [CloseReason::TokenExpired, CloseReason::Forbidden] {
        let Setup { socket, mut peer } = open(&layer, &token, Backpressure::ROOMY);
        let id = socket.identity().connection_id();
        assert!(layer.connections().close_connection(id, reason));
        assert_eq!(peer.expect_close().await.0, reason.code());
        // The close task reports once the frame is out.
        tokio::task::yield_now().await;
        drop(socket);
    }
    assert!(metrics.values(LATENESS).is_empty());
    assert_eq!(metrics.values(CLOSED_4401), [1.0]);
    assert_eq!(
        metrics.values("ws_auth_server_closes_total{code=\"4403\"}"),
        [1.0]
    );
}

/// Every close code is counted under its own label, without formatting it
/// per close.
#[tokio::test]
async fn each_close_code_is_counted_under_its_own_label() {
    let metrics = MetricsProbe::default();
    let _recorder = metrics::set_default_local_recorder(&metrics);
    let identity = crate::connection::Identity::new(1, None, None, TokenSource::Header, None);
    for reason in CloseReason::ALL {
        crate::telemetry::closed(&identity, reason, None);
        let key = format!("ws_auth_server_closes_total{{code=\"{}\"}}", reason.code());
        assert_eq!(metrics.values(&key), [1.0], "{reason:?}");
    }
}

/// A peer that never reads holds the 4401 back past the close timeout: the
/// close is recorded then, late by at least the time it waited, so the
/// worst cases are not the ones missing from the histogram.
#[tokio::test(start_paused = true)]
async fn an_expiry_close_held_back_past_the_close_timeout_records_a_lower_bound() {
    let metrics = MetricsProbe::default();
    let _recorder = metrics::set_default_local_recorder(&metrics);
    let layer = layer(|b| defaults(b).close_timeout(Duration::from_secs(5)));
    // The notice is never read: the 4401 never leaves.
    let Setup { socket, peer } = behind_an_unread_notice(&layer);
    let deadline = deadline(&socket);
    tokio::time::sleep_until(deadline + Duration::from_secs(6)).await;
    assert_eq!(peer.wire().queued(), 1, "only the notice is on the wire");
    assert_eq!(metrics.values(CLOSED_4401), [1.0], "the close is counted");
    let late = one_sample(&metrics);
    assert!(
        (5.0..5.001).contains(&late),
        "lateness {late} s, expected the 5 s close timeout"
    );
    drop(socket);
}
