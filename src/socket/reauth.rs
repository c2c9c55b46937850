//! Server-requested re-authentication: an early `auth.expiring` whose
//! `exp` is the moment the connection ends without a renewal, and the
//! freshness a renewal answering it must show.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::core::{Core, Shared};
use crate::connection::AuthEvent;
use crate::protocol::ServerMessage;
use crate::telemetry;
use crate::token::{RegisteredClaims, TokenError};

impl<C> Shared<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    /// Asks the peer for a fresh token within `grace` if the current token
    /// satisfies `matches`: the deadline moves to now plus `grace` (whole
    /// seconds, rounded up; never later than it was), the notice goes out
    /// through the control outbox. True if the peer was asked.
    pub(super) fn request_reauth(
        &self,
        matches: &dyn Fn(&RegisteredClaims) -> bool,
        grace: Duration,
    ) -> bool {
        let mut core = self.lock();
        if core.ending.is_some() || !matches(&core.registered) {
            return false;
        }
        let now = SystemTime::now();
        let since = seconds_down(now);
        let wanted = now.checked_add(grace).map_or(u64::MAX, seconds_up);
        let (exp, exp_at) = self.deadline.request_reauth(since, wanted);
        let expires_in = exp_at.saturating_duration_since(Instant::now()).as_secs();
        self.send_control(&mut core, &ServerMessage::Expiring { exp, expires_in });
        // The token's own notice is this one.
        core.notice_sent = true;
        self.arm(&mut core);
        core.emit(AuthEvent::ReauthRequested { exp, expires_in });
        // Last: a panicking log or metrics hook must not lose the notice.
        telemetry::reauth_requested(&self.identity, exp, expires_in);
        true
    }

    /// The checks a renewal passes at the moment it is applied, under the
    /// connection's lock, after the token's own validation:
    ///
    /// - its token is not revoked *now* (a revocation stored after the
    ///   token was validated has already scanned the live sockets, and
    ///   would miss this one's new token);
    /// - while a re-authentication request is pending, it was issued in
    ///   the request's second or later (`iat`), so neither the current
    ///   token nor one minted before the request answers it.
    pub(super) fn check_renewal_now(
        &self,
        core: &Core<C>,
        registered: &RegisteredClaims,
    ) -> Result<(), TokenError> {
        core.settings.connections.check_revocation(registered)?;
        if let Some(since) = self.deadline.reauth_since()
            && registered.iat.is_none_or(|iat| iat < since)
        {
            return Err(TokenError::IssuedBeforeReauthentication);
        }
        Ok(())
    }
}

fn seconds_down(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn seconds_up(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        since.as_secs() + u64::from(since.subsec_nanos() > 0)
    })
}
