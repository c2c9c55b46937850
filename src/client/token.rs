use base64::Engine;

/// Reads `exp` from a compact JWT without verifying it. A client only uses
/// it to schedule its own renewal; the server does the verifying.
pub(crate) fn unverified_exp(token: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Exp {
        exp: u64,
    }
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Exp>(&json)
        .ok()
        .map(|claims| claims.exp)
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
}
