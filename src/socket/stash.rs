//! What is read ahead for an application that is not reading (see
//! `ahead.rs`): its frames, bounded, and the renewal reader's wakers. Pure
//! state, below the connection that owns it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;

use axum::extract::ws::Message;

use super::transport::Readers;

/// Application frames the renewal reader keeps, at most.
pub(crate) const STASH_FRAMES: usize = 32;

pub(super) type Frame = Result<Message, axum::Error>;

/// Frames read ahead for the application, and the renewal reader's wakers
/// while it runs.
#[derive(Debug, Default)]
pub(crate) struct ReadAhead {
    pub(super) frames: VecDeque<Frame>,
    /// The payload bytes of `frames`.
    pub(super) bytes: usize,
    /// While the renewal reader runs: the fan-out the transport is polled
    /// with, and the waker made of it.
    pub(super) readers: Option<(Arc<Readers>, Waker)>,
}

impl ReadAhead {
    pub(super) fn is_full(&self, max_bytes: usize) -> bool {
        self.frames.len() >= STASH_FRAMES || self.bytes >= max_bytes
    }

    pub(super) fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
    }

    /// The read fan-out while the renewal reader runs.
    pub(super) fn readers(&self) -> Option<&(Arc<Readers>, Waker)> {
        self.readers.as_ref()
    }

    /// Wakes whoever is parked on the fan-out.
    pub(super) fn wake_readers(&self) {
        if let Some((readers, _)) = &self.readers {
            readers.wake_all();
        }
    }
}
