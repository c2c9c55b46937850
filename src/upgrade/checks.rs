//! The checks [`build`](super::WsAuthLayerBuilder::build) makes, one per
//! concern: a configuration that fails one is refused with its
//! [`ConfigError`], and no layer is built.

use std::time::Duration;

use http::HeaderValue;

use crate::ConfigError;
use crate::config::SessionConfig;
use crate::token::source::SourceConfig;

/// Longest leeway the builder accepts (RFC 7519: "usually no more than a few
/// minutes").
const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// At least one source; a cookie only with an Origin allow-list (else any
/// site could open a socket with the user's cookie), and a cookie name that
/// is an RFC 6265 token.
pub(super) fn token_sources(
    sources: &SourceConfig,
    origin_allow_list: bool,
) -> Result<(), ConfigError> {
    if !sources.any_enabled() {
        return Err(ConfigError::NoTokenSource);
    }
    if sources.cookie.is_some() && !origin_allow_list {
        return Err(ConfigError::CookieWithoutOriginAllowList);
    }
    if let Some(name) = &sources.cookie
        && (name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)))
    {
        return Err(ConfigError::InvalidHeaderText("cookie name"));
    }
    Ok(())
}

/// A realm that fits in a quoted string of `WWW-Authenticate`.
pub(super) fn realm(realm: &str) -> Result<(), ConfigError> {
    if realm
        .bytes()
        .any(|b| b == b'"' || b == b'\\' || !(b == b' ' || b.is_ascii_graphic()))
    {
        return Err(ConfigError::InvalidHeaderText("realm"));
    }
    Ok(())
}

/// Every limit and duration positive, and the leeway whole seconds and at
/// most [`MAX_LEEWAY`].
pub(super) fn limits(
    session: &SessionConfig,
    policy_timeout: Duration,
    revocation_retention: Duration,
) -> Result<(), ConfigError> {
    if policy_timeout.is_zero() {
        return Err(ConfigError::ZeroLimit("policy timeout"));
    }
    if session.leeway.subsec_nanos() != 0 || session.leeway > MAX_LEEWAY {
        return Err(ConfigError::Leeway);
    }
    if revocation_retention.is_zero() {
        return Err(ConfigError::ZeroLimit("revocation retention"));
    }
    for (limit, name) in [
        (session.renew_limit as usize, "renew limit"),
        (session.max_control_bytes, "control message size"),
        (session.max_message_bytes, "message size"),
        (session.max_frame_bytes, "frame size"),
    ] {
        if limit == 0 {
            return Err(ConfigError::ZeroLimit(name));
        }
    }
    Ok(())
}

pub(super) fn header_values(
    items: Vec<String>,
    what: &'static str,
    valid: impl Fn(&str) -> bool,
) -> Result<Vec<HeaderValue>, ConfigError> {
    items
        .into_iter()
        .map(|item| {
            if !valid(&item) {
                return Err(ConfigError::InvalidHeaderText(what));
            }
            HeaderValue::try_from(item).map_err(|_| ConfigError::InvalidHeaderText(what))
        })
        .collect()
}
