//! The registered claims of RFC 7519 section 4.1, read by the crate itself.

use std::sync::Arc;

use serde::{Deserialize, Deserializer};

/// The registered claims of a validated token (RFC 7519 section 4.1),
/// typed, next to the application's own claims.
///
/// These are the crate's business: an application's claims type declares
/// only what the application itself reads, and never needs to restate
/// `aud` or `exp` (a copy that says `aud: String` refuses a token whose
/// `aud` is a list). Every shape the validator accepts reaches the handler:
///
/// - `aud` as one string or as a list of strings becomes a list;
/// - `exp`, `nbf` and `iat` are NumericDates read the way jsonwebtoken reads
///   `exp`: integers as they are (up to `u64::MAX`), non-negative fractions
///   below `u64::MAX as f64` rounded half away from zero;
/// - `null` counts as absent for the optional claims.
///
/// A claim jsonwebtoken lets through that is not of its RFC 7519 type (an
/// `iat` of `-1` or `1e300`, a `jti` that is a number, `aud` holding a
/// number) is refused as
/// [`TokenError::InvalidClaimFormat`](crate::token::TokenError::InvalidClaimFormat),
/// at the handshake and on renewal alike.
///
/// Read it with [`AuthUpgrade::registered`](crate::AuthUpgrade::registered)
/// or [`ValidatedToken::registered`](crate::token::ValidatedToken::registered):
///
/// ```
/// use axum_ws_auth::JwtValidator;
/// use jsonwebtoken::{EncodingKey, Header};
/// use serde_json::json;
///
/// let secret = [7u8; 32];
/// let exp = std::time::SystemTime::now()
///     .duration_since(std::time::UNIX_EPOCH)?
///     .as_secs()
///     + 60;
/// let token = jsonwebtoken::encode(
///     &Header::default(),
///     &json!({"sub": "alice", "aud": ["billing", "chat"], "exp": exp, "jti": "t-1"}),
///     &EncodingKey::from_secret(&secret),
/// )?;
///
/// // The application reads nothing of its own here.
/// let valid = JwtValidator::hs256(secret)?
///     .with_audience(&["chat"])
///     .validate::<serde::de::IgnoredAny>(&token)?;
/// assert_eq!(valid.registered.sub.as_deref(), Some("alice"));
/// assert_eq!(valid.registered.aud, ["billing", "chat"]);
/// assert_eq!(valid.registered.exp, exp);
/// assert_eq!(valid.registered.jti.as_deref(), Some("t-1"));
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegisteredClaims {
    /// `iss`: the issuer. One string; jsonwebtoken would also accept a
    /// list, which this crate refuses, since (`iss`, `sub`) is the
    /// connection's identity. Shared (an `Arc`) with the connection's
    /// [`Identity`](crate::Identity): a connection keeps one copy.
    pub iss: Option<Arc<str>>,
    /// `sub`: the subject, unique within its issuer. Required by a
    /// [`WsAuthLayer`](crate::WsAuthLayer) unless
    /// [`allow_missing_subject`](crate::WsAuthLayerBuilder::allow_missing_subject)
    /// is set. Shared with the connection's [`Identity`](crate::Identity),
    /// as `iss` is.
    pub sub: Option<Arc<str>>,
    /// `aud`: the audiences, in the token's order; a single string becomes
    /// a list of one, an absent claim an empty list.
    pub aud: Vec<String>,
    /// `exp`: the expiry, seconds since the Unix epoch. Always present.
    pub exp: u64,
    /// `nbf`: not before, seconds since the Unix epoch.
    pub nbf: Option<u64>,
    /// `iat`: issued at, seconds since the Unix epoch. Not checked against
    /// the clock.
    pub iat: Option<u64>,
    /// `jti`: the token's unique identifier.
    pub jti: Option<String>,
    /// `sid`: the OpenID Connect session the token belongs to (what
    /// [`Selector::Session`](crate::revocation::Selector::Session) matches).
    pub sid: Option<String>,
}

impl RegisteredClaims {
    /// Reads the registered claims of a payload jsonwebtoken has already
    /// validated. `None` when one of them is not of its RFC 7519 type.
    pub(crate) fn from_payload(payload: &str) -> Option<Self> {
        let raw: Raw = serde_json::from_str(payload).ok()?;
        Some(Self {
            iss: raw.iss.map(Arc::from),
            sub: raw.sub.map(Arc::from),
            aud: raw.aud.map(Audience::into_vec).unwrap_or_default(),
            exp: raw.exp.0,
            nbf: raw.nbf.map(|date| date.0),
            iat: raw.iat.map(|date| date.0),
            jti: raw.jti,
            sid: raw.sid,
        })
    }

    /// A token's identity and expiry alone, for tests that open connections
    /// without a token.
    #[cfg(test)]
    pub(crate) fn for_tests(iss: Option<&str>, sub: Option<&str>, exp: u64) -> Self {
        Self {
            iss: iss.map(Arc::from),
            sub: sub.map(Arc::from),
            aud: Vec::new(),
            exp,
            nbf: None,
            iat: None,
            jti: None,
            sid: None,
        }
    }
}

/// The wire form. jsonwebtoken has already checked `exp`, `nbf`, `iss`,
/// `aud` (and `sub` when required) by the time this is parsed.
#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    exp: NumericDate,
    #[serde(default)]
    nbf: Option<NumericDate>,
    /// RFC 7519 section 4.1.6: it MUST be a number; here, one this crate
    /// can represent, read as `exp` is.
    #[serde(default)]
    iat: Option<NumericDate>,
    #[serde(default)]
    jti: Option<String>,
    /// OpenID Connect Front- and Back-Channel Logout: a string.
    #[serde(default)]
    sid: Option<String>,
}

/// RFC 7519 section 4.1.3: one string or a list of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn into_vec(self) -> Vec<String> {
        match self {
            Audience::One(audience) => vec![audience],
            Audience::Many(audiences) => audiences,
        }
    }
}

/// RFC 7519 NumericDate as jsonwebtoken 11 reads `exp` and `nbf`
/// (`validation::numeric_type`): a non-negative integer up to `u64::MAX` as
/// it is, a finite non-negative fraction below `u64::MAX as f64` rounded
/// half away from zero (`f64::round`); anything else (negative numbers,
/// `1e300`, strings) is refused, by jsonwebtoken already for `exp` (always
/// required) and `nbf` (always checked when present). Keeping the readings
/// identical means a token jsonwebtoken accepts always has an `exp` and an
/// `nbf` this crate can represent; `iat`, which jsonwebtoken ignores, is
/// read the same way and refused when it is not a NumericDate.
struct NumericDate(u64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = serde_json::Number::deserialize(deserializer)?;
        if let Some(value) = number.as_u64() {
            return Ok(NumericDate(value));
        }
        match number.as_f64() {
            Some(value) if value.is_finite() && value >= 0.0 && value < u64::MAX as f64 => {
                Ok(NumericDate(value.round() as u64))
            }
            _ => Err(serde::de::Error::custom("not a NumericDate")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(payload: &str) -> Option<RegisteredClaims> {
        RegisteredClaims::from_payload(payload)
    }

    #[test]
    fn audience_is_a_string_or_a_list_and_null_is_absent() {
        assert_eq!(read(r#"{"exp":1,"aud":"a"}"#).unwrap().aud, ["a"]);
        assert_eq!(
            read(r#"{"exp":1,"aud":["a","b"]}"#).unwrap().aud,
            ["a", "b"]
        );
        assert!(read(r#"{"exp":1,"aud":[]}"#).unwrap().aud.is_empty());
        assert!(read(r#"{"exp":1,"aud":null}"#).unwrap().aud.is_empty());
        assert!(read(r#"{"exp":1}"#).unwrap().aud.is_empty());
        for bad in [r#"7"#, r#"["a",7]"#, r#"{"a":1}"#, r#"true"#] {
            assert_eq!(read(&format!(r#"{{"exp":1,"aud":{bad}}}"#)), None, "{bad}");
        }
    }

    #[test]
    fn every_claim_is_read_with_its_type() {
        let claims = read(
            r#"{"iss":"i","sub":"s","aud":"a","exp":10.5,"nbf":2,"iat":3.4,"jti":"j","sid":"d","x":[1]}"#,
        )
        .unwrap();
        assert_eq!(
            claims,
            RegisteredClaims {
                iss: Some("i".into()),
                sub: Some("s".into()),
                aud: vec!["a".into()],
                exp: 11,
                nbf: Some(2),
                iat: Some(3),
                jti: Some("j".into()),
                sid: Some("d".into()),
            }
        );
        let bare =
            read(r#"{"exp":1,"iss":null,"sub":null,"nbf":null,"iat":null,"jti":null,"sid":null}"#);
        assert_eq!(bare, Some(RegisteredClaims::for_tests(None, None, 1)));
        for bad in [
            r#"{"exp":1,"jti":7}"#,
            r#"{"exp":1,"sid":7}"#,
            r#"{"exp":1,"iat":-1}"#,
            r#"{"exp":1,"iat":1e300}"#,
            r#"{"exp":1,"iat":"1"}"#,
            r#"{"exp":1,"iss":["i"]}"#,
            r#"{"exp":"1"}"#,
            r#"{"aud":"a"}"#,
        ] {
            assert_eq!(read(bad), None, "{bad}");
        }
    }
}
