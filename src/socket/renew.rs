//! In-band renewal: an `auth.renew` passes exactly the checks of a
//! handshake token, keeps the connection's identity and moves its expiry
//! forward, or changes nothing.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::core::{Core, Shared};
use crate::config::Refusal;
use crate::connection::{AuthEvent, EndReason};
use crate::protocol::{InvalidControl, RenewRejection, ServerMessage};
use crate::telemetry;
use crate::token::TokenError;

impl<C> Shared<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    pub(super) fn renew(&self, core: &mut Core<C>, token: String, id: Option<String>) {
        if !core.renewals.attempt(Instant::now()) {
            self.end(core, EndReason::TooManyRenewals);
            return;
        }
        let checked = core.settings.check_token(&token);
        drop(token);
        let valid = match checked {
            Ok(valid) => valid,
            Err(Refusal::Invalid(error)) => {
                return self.reject(core, RenewRejection::InvalidToken, error.to_string(), id);
            }
            Err(Refusal::InsufficientScope) => {
                return self.reject(
                    core,
                    RenewRejection::InsufficientScope,
                    "insufficient scope".into(),
                    id,
                );
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
        self.deadline.set(valid.exp);
        core.claims = Arc::new(valid.claims);
        core.registered = Arc::new(valid.registered);
        if let Some(watch) = &core.claims_watch {
            watch.send_replace(Arc::clone(&core.claims));
        }
        core.notice_sent = false;
        self.arm(core);
        telemetry::renewed(&self.identity, valid.exp);
        core.emit(AuthEvent::Renewed { exp: valid.exp });
        self.send_control(core, &ServerMessage::Renewed { exp: valid.exp, id });
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
