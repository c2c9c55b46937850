//! The future of [`AuthSender::send`]: a named type, not an `async fn`,
//! because it lives in the application's task for the connection's whole
//! life (an echo loop awaits it on every message) and an `async` block
//! nested in another kept two copies of the message and of the borrow,
//! 184 bytes instead of 56, in every connection's task.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::ws::Message;
use futures_sink::Sink;
use serde::de::DeserializeOwned;

use super::AuthSender;

/// The future returned by [`AuthSender::send`] and
/// [`AuthWebSocket::send`](crate::AuthWebSocket::send): waits for room on
/// the socket, hands it the message and flushes.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct SendFuture<'a, C> {
    sender: &'a mut AuthSender<C>,
    /// Taken when handed to the socket; what is left is the flush.
    message: Option<Message>,
}

impl<'a, C> SendFuture<'a, C> {
    pub(super) fn new(sender: &'a mut AuthSender<C>, message: Message) -> Self {
        Self {
            sender,
            message: Some(message),
        }
    }
}

impl<C> Future for SendFuture<'_, C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Output = Result<(), axum::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.message.is_some() {
            ready!(Pin::new(&mut *this.sender).poll_ready(cx))?;
            if let Some(message) = this.message.take() {
                Pin::new(&mut *this.sender).start_send(message)?;
            }
        }
        Pin::new(&mut *this.sender).poll_flush(cx)
    }
}

impl<C> std::fmt::Debug for SendFuture<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendFuture")
            .field("sent", &self.message.is_none())
            .finish_non_exhaustive()
    }
}
