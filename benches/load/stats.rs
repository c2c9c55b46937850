//! Medians, spreads and percentiles, and the order of interleaved rounds.

use std::time::Duration;

use crate::Mode;

/// The order of round `round` of a comparison: bare and wrapped alternate
/// which goes first, so warm-up and drift favour neither.
pub(crate) fn round_order(round: usize) -> [Mode; 2] {
    if round.is_multiple_of(2) {
        [Mode::Bare, Mode::Wrapped]
    } else {
        [Mode::Wrapped, Mode::Bare]
    }
}

/// The smallest and largest of `values`.
pub(crate) fn spread(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| {
            (low.min(*value), high.max(*value))
        })
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// `median (min–max)` of per-round figures, to `decimals` places.
pub(crate) fn summary(values: &[f64], decimals: usize) -> String {
    let (low, high) = spread(values);
    format!(
        "{:.decimals$} ({low:.decimals$}–{high:.decimals$})",
        median(values)
    )
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub(crate) fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
