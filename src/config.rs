//! The configuration a layer shares with every connection it authenticates.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use serde::de::DeserializeOwned;

use crate::connection::Connections;
use crate::policy::Policy;
use crate::token::source::SourceConfig;
use crate::token::{JwtValidator, TokenError, ValidatedToken};

/// Immutable after the builder finishes; shared as `Arc<Settings<C>>`.
pub(crate) struct Settings<C> {
    pub(crate) validator: JwtValidator,
    pub(crate) sources: SourceConfig,
    pub(crate) allowed_origins: Option<Vec<HeaderValue>>,
    pub(crate) allow_missing_origin: bool,
    pub(crate) protocols: Vec<Arc<HeaderValue>>,
    pub(crate) realm: Arc<str>,
    /// The application's asynchronous check, run after `check_token`.
    pub(crate) policy: Option<Policy<C>>,
    pub(crate) session: SessionConfig,
    pub(crate) connections: Connections,
    pub(crate) timers: crate::timers::Timers,
}

/// Per-connection behaviour after the upgrade.
#[derive(Debug, Clone)]
pub(crate) struct SessionConfig {
    pub(crate) notify_before: Duration,
    /// Notices are spread over this window before `notify_before`.
    pub(crate) notice_jitter: Duration,
    pub(crate) leeway: Duration,
    pub(crate) renew_limit: u32,
    pub(crate) renew_window: Duration,
    pub(crate) invalid_control_limit: u32,
    pub(crate) max_control_bytes: usize,
    pub(crate) close_timeout: Duration,
    pub(crate) max_message_bytes: usize,
    pub(crate) max_frame_bytes: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            notify_before: Duration::from_secs(30),
            notice_jitter: Duration::ZERO,
            leeway: Duration::from_secs(5),
            renew_limit: 10,
            renew_window: Duration::from_secs(60),
            invalid_control_limit: 3,
            max_control_bytes: 16 * 1024,
            close_timeout: Duration::from_secs(5),
            max_message_bytes: 1 << 20,
            max_frame_bytes: 1 << 20,
        }
    }
}

impl<C: DeserializeOwned> Settings<C> {
    /// The single gate every token passes, at the handshake and on
    /// renewal: valid, and not revoked. The application's own decision is
    /// the policy's, run after it.
    pub(crate) fn check_token(&self, token: &str) -> Result<ValidatedToken<C>, TokenError> {
        let valid = self.validator.validate::<C>(token)?;
        self.connections.check_revocation(&valid.registered)?;
        Ok(valid)
    }
}

impl<C> std::fmt::Debug for Settings<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("validator", &self.validator)
            .field("sources", &self.sources)
            .field("allowed_origins", &self.allowed_origins)
            .field("allow_missing_origin", &self.allow_missing_origin)
            .field("protocols", &self.protocols)
            .field("realm", &self.realm)
            .field("policy", &self.policy.is_some())
            .field("session", &self.session)
            .field("connections", &self.connections.count())
            .finish()
    }
}
