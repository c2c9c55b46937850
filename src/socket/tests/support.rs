//! In-memory transports for socket tests that behave like a real one under
//! load: writes stay pending until the peer reads, frames wait in a write
//! buffer until someone flushes, and the transport keeps a single write
//! waker, as tokio-tungstenite does. A transport that is always ready hides
//! every bug of a connection with several writers or a slow peer.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Waker};

use axum::extract::ws::Message;
use futures_core::Stream;
use futures_sink::Sink;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::protocol::is_control_message;
use crate::socket::half::Half;

/// How the server-to-peer direction behaves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backpressure {
    /// Frames the peer has not read yet that the "network" holds before
    /// writes stay pending.
    pub(crate) in_flight: usize,
    /// Frames the transport buffers before `poll_ready` waits for a flush
    /// (tungstenite's write buffer).
    pub(crate) write_buffer: usize,
}

impl Backpressure {
    /// Room for everything a test sends: only unflushed frames wait.
    pub(crate) const ROOMY: Self = Self {
        in_flight: 4096,
        write_buffer: 1,
    };

    /// A peer that reads slowly: a few frames in flight, then writes wait.
    pub(crate) const fn tight(in_flight: usize) -> Self {
        Self {
            in_flight,
            write_buffer: 1,
        }
    }
}

/// A frame as the peer received it, and when it was handed to the
/// transport.
#[derive(Debug)]
struct Wire {
    frames: VecDeque<Message>,
    /// The transport's single write waker.
    write_waker: Option<Waker>,
    read_waker: Option<Waker>,
    /// The server dropped its transport.
    server_gone: bool,
    /// The peer went away: writes fail.
    peer_gone: bool,
    /// Frames are accepted but flushing them fails (a TCP write error
    /// that shows only when the buffer is written out).
    flush_fails: bool,
}

/// Records application frames handed to the transport after the
/// connection's deadline; checked by tests against the contract.
#[derive(Default)]
pub(crate) struct DeadlineProbe {
    half: OnceLock<Weak<dyn Half>>,
    late: Mutex<Vec<(Instant, String)>>,
}

impl DeadlineProbe {
    pub(crate) fn watch(&self, half: Weak<dyn Half>) {
        let _ = self.half.set(half);
    }

    fn check(&self, message: &Message) {
        let application = match message {
            Message::Text(text) => !is_control_message(text.as_str()),
            Message::Binary(_) => true,
            _ => false,
        };
        let Some(half) = self.half.get().and_then(Weak::upgrade) else {
            return;
        };
        if application && half.deadline().has_passed() {
            self.late
                .lock()
                .unwrap()
                .push((Instant::now(), format!("{message:?}")));
        }
    }

    /// Application frames the transport accepted after the deadline.
    pub(crate) fn late_frames(&self) -> Vec<(Instant, String)> {
        self.late.lock().unwrap().clone()
    }
}

/// The server's side.
pub(crate) struct PipeTransport {
    from_peer: mpsc::UnboundedReceiver<Result<Message, axum::Error>>,
    /// Sent but not yet flushed onto the wire.
    unflushed: VecDeque<Message>,
    wire: Arc<Mutex<Wire>>,
    shape: Backpressure,
    probe: Arc<DeadlineProbe>,
}

impl PipeTransport {
    /// Moves unflushed frames onto the wire while it has room; true when
    /// none is left.
    fn push_out(&mut self, cx: Option<&Context<'_>>) -> Result<bool, axum::Error> {
        let mut wire = self.wire.lock().unwrap();
        if wire.peer_gone {
            return Err(axum::Error::new("peer went away"));
        }
        while wire.frames.len() < self.shape.in_flight {
            let Some(frame) = self.unflushed.pop_front() else {
                break;
            };
            wire.frames.push_back(frame);
            if let Some(reader) = wire.read_waker.take() {
                reader.wake();
            }
        }
        if self.unflushed.is_empty() {
            return Ok(true);
        }
        if let Some(cx) = cx {
            wire.write_waker = Some(cx.waker().clone());
        }
        Ok(false)
    }
}

impl Drop for PipeTransport {
    fn drop(&mut self) {
        let mut wire = self.wire.lock().unwrap();
        wire.server_gone = true;
        if let Some(reader) = wire.read_waker.take() {
            reader.wake();
        }
    }
}

impl Stream for PipeTransport {
    type Item = Result<Message, axum::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.from_peer.poll_recv(cx)
    }
}

impl Sink<Message> for PipeTransport {
    type Error = axum::Error;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.push_out(Some(cx))?;
        if self.unflushed.len() < self.shape.write_buffer {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        self.probe.check(&item);
        self.unflushed.push_back(item);
        Ok(())
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.wire.lock().unwrap().flush_fails {
            return Poll::Ready(Err(axum::Error::new("connection reset")));
        }
        if self.push_out(Some(cx))? {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.poll_flush(cx)
    }
}

/// The peer's side: it sends whenever it likes and reads only when the
/// test says so.
pub(crate) struct Peer {
    pub(crate) to_socket: Option<mpsc::UnboundedSender<Result<Message, axum::Error>>>,
    wire: Arc<Mutex<Wire>>,
    pub(crate) probe: Arc<DeadlineProbe>,
}

/// How full the wire is, seen from outside.
pub(crate) struct WireView(Arc<Mutex<Wire>>);

impl WireView {
    /// Frames on the wire, unread.
    pub(crate) fn queued(&self) -> usize {
        self.0.lock().unwrap().frames.len()
    }
}

/// A connected transport and its peer.
pub(crate) fn pipe(shape: Backpressure) -> (PipeTransport, Peer) {
    let (to_socket, from_peer) = mpsc::unbounded_channel();
    let wire = Arc::new(Mutex::new(Wire {
        frames: VecDeque::new(),
        write_waker: None,
        read_waker: None,
        server_gone: false,
        flush_fails: false,
        peer_gone: false,
    }));
    let probe = Arc::new(DeadlineProbe::default());
    let transport = PipeTransport {
        from_peer,
        unflushed: VecDeque::new(),
        wire: Arc::clone(&wire),
        shape,
        probe: Arc::clone(&probe),
    };
    let peer = Peer {
        to_socket: Some(to_socket),
        wire,
        probe,
    };
    (transport, peer)
}

impl Peer {
    pub(crate) fn send(&self, message: Message) {
        if let Some(to_socket) = &self.to_socket {
            let _ = to_socket.send(Ok(message));
        }
    }

    pub(crate) fn send_text(&self, text: impl Into<String>) {
        let text: String = text.into();
        self.send(Message::Text(text.into()));
    }

    pub(crate) fn renew(&self, token: &str, id: &str) {
        self.send_text(
            serde_json::json!({"type": "auth.renew", "token": token, "id": id}).to_string(),
        );
    }

    /// The next frame, once one is on the wire; `None` once the server
    /// dropped its transport and the wire is empty.
    pub(crate) async fn recv(&mut self) -> Option<Message> {
        poll_fn(|cx| {
            let mut wire = self.wire.lock().unwrap();
            if let Some(frame) = wire.frames.pop_front() {
                if let Some(writer) = wire.write_waker.take() {
                    writer.wake();
                }
                return Poll::Ready(Some(frame));
            }
            if wire.server_gone {
                return Poll::Ready(None);
            }
            wire.read_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    pub(crate) async fn next(&mut self) -> Message {
        self.recv().await.expect("socket side went away")
    }

    pub(crate) async fn next_json(&mut self) -> Value {
        match self.next().await {
            Message::Text(text) => serde_json::from_str(text.as_str()).unwrap(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Expects the next frame to be a close frame, and ends the closing
    /// handshake from the peer's side.
    pub(crate) async fn expect_close(&mut self) -> (u16, String) {
        match self.next().await {
            Message::Close(Some(frame)) => {
                self.hang_up();
                (frame.code, frame.reason.as_str().to_owned())
            }
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    /// The peer's side goes away.
    pub(crate) fn hang_up(&mut self) {
        self.to_socket = None;
    }

    /// The peer's TCP connection is gone: further writes fail.
    pub(crate) fn vanish(&mut self) {
        self.hang_up();
        let mut wire = self.wire.lock().unwrap();
        wire.peer_gone = true;
        if let Some(writer) = wire.write_waker.take() {
            writer.wake();
        }
    }

    /// From now on the transport takes frames but fails to flush them.
    pub(crate) fn break_flush(&self) {
        self.wire.lock().unwrap().flush_fails = true;
    }

    /// A view of the wire that stays with the test when the peer moves
    /// to a task of its own.
    pub(crate) fn wire(&self) -> WireView {
        WireView(Arc::clone(&self.wire))
    }
}
