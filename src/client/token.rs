//! Getting a token from the application's provider, and looking at it.

use std::time::Duration;

use base64::Engine;

use super::{ClientError, TokenFuture, TokenProvider};

/// Longer tokens are refused before they are sent: no server takes a header
/// this large, and a body this large is an error page, not a JWT.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Where a token is going, which decides the characters it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Usage {
    /// `Authorization: Bearer`, or a renewal's JSON: an RFC 6750 `b64token`.
    Bearer,
    /// A `Sec-WebSocket-Protocol` entry: RFC 7230 token characters only.
    Subprotocol,
}

/// A token fetch: the provider's future under a timeout, then trimmed and
/// checked. Owns everything it needs, so a session can hold it.
pub(super) type Fetch = std::pin::Pin<Box<dyn Future<Output = Result<String, ClientError>> + Send>>;

pub(super) fn fetch(provider: &TokenProvider, timeout: Duration, usage: Usage) -> Fetch {
    let pending: TokenFuture = provider();
    Box::pin(async move {
        let raw = match tokio::time::timeout(timeout, pending).await {
            Err(_) => return Err(ClientError::TokenTimeout(timeout)),
            Ok(Err(error)) => return Err(ClientError::TokenProvider(error.to_string())),
            Ok(Ok(raw)) => raw,
        };
        prepare(&raw, usage)
    })
}

/// Trims the provider's answer and checks that it can be sent as `usage`.
pub(super) fn prepare(raw: &str, usage: Usage) -> Result<String, ClientError> {
    let token = raw.trim();
    if token.is_empty() {
        return Err(ClientError::UnusableToken("it is empty"));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(ClientError::UnusableToken("it is longer than 16 KiB"));
    }
    let usable = match usage {
        Usage::Bearer => is_b64token(token),
        Usage::Subprotocol => token.bytes().all(is_subprotocol_byte),
    };
    if usable {
        Ok(token.to_owned())
    } else if usage == Usage::Subprotocol && is_b64token(token) {
        Err(ClientError::UnusableToken(
            "it has characters a subprotocol entry cannot carry",
        ))
    } else {
        Err(ClientError::UnusableToken(
            "it has characters a bearer token cannot have",
        ))
    }
}

/// RFC 6750: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(|b| is_subprotocol_byte(b) || b == b'/')
}

/// The `b64token` characters that are also RFC 7230 `tchar`s (what a
/// compact JWT is made of, with room for `~` and `+`).
fn is_subprotocol_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+')
}

/// Reads `exp` from a compact JWT without verifying it. A client only uses
/// it to schedule its own renewal; the server does the verifying. A
/// fractional or out-of-range NumericDate saturates into `u64`.
pub(super) fn unverified_exp(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&json).ok()?;
    let exp = claims.get("exp")?;
    exp.as_u64().or_else(|| {
        let float = exp.as_f64()?;
        // `as` saturates: negative to 0, beyond the range to u64::MAX.
        float.is_finite().then_some(float as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_read_from_the_payload() {
        // {"alg":"HS256"} . {"sub":"a","exp":1764000000} . sig
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIiwiZXhwIjoxNzY0MDAwMDAwfQ.c2ln";
        assert_eq!(unverified_exp(token), Some(1764000000));
        assert_eq!(unverified_exp("garbage"), None);
        assert_eq!(unverified_exp("a.e30.c"), None);
    }

    #[test]
    fn extreme_exp_values_saturate() {
        let b64 = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        for (exp, expected) in [
            ("18446744073709551615", Some(u64::MAX)),
            ("1.8e300", Some(u64::MAX)),
            ("9007199254740992", Some(1 << 53)),
            ("1700000000.5", Some(1_700_000_000)),
            ("0", Some(0)),
            ("-5", Some(0)),
            ("\"soon\"", None),
        ] {
            let token = format!("e30.{}.c2ln", b64(&format!("{{\"exp\":{exp}}}")));
            assert_eq!(unverified_exp(&token), expected, "{exp}");
        }
    }

    #[test]
    fn tokens_are_trimmed_and_unusable_ones_refused_without_echoing_them() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
        for usage in [Usage::Bearer, Usage::Subprotocol] {
            assert_eq!(prepare(&format!("{jwt}\n"), usage).unwrap(), jwt);
            assert_eq!(prepare(&format!(" \t{jwt}\r\n"), usage).unwrap(), jwt);
            for bad in [
                "",
                " \n",
                "<html><body>502 Bad Gateway</body></html>",
                "a b",
                "tok\u{e9}n",
            ] {
                let error = prepare(bad, usage).unwrap_err();
                assert!(matches!(error, ClientError::UnusableToken(_)), "{bad:?}");
                if bad.len() > 8 {
                    assert!(!error.to_string().contains(bad.trim()));
                }
            }
            assert!(prepare(&"a".repeat(MAX_TOKEN_BYTES + 1), usage).is_err());
        }
        // Opaque bearer tokens may use `/` and `=` padding; a subprotocol may not.
        assert_eq!(prepare("abc/def==", Usage::Bearer).unwrap(), "abc/def==");
        assert!(prepare("abc/def==", Usage::Subprotocol).is_err());
        assert!(prepare("===", Usage::Bearer).is_err());
    }
}
