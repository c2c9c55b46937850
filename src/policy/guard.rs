//! How the layer runs a policy: type-erased (one box, only when a policy is
//! configured), bounded by a timeout, and with a panic turned into a
//! failed check.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

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

/// Where a check runs, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checkpoint {
    Upgrade,
    Renewal,
}

impl Checkpoint {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Upgrade => "upgrade",
            Self::Renewal => "renewal",
        }
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
    pub(crate) fn with_timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }
}

impl<C: 'static> Policy<C> {
    pub(crate) fn new(check: impl AuthPolicy<C>, timeout: Duration) -> Self {
        Self {
            check: Arc::new(check),
            timeout,
        }
    }

    /// Runs the check; a timeout, a panic (while making the future or
    /// polling it) or a `Failed` answer comes back as `Failed`, logged.
    pub(crate) fn run(
        &self,
        request: PolicyRequest<C>,
        at: Checkpoint,
    ) -> impl Future<Output = Result<(), PolicyDenial>> + Send + 'static {
        let sub = request.registered().sub.clone();
        let started = catch_unwind(AssertUnwindSafe(|| self.check.check_boxed(request)));
        let timeout = self.timeout;
        async move {
            let outcome = match started {
                Err(_) => Err(PolicyDenial::failed("the check panicked")),
                Ok(check) => {
                    match tokio::time::timeout(timeout, AssertUnwindSafe(check).catch_unwind())
                        .await
                    {
                        Err(_) => Err(PolicyDenial::failed("the check timed out")),
                        Ok(Err(_)) => Err(PolicyDenial::failed("the check panicked")),
                        Ok(Ok(outcome)) => outcome,
                    }
                }
            };
            if let Err(PolicyDenial::Failed(reason)) = &outcome {
                telemetry::policy_failed(at.as_str(), sub.as_deref(), reason);
            }
            outcome
        }
    }
}
