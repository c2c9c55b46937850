//! How the layer runs a policy: type-erased (one box, only when a policy is
//! configured), bounded by a timeout, and with a panic turned into a
//! failed check.

use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use super::{AuthPolicy, PolicyDenial, PolicyRequest};
use crate::telemetry;

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), PolicyDenial>> + Send>>;

trait Erased<C>: Send + Sync {
    fn check_boxed(&self, request: PolicyRequest<C>) -> CheckFuture;
}

impl<C, P: AuthPolicy<C>> Erased<C> for P {
    fn check_boxed(&self, request: PolicyRequest<C>) -> CheckFuture {
        Box::pin(self.check(request))
    }
}

/// An application's policy, type-erased, as the builder holds it until
/// `build` gives it its timeout.
pub(crate) struct PolicyCheck<C>(Arc<dyn Erased<C>>);

impl<C: 'static> PolicyCheck<C> {
    pub(crate) fn new(check: impl AuthPolicy<C>) -> Self {
        Self(Arc::new(check))
    }
}

/// A configured policy and its timeout.
pub(crate) struct Policy<C> {
    check: Arc<dyn Erased<C>>,
    timeout: Duration,
}

impl<C> Clone for Policy<C> {
    fn clone(&self) -> Self {
        Self {
            check: Arc::clone(&self.check),
            timeout: self.timeout,
        }
    }
}

impl<C> Policy<C> {
    pub(crate) fn new(check: PolicyCheck<C>, timeout: Duration) -> Self {
        Self {
            check: check.0,
            timeout,
        }
    }
}

impl<C: 'static> Policy<C> {
    /// Runs the check; a timeout, a panic (while making the future or
    /// polling it) or a `Failed` answer comes back as `Failed`, logged.
    pub(crate) fn run(
        &self,
        request: PolicyRequest<C>,
    ) -> impl Future<Output = Result<(), PolicyDenial>> + Send + 'static {
        let sub = request.registered().sub.clone();
        let at = if request.is_renewal() {
            "renewal"
        } else {
            "upgrade"
        };
        let started = catch_unwind(AssertUnwindSafe(|| self.check.check_boxed(request)));
        let timeout = self.timeout;
        async move {
            let outcome = match started {
                Err(_) => Err(PolicyDenial::failed("the check panicked")),
                Ok(check) => guarded(check, timeout).await,
            };
            if let Err(PolicyDenial::Failed(reason)) = &outcome {
                telemetry::policy_failed(at, sub.as_deref(), reason);
            }
            outcome
        }
    }
}

/// Polls `check` for at most `timeout`, then drops it; a panic while it
/// is polled *or dropped* (once it answered, or when the timeout gives up
/// on it) is a failed check, never a panic of the caller's task.
async fn guarded(check: CheckFuture, timeout: Duration) -> Result<(), PolicyDenial> {
    let mut check = Some(check);
    let polled = tokio::time::timeout(
        timeout,
        poll_fn(|cx| {
            let Some(future) = check.as_mut() else {
                return Poll::Ready(Err(PolicyDenial::failed("the check panicked")));
            };
            match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                Ok(poll) => poll,
                Err(_) => {
                    // Not polled again; dropped below, under the guard.
                    Poll::Ready(Err(PolicyDenial::failed("the check panicked")))
                }
            }
        }),
    )
    .await;
    let dropped = catch_unwind(AssertUnwindSafe(move || drop(check))).is_ok();
    match polled {
        Err(_) => Err(PolicyDenial::failed("the check timed out")),
        Ok(_) if !dropped => Err(PolicyDenial::failed("the check panicked")),
        Ok(outcome) => outcome,
    }
}

#[cfg(test)]
mod tests {
    use std::task::Context;

    use super::*;
    use crate::token::RegisteredClaims;

    /// Answers, then panics when dropped.
    struct PanicsWhenDropped(bool);

    impl Future for PanicsWhenDropped {
        type Output = Result<(), PolicyDenial>;

        fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            if self.0 {
                self.0 = false;
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }
    }

    impl Drop for PanicsWhenDropped {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                panic!("policy bug in drop");
            }
        }
    }

    fn request() -> PolicyRequest<()> {
        let (parts, ()) = http::Request::new(()).into_parts();
        PolicyRequest::upgrade(
            Arc::new(()),
            Arc::new(RegisteredClaims::for_tests(None, Some("alice"), u64::MAX)),
            parts,
        )
    }

    /// A check future that panics in `Drop` (once it answered, or when the
    /// timeout drops it) is a failed check: `run` never panics.
    #[tokio::test(start_paused = true)]
    async fn a_future_that_panics_when_dropped_is_a_failed_check() {
        for answers in [true, false] {
            let policy = Policy::new(
                PolicyCheck::new(move |_: PolicyRequest<()>| PanicsWhenDropped(answers)),
                Duration::from_secs(1),
            );
            let outcome = tokio::spawn(policy.run(request())).await;
            let outcome = outcome.expect("the check's panic escaped");
            assert!(
                matches!(outcome, Err(PolicyDenial::Failed(_))),
                "answers: {answers}: {outcome:?}"
            );
        }
    }
}
