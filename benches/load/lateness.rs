//! The server child's `metrics` recorder: keeps the samples of
//! `ws_auth_expiry_close_lateness_seconds` (how late each 4401 at a
//! deadline left the server) for the parent to fetch over stdin; every
//! other metric is dropped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

const LATENESS: &str = "ws_auth_expiry_close_lateness_seconds";

/// The lateness samples recorded so far, in seconds.
#[derive(Clone, Default)]
pub(crate) struct Lateness(Arc<Mutex<Vec<f64>>>);

impl Lateness {
    /// Installs a recorder keeping the samples as the process's own.
    pub(crate) fn install() -> Self {
        let lateness = Self::default();
        metrics::set_global_recorder(LatenessRecorder(lateness.clone()))
            .expect("no other recorder");
        lateness
    }

    /// The samples so far, sorted; they are forgotten.
    pub(crate) fn take(&self) -> Vec<Duration> {
        sorted(std::mem::take(&mut *self.0.lock().unwrap()))
    }

    /// `count p50 p99 max` (milliseconds) of the samples so far, kept.
    pub(crate) fn summary(&self) -> String {
        summary(&sorted(self.0.lock().unwrap().clone()))
    }
}

fn sorted(seconds: Vec<f64>) -> Vec<Duration> {
    let mut samples: Vec<Duration> = seconds.into_iter().map(Duration::from_secs_f64).collect();
    samples.sort();
    samples
}

/// `count p50 p99 max` of sorted samples, in milliseconds.
pub(crate) fn summary(sorted: &[Duration]) -> String {
    use crate::stats::{millis, percentile};
    format!(
        "{} {:.1} {:.1} {:.1}",
        sorted.len(),
        millis(percentile(sorted, 0.5)),
        millis(percentile(sorted, 0.99)),
        millis(sorted.last().copied().unwrap_or_default()),
    )
}

struct LatenessRecorder(Lateness);

impl HistogramFn for Lateness {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

impl Recorder for LatenessRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        if key.name() == LATENESS {
            Histogram::from_arc(Arc::new(self.0.clone()))
        } else {
            Histogram::noop()
        }
    }
}
