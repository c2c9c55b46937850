//! What every worker process shares, whatever its role: its records (one
//! line each, written out when it stops), the parent's instructions on
//! stdin, the environment it is started with, and the clock records use.

use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// Milliseconds since the Unix epoch, with a fraction.
pub(crate) fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// What a worker's tasks record, written out when it stops.
#[derive(Clone, Default)]
pub(crate) struct Records(Arc<Mutex<Vec<String>>>);

impl Records {
    pub(crate) fn push(&self, record: String) {
        self.0.lock().unwrap().push(record);
    }

    pub(crate) fn write(&self) {
        let records = self.0.lock().unwrap();
        let mut text = records.join("\n");
        text.push('\n');
        std::fs::write(env("LOAD_OUT"), text).unwrap();
    }
}

/// Waits for the parent's next line (`go`, `pause`, `stop`) or its end on
/// stdin, and returns it (empty at the end).
pub(crate) async fn stopped() -> String {
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        line.trim().to_owned()
    })
    .await
    .unwrap()
}
