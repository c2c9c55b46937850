//! In-band renewal: an `auth.renew` passes exactly the checks of a
//! handshake token, keeps the connection's identity and moves its expiry
//! forward, or changes nothing.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::core::{Core, Shared};
use crate::connection::{AuthEvent, EndReason};
use crate::policy::{Policy, PolicyDenial, PolicyRequest};
use crate::protocol::{InvalidControl, RenewRejection, ServerMessage};
use crate::telemetry;
use crate::token::{RegisteredClaims, TokenError};

impl<C> Shared<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    pub(super) fn renew(&self, core: &mut Core<C>, token: String, id: Option<String>) {
        let session = &core.settings.session;
        let (limit, window) = (session.renew_limit, session.renew_window);
        if !core.renewals.attempt(Instant::now(), limit, window) {
            self.end(core, EndReason::TooManyRenewals);
            return;
        }
        if core.renewal_check.is_some() {
            return self.reject(
                core,
                RenewRejection::InvalidRequest,
                "a renewal is already being checked".into(),
                id,
            );
        }
        let checked = core.settings.check_token(&token);
        drop(token);
        let valid = match checked {
            Ok(valid) => valid,
            Err(error) => {
                return self.reject(core, RenewRejection::InvalidToken, error.to_string(), id);
            }
        };
        if !self
            .identity
            .is_same(valid.iss.as_deref(), valid.sub.as_deref())
        {
            telemetry::identity_change_refused(&self.identity);
            self.end(core, EndReason::IdentityChanged);
            return;
        }
        if let Err(error) = self.check_renewal_now(core, &valid.registered) {
            return self.reject(core, RenewRejection::InvalidToken, error.to_string(), id);
        }
        if valid.exp <= self.deadline.exp() {
            return self.reject(
                core,
                RenewRejection::InvalidToken,
                TokenError::NotNewer.to_string(),
                id,
            );
        }
        let mut registered = valid.registered;
        self.identity.share_with(&mut registered);
        let renewal = Renewal {
            exp: valid.exp,
            claims: Arc::new(valid.claims),
            registered: Arc::new(registered),
            id,
        };
        match core.settings.policy.clone() {
            None => self.accept(core, renewal),
            Some(policy) => self.check_policy(core, policy, renewal),
        }
    }

    /// Runs the layer's policy on a task of its own: the connection's lock
    /// is not held while it runs (its `check` included, so a policy may
    /// call into [`Connections`](crate::Connections)), application frames
    /// keep flowing, and the deadline is not moved until it passes.
    fn check_policy(&self, core: &mut Core<C>, policy: Policy<C>, renewal: Renewal<C>) {
        let request = PolicyRequest::renewal(
            Arc::clone(&renewal.claims),
            Arc::clone(&renewal.registered),
            self.identity.connection_id(),
        );
        let me = self.me.clone();
        let task = self.runtime.spawn(async move {
            let outcome = policy.run(request).await;
            if let Some(shared) = me.upgrade() {
                shared.policy_checked(outcome, renewal);
            }
        });
        core.renewal_check = Some(task.abort_handle());
    }

    fn policy_checked(&self, outcome: Result<(), PolicyDenial>, renewal: Renewal<C>) {
        let mut core = self.lock();
        core.renewal_check = None;
        if core.ending.is_some() {
            return;
        }
        match outcome {
            // Too late: the deadline held while the check ran.
            Ok(()) if self.deadline.has_passed() => {
                let ending = self.deadline.ending();
                self.end(&mut core, ending);
            }
            // A revocation or a re-authentication request may have come
            // while the check ran.
            Ok(()) => match self.check_renewal_now(&core, &renewal.registered) {
                Ok(()) => self.accept(&mut core, renewal),
                Err(error) => self.reject(
                    &mut core,
                    RenewRejection::InvalidToken,
                    error.to_string(),
                    renewal.id,
                ),
            },
            Err(PolicyDenial::Forbidden) => self.reject(
                &mut core,
                RenewRejection::InsufficientScope,
                "insufficient scope".into(),
                renewal.id,
            ),
            Err(PolicyDenial::Revoked) => self.reject(
                &mut core,
                RenewRejection::InvalidToken,
                TokenError::Revoked.to_string(),
                renewal.id,
            ),
            Err(PolicyDenial::Failed(_)) => self.reject(
                &mut core,
                RenewRejection::InvalidToken,
                "authorization check unavailable".into(),
                renewal.id,
            ),
        }
    }

    fn accept(&self, core: &mut Core<C>, renewal: Renewal<C>) {
        let Renewal {
            exp,
            claims,
            registered,
            id,
        } = renewal;
        self.deadline.set(exp);
        core.claims = claims;
        core.registered = registered;
        if let Some(watch) = &core.claims_watch {
            watch.send_replace(Arc::clone(&core.claims));
        }
        self.renewal_landed(core);
        self.arm(core);
        telemetry::renewed(&self.identity, exp);
        core.emit(AuthEvent::Renewed { exp });
        self.send_control(core, &ServerMessage::Renewed { exp, id });
    }

    fn reject(
        &self,
        core: &mut Core<C>,
        error: RenewRejection,
        description: String,
        id: Option<String>,
    ) {
        telemetry::renew_rejected(&self.identity, error, &description);
        core.emit(AuthEvent::RenewRejected {
            error,
            description: description.clone(),
        });
        self.send_control(
            core,
            &ServerMessage::RenewRejected {
                error,
                error_description: Some(description),
                id,
            },
        );
    }

    pub(super) fn invalid_control(
        &self,
        core: &mut Core<C>,
        id: Option<String>,
        reason: InvalidControl,
    ) {
        core.invalid_controls += 1;
        if core.invalid_controls > core.settings.session.invalid_control_limit {
            self.end(core, EndReason::BadRequests);
            return;
        }
        self.reject(
            core,
            RenewRejection::InvalidRequest,
            reason.description().into(),
            id,
        );
    }
}

/// A renewal token that passed every synchronous check.
struct Renewal<C> {
    exp: u64,
    claims: Arc<C>,
    registered: Arc<RegisteredClaims>,
    id: Option<String>,
}
