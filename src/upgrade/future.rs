use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::response::{IntoResponse, Response};
use http::Request;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::rejection::{AuthRejection, RejectionKind};

/// A policy check in flight at the handshake (boxed: only a layer with a
/// policy pays for it).
pub(super) type PendingCheck = Pin<Box<dyn Future<Output = Result<(), RejectionKind>> + Send>>;

pin_project! {
    /// Response future of [`WsAuth`](super::WsAuth): the inner service's
    /// future, an immediate rejection, or the layer's
    /// [`policy`](crate::policy) check followed by the inner service.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        kind: Kind<S, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, B>
    where
        S: Service<Request<B>>,
    {
        Inner { #[pin] future: S::Future },
        Rejected { response: Option<Response> },
        Checking {
            check: PendingCheck,
            // The service `poll_ready` made ready, and the request it gets
            // once the check passes.
            then: Option<(S, Request<B>)>,
            realm: Arc<str>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(super) fn inner(future: S::Future) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    pub(super) fn rejected(response: Response) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }

    pub(super) fn checking(
        check: PendingCheck,
        service: S,
        request: Request<B>,
        realm: Arc<str>,
    ) -> Self {
        Self {
            kind: Kind::Checking {
                check,
                then: Some((service, request)),
                realm,
            },
        }
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response>,
{
    type Output = Result<Response, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let next = match this.kind.as_mut().project() {
                KindProj::Inner { future } => return future.poll(cx),
                KindProj::Rejected { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
                KindProj::Checking { check, then, realm } => {
                    let outcome = ready!(check.as_mut().poll(cx));
                    match outcome {
                        Ok(()) => {
                            let (mut service, request) =
                                then.take().expect("polled after completion");
                            Kind::Inner {
                                future: service.call(request),
                            }
                        }
                        Err(kind) => {
                            let rejection = AuthRejection::new(Arc::clone(realm), kind);
                            rejection.record();
                            Kind::Rejected {
                                response: Some(rejection.into_response()),
                            }
                        }
                    }
                }
            };
            this.kind.set(next);
        }
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
