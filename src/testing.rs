//! Helpers shared by the crate's unit tests.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

use crate::token::RegisteredClaims;

/// `secs` seconds after the Unix epoch.
pub(crate) fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A token's identity, `jti` and `iat`: what revocations match.
pub(crate) fn revocable(
    iss: Option<&str>,
    sub: Option<&str>,
    jti: Option<&str>,
    iat: Option<u64>,
) -> RegisteredClaims {
    RegisteredClaims {
        jti: jti.map(str::to_owned),
        iat,
        ..RegisteredClaims::for_tests(iss, sub, u64::MAX)
    }
}

/// splitmix64: a small, seeded, reproducible source of test cases.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        // The state advances by splitmix64's increment, which `mix` adds.
        let value = crate::jitter::mix(self.0);
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        value
    }

    /// Uniform in `0..n`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// One of `items`.
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// A `metrics` recorder for one test: installed on the test's thread with
/// [`metrics::set_default_local_recorder`], it sees what every task of a
/// current-thread runtime records there, and nothing of the tests running
/// beside it. Keeps counter increments and histogram samples by key
/// (`name` or `name{label="value",...}`); gauges are ignored.
#[derive(Clone, Default)]
pub(crate) struct MetricsProbe(Arc<Mutex<Vec<(String, f64)>>>);

impl MetricsProbe {
    /// Every value recorded under `key`, in order.
    pub(crate) fn values(&self, key: &str) -> Vec<f64> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|(name, _)| name == key)
            .map(|(_, value)| *value)
            .collect()
    }

    fn sink(&self, key: &Key) -> Arc<Sink> {
        let labels: Vec<String> = key
            .labels()
            .map(|label| format!("{}=\"{}\"", label.key(), label.value()))
            .collect();
        let key = if labels.is_empty() {
            key.name().to_owned()
        } else {
            format!("{}{{{}}}", key.name(), labels.join(","))
        };
        Arc::new(Sink {
            key,
            seen: self.clone(),
        })
    }
}

struct Sink {
    key: String,
    seen: MetricsProbe,
}

impl Sink {
    fn push(&self, value: f64) {
        self.seen.0.lock().unwrap().push((self.key.clone(), value));
    }
}

impl CounterFn for Sink {
    fn increment(&self, value: u64) {
        self.push(value as f64);
    }

    fn absolute(&self, value: u64) {
        self.push(value as f64);
    }
}

impl HistogramFn for Sink {
    fn record(&self, value: f64) {
        self.push(value);
    }
}

impl Recorder for MetricsProbe {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.sink(key))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.sink(key))
    }
}
