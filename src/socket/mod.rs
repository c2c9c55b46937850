//! The authenticated socket handed to route handlers, and what keeps it
//! authenticated.
//!
//! The application's own task reads and writes the real WebSocket, as with
//! axum's socket: `auth.*` control messages are answered as frames are read
//! (`core.rs`, `renew.rs`), so a message costs no extra task hop or
//! allocation. Any number of tasks may write: the transport sees one waker
//! that wakes them all (`transport.rs`). One timer task per layer
//! (`timers.rs`) sends each connection's notice and ends it at its
//! deadline, even when the application is busy elsewhere; short-lived tasks
//! (`close.rs`) carry out closing handshakes, shutdowns and revocations,
//! flush control frames the transport had no room for, and read on the
//! application's behalf once it has dropped its receiver, or, between a
//! notice and its renewal, while it holds its receiver without reading it
//! (`ahead.rs`). An idle connection owns no task.
//!
//! # Invariants
//!
//! Read this section first: every file of this module keeps these, and the
//! seeded property test (`tests/property.rs`) checks them under random
//! interleavings of writers, renewals, invalid control messages, clock
//! jumps, backpressure and the application letting go.
//!
//! One connection's state is [`core::Core`], behind one mutex; the
//! deadline ([`clock::SharedDeadline`]) is the only state read without it.
//! By owner:
//!
//! | concern | fields | owner |
//! | --- | --- | --- |
//! | the current token | `claims`, `registered`, `claims_watch`, the deadline | `renew.rs` (an accepted renewal replaces all at once) |
//! | reading | `receiver`, `parked_reader`, `read_ahead` | `read.rs`, `ahead.rs` (its state in `stash.rs`) |
//! | writing | `outbox`, `control_unflushed`, `flushing` | `write.rs` |
//! | renewal | `renewals`, `invalid_controls`, `renewal_check`, `notice_sent` | `renew.rs`, `expiry.rs` |
//! | the timer | `armed_at` | `core.rs` (`arm`), `expiry.rs` (`fire`) |
//! | ending | `ending`, `on_end`, `live` | `core.rs` (`end`, `finish`), `close.rs` (the tasks) |
//!
//! The files form a DAG: `core.rs` holds the state and its transitions and
//! imports none of the others; `close.rs` starts the connection's tasks
//! (`start_closing`, `start_flushing`, ...), which the others call as
//! methods.
//!
//! 1. **No application frame after the deadline.** The deadline is
//!    `exp + leeway` (or an earlier re-authentication deadline) on the
//!    monotonic clock. Every path that hands a frame over checks it under
//!    the lock first: a frame read after it is dropped and ends the
//!    connection (`read.rs`); `start_write` refuses to hand one to the
//!    transport (`write.rs`); frames read ahead are never handed over after
//!    it (`ahead.rs`). A frame the transport accepted before the deadline
//!    goes out ahead of the close frame.
//! 2. **Expiry never depends on the application.** The layer's timer task
//!    fires each connection at `min(notice point, deadline)` (`arm` keeps
//!    `armed_at` the earliest pending entry); it never waits for a
//!    connection's lock (`try_lock`, and a busy connection is fired again
//!    shortly). The application's reading or writing only ever brings the
//!    end earlier.
//! 3. **One notice per token.** `notice_sent` is set when `auth.expiring`
//!    is queued and cleared only when a renewal is accepted (a new token):
//!    a token gets at most one notice, the one that expires exactly one,
//!    before the close. A re-authentication request sends its own, with its
//!    earlier `exp`.
//! 4. **Someone reads while a renewal is due.** From a notice until a
//!    renewal lands (`notice_sent`), either the application is parked in
//!    `recv` (`receiver == Reading`), or its receiver is dropped and a task
//!    reads in its place, or a renewal reader runs (`ensure_reading`); frames
//!    read for the application are kept in order, bounded
//!    (`STASH_FRAMES`, `max_message_bytes`), and handed to its next `recv`.
//! 5. **Control frames never wait behind the application's.** Notices and
//!    renewal answers go to the `outbox` and are written before any
//!    application frame (`poll_write_ready` drains it first); a control
//!    frame the transport had no room for is flushed by one task at a time
//!    (`flushing`), and `control_unflushed` says one was handed over but
//!    not yet flushed.
//! 6. **One renewal is checked at a time.** `renewal_check` holds the
//!    policy check of the renewal in flight; another `auth.renew` meanwhile
//!    is answered `invalid_request`. The policy runs outside the lock; the
//!    deadline holds while it runs (a check still running at the deadline
//!    ends the connection with 4401).
//! 7. **When `ending` is set, the connection is over.** The first decision
//!    wins and gives the close code (`end`): every parked half is woken,
//!    the renewal check aborted, frames kept for the application dropped
//!    (unless the peer closed first), every writer fails from then on, and
//!    one closing task (`close.rs`) sends the close frame and waits, at
//!    most `close_timeout`, for the peer's. `closed()` futures complete.
//!    The registry entry (`live`) is released when that task is done, so
//!    `Connections::closed` resolves only when every closing handshake is
//!    over.
//! 8. **Nothing hangs, and nothing leaks.** Every task the connection
//!    starts ends with it; a writer that gives up leaves no waker parked;
//!    the last half dropped, on any thread, ends the connection (on the
//!    runtime it started on).

mod ahead;
mod clock;
mod close;
mod core;
mod expiry;
mod half;
mod halves;
mod read;
mod reauth;
mod renew;
mod send;
mod stash;
#[cfg(test)]
mod tests;
mod transport;
mod write;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;

use crate::config::Settings;
use crate::connection::Identity;
use crate::telemetry;
use crate::token::RegisteredClaims;
use crate::token::TokenSource;
use core::Shared;
use half::Half;
pub use halves::{AuthReceiver, AuthSender, AuthWebSocket};
use http::HeaderValue;
pub use send::SendFuture;
use transport::Transport;

/// The connection has been closed (or its token has expired); nothing more
/// can be sent or received. Wrapped in [`axum::Error`].
#[derive(Debug, Clone, Copy, Default, thiserror::Error)]
#[error("the authenticated WebSocket is closed")]
#[non_exhaustive]
pub struct SocketClosed;

fn closed() -> axum::Error {
    axum::Error::new(SocketClosed)
}

/// What the layer learned about a request it let through: it travels to
/// the extractor in the request's extensions, and opens the connection.
pub(crate) struct Authenticated<C> {
    pub(crate) claims: Arc<C>,
    /// The registered claims of the token, typed: their (`iss`, `sub`) is
    /// the connection's identity (a renewal must carry the same pair), their
    /// `exp` its first deadline.
    pub(crate) registered: Arc<RegisteredClaims>,
    pub(crate) source: TokenSource,
    pub(crate) protocol: Option<Arc<HeaderValue>>,
    pub(crate) settings: Arc<Settings<C>>,
}

impl<C> Clone for Authenticated<C> {
    fn clone(&self) -> Self {
        Self {
            claims: Arc::clone(&self.claims),
            registered: Arc::clone(&self.registered),
            source: self.source,
            protocol: self.protocol.clone(),
            settings: Arc::clone(&self.settings),
        }
    }
}

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// Starts an upgraded connection (registered, its first timer armed) and
/// returns the application's end of it.
pub(crate) fn spawn<T, C>(transport: T, authenticated: Authenticated<C>) -> AuthWebSocket<C>
where
    T: Transport,
    C: DeserializeOwned + Send + Sync + 'static,
{
    let Authenticated {
        claims,
        registered,
        source,
        protocol,
        settings,
    } = authenticated;
    let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
    let (iss, sub) = (registered.iss.clone(), registered.sub.clone());
    let identity = Identity::new(id, iss, sub, source, protocol);
    telemetry::connected(&identity, registered.exp);
    let shared = Shared::start(Box::new(transport), settings, identity, claims, registered);
    let half: Arc<dyn Half> = Arc::clone(&shared) as Arc<dyn Half>;
    AuthWebSocket {
        sender: AuthSender {
            slot: shared.writer_slot(),
            shared: Arc::clone(&shared),
            half: Arc::clone(&half),
        },
        receiver: AuthReceiver { shared, half },
    }
}
