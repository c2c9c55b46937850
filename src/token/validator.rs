use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::{RegisteredClaims, TokenError};
use crate::ConfigError;

/// Tokens longer than this are refused before any parsing, by default.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Checks compact JWTs against one prepared key and a [`Validation`].
///
/// The key is parsed once, when the validator is built; validating a token
/// never touches PEM or JWK text. The `Validation` is jsonwebtoken's own
/// plain-data type, tightened on construction: `exp` is always required and
/// checked, and `nbf` is checked when present. Header parameters that
/// name keys (`jku`, `x5u`, `jwk`, `x5c`, `kid`) are never followed: only the
/// configured key verifies, and headers with `crit`, `enc` or `zip` are
/// refused (RFC 8725 section 3.1). Leeway is set by
/// [`WsAuthLayerBuilder::leeway`](crate::WsAuthLayerBuilder::leeway) so
/// that the handshake check and the connection's deadline agree.
///
/// ```
/// use axum_ws_auth::JwtValidator;
///
/// let validator = JwtValidator::hs256(b"a secret of at least thirty-two bytes!")?
///     .with_audience(&["chat"])
///     .with_issuer(&["https://auth.example.com"]);
/// # Ok::<_, axum_ws_auth::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct JwtValidator {
    keys: Keys,
    validation: Validation,
    max_token_bytes: usize,
}

/// Where verifying keys come from.
#[derive(Clone)]
enum Keys {
    /// One key, prepared once.
    Static(DecodingKey),
    /// A JWKS, selected by the token's `kid`. jsonwebtoken verifies with
    /// one key family at a time, so each family gets its own copy of the
    /// validation, made on first use.
    #[cfg(feature = "jwks")]
    Jwks(super::JwksSource, std::sync::OnceLock<Vec<Validation>>),
}

/// `exp` is always required and checked, `nbf` checked when present;
/// leeway comes from the layer.
fn tightened(mut validation: Validation) -> Result<Validation, ConfigError> {
    if validation.algorithms.is_empty() {
        return Err(ConfigError::NoAlgorithm);
    }
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.required_spec_claims.insert("exp".to_owned());
    validation.leeway = 0;
    Ok(validation)
}

impl JwtValidator {
    /// A validator for `key`, accepting the algorithms in `validation`.
    ///
    /// Fails when no algorithm is allowed or when an allowed algorithm does
    /// not belong to the key's family (which is what makes algorithm
    /// confusion possible).
    ///
    /// ```
    /// use axum_ws_auth::JwtValidator;
    /// use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    ///
    /// let key = DecodingKey::from_secret(&[7; 32]);
    /// assert!(JwtValidator::new(key.clone(), Validation::new(Algorithm::HS512)).is_ok());
    /// assert!(JwtValidator::new(key, Validation::new(Algorithm::RS256)).is_err());
    /// ```
    pub fn new(key: DecodingKey, validation: Validation) -> Result<Self, ConfigError> {
        let validation = tightened(validation)?;
        if let Some(alg) = validation
            .algorithms
            .iter()
            .find(|alg| alg.family() != key.family())
        {
            return Err(ConfigError::AlgorithmKeyMismatch(format!("{alg:?}")));
        }
        Ok(Self {
            keys: Keys::Static(key),
            validation,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        })
    }

    /// A validator whose keys come from `source`, chosen by the token's
    /// `kid`; `iss` must be the source's issuer. Only asymmetric algorithms
    /// may be allowed: a JWKS never supplies HMAC secrets.
    #[cfg(feature = "jwks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
    pub fn jwks(source: super::JwksSource, validation: Validation) -> Result<Self, ConfigError> {
        let mut validation = tightened(validation)?;
        if let Some(alg) = validation
            .algorithms
            .iter()
            .find(|alg| alg.family() == jsonwebtoken::AlgorithmFamily::Hmac)
        {
            return Err(ConfigError::AlgorithmKeyMismatch(format!("{alg:?}")));
        }
        validation.set_issuer(&[source.issuer()]);
        validation.required_spec_claims.insert("iss".to_owned());
        Ok(Self {
            keys: Keys::Jwks(source, std::sync::OnceLock::new()),
            validation,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        })
    }

    /// An `HS256` validator for a shared secret of at least 32 bytes.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let secret = secret.as_ref();
        if secret.len() < 32 {
            return Err(ConfigError::WeakSecret);
        }
        Self::new(
            DecodingKey::from_secret(secret),
            Validation::new(Algorithm::HS256),
        )
    }

    /// Accept only tokens whose `aud` names one of `audience`; `aud` becomes
    /// a required claim.
    pub fn with_audience<T: ToString>(mut self, audience: &[T]) -> Self {
        self.validation.set_audience(audience);
        self.validation
            .required_spec_claims
            .insert("aud".to_owned());
        self.validation_changed();
        self
    }

    /// Accept only tokens whose `iss` is one of `issuers`; `iss` becomes a
    /// required claim.
    pub fn with_issuer<T: ToString>(mut self, issuers: &[T]) -> Self {
        self.validation.set_issuer(issuers);
        self.validation
            .required_spec_claims
            .insert("iss".to_owned());
        self.validation_changed();
        self
    }

    /// Refuse tokens longer than `bytes` before parsing them
    /// (default [`DEFAULT_MAX_TOKEN_BYTES`]).
    pub fn with_max_token_bytes(mut self, bytes: usize) -> Self {
        self.max_token_bytes = bytes;
        self
    }

    /// The validation rules in force.
    pub fn validation(&self) -> &Validation {
        &self.validation
    }

    /// The size limit in force.
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    pub(crate) fn set_leeway_secs(&mut self, leeway: u64) {
        self.validation.leeway = leeway;
        self.validation_changed();
    }

    /// Makes `sub` a required claim: the connection's identity is
    /// (`iss`, `sub`), so a layer refuses tokens without a subject unless
    /// the application opts out.
    pub(crate) fn require_subject(&mut self) {
        self.validation
            .required_spec_claims
            .insert("sub".to_owned());
        self.validation_changed();
    }

    /// Derived per-family validations must follow every change.
    fn validation_changed(&mut self) {
        #[cfg(feature = "jwks")]
        if let Keys::Jwks(_, by_family) = &mut self.keys {
            *by_family = std::sync::OnceLock::new();
        }
    }

    #[cfg(feature = "jwks")]
    fn per_family_validations(&self) -> Vec<Validation> {
        let mut families: Vec<jsonwebtoken::AlgorithmFamily> = Vec::new();
        for alg in &self.validation.algorithms {
            if !families.contains(&alg.family()) {
                families.push(alg.family());
            }
        }
        families
            .into_iter()
            .map(|family| {
                let mut validation = self.validation.clone();
                validation.algorithms.retain(|alg| alg.family() == family);
                validation
            })
            .collect()
    }

    /// Verifies `token` and deserializes its claims into `C`.
    ///
    /// ```
    /// use axum_ws_auth::JwtValidator;
    /// use axum_ws_auth::token::TokenError;
    ///
    /// let validator = JwtValidator::hs256([1u8; 32])?;
    /// let result = validator.validate::<serde_json::Value>("not.a.jwt");
    /// assert_eq!(result.unwrap_err(), TokenError::Malformed);
    /// # Ok::<_, axum_ws_auth::ConfigError>(())
    /// ```
    pub fn validate<C: DeserializeOwned>(
        &self,
        token: &str,
    ) -> Result<ValidatedToken<C>, TokenError> {
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let decode = |key: &DecodingKey| {
            jsonwebtoken::decode::<Box<RawValue>>(token, key, &self.validation)
                .map_err(|error| TokenError::from_jwt(&error))
        };
        let data = match &self.keys {
            Keys::Static(key) => decode(key)?,
            #[cfg(feature = "jwks")]
            Keys::Jwks(source, by_family) => {
                let header = jsonwebtoken::decode_header(token)
                    .map_err(|error| TokenError::from_jwt(&error))?;
                let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
                let cached = source.key(kid).ok_or(TokenError::UnknownKey)?;
                if cached.alg.is_some_and(|alg| alg != header.alg) {
                    return Err(TokenError::AlgorithmNotAllowed);
                }
                let family = cached.key.family();
                let validation = by_family
                    .get_or_init(|| self.per_family_validations())
                    .iter()
                    .find(|v| {
                        v.algorithms
                            .first()
                            .is_some_and(|alg| alg.family() == family)
                    })
                    .ok_or(TokenError::AlgorithmNotAllowed)?;
                jsonwebtoken::decode::<Box<RawValue>>(token, &cached.key, validation)
                    .map_err(|error| TokenError::from_jwt(&error))?
            }
        };
        let header = &data.header;
        if header.crit.is_some() || header.enc.is_some() || header.zip.is_some() {
            return Err(TokenError::UnsupportedHeader);
        }
        let payload = data.claims.get();
        let registered =
            RegisteredClaims::from_payload(payload).ok_or(TokenError::InvalidClaimFormat)?;
        let claims = serde_json::from_str(payload).map_err(|_| TokenError::UnexpectedClaims)?;
        Ok(ValidatedToken {
            claims,
            iss: registered.iss.clone(),
            sub: registered.sub.clone(),
            exp: registered.exp,
            registered,
        })
    }
}

impl std::fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtValidator")
            .field("key", &"<redacted>")
            .field("algorithms", &self.validation.algorithms)
            .field("aud", &self.validation.aud)
            .field("iss", &self.validation.iss)
            .field("required", &self.validation.required_spec_claims)
            .field("max_token_bytes", &self.max_token_bytes)
            .finish()
    }
}

/// A token that passed validation: the application's claims and the
/// registered claims, typed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ValidatedToken<C> {
    /// The application's claims.
    pub claims: C,
    /// The registered claims (`iss`, `sub`, `aud`, `exp`, `nbf`, `iat`,
    /// `jti`), whatever `C` declares.
    pub registered: RegisteredClaims,
    /// The `iss` claim, if present; the same as
    /// [`registered.iss`](RegisteredClaims::iss). Together with
    /// [`sub`](Self::sub) it is the connection's identity: a subject is
    /// unique only within its issuer. An `iss` that is not a single string
    /// (jsonwebtoken would accept a list) is refused as
    /// [`TokenError::InvalidClaimFormat`].
    pub iss: Option<Arc<str>>,
    /// The `sub` claim, if present; the same as
    /// [`registered.sub`](RegisteredClaims::sub). A
    /// [`WsAuthLayer`](crate::WsAuthLayer) requires it unless
    /// [`allow_missing_subject`](crate::WsAuthLayerBuilder::allow_missing_subject)
    /// is set.
    pub sub: Option<Arc<str>>,
    /// The `exp` claim (seconds since the Unix epoch), exactly as
    /// jsonwebtoken read it for its own check: integers as they are (up to
    /// `u64::MAX`), fractions rounded half away from zero. The same as
    /// [`registered.exp`](RegisteredClaims::exp).
    pub exp: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    const SECRET: &[u8] = b"unit test secret of 32 bytes or more";

    fn sign(claims: &Value) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn now() -> f64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    }

    #[test]
    fn fractional_exp_is_a_numeric_date() {
        let validator = JwtValidator::hs256(SECRET).unwrap();
        let exp = now().floor() + 60.6;
        let valid = validator
            .validate::<Value>(&sign(&json!({"sub": "a", "exp": exp})))
            .unwrap();
        assert_eq!(valid.exp, exp.round() as u64);
        assert_eq!(valid.registered.exp, valid.exp);
        assert_eq!(valid.sub.as_deref(), Some("a"));
    }

    #[test]
    fn secrets_and_key_families_are_checked_when_built() {
        assert_eq!(
            JwtValidator::hs256([0u8; 31]).unwrap_err(),
            ConfigError::WeakSecret
        );
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms.clear();
        assert_eq!(
            JwtValidator::new(DecodingKey::from_secret(SECRET), validation).unwrap_err(),
            ConfigError::NoAlgorithm
        );
        let rsa = DecodingKey::from_rsa_pem(include_bytes!("../../tests/fixtures/rsa_public.pem"))
            .unwrap();
        assert!(matches!(
            JwtValidator::new(rsa, Validation::new(Algorithm::HS256)),
            Err(ConfigError::AlgorithmKeyMismatch(_))
        ));
    }

    #[test]
    fn exp_is_required_even_if_the_validation_says_otherwise() {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let validator = JwtValidator::new(DecodingKey::from_secret(SECRET), validation).unwrap();
        assert_eq!(
            validator
                .validate::<Value>(&sign(&json!({"sub": "a"})))
                .unwrap_err(),
            TokenError::MissingClaim
        );
    }

    /// How jsonwebtoken 11 reads a NumericDate (`validation::numeric_type`),
    /// written out value by value: `None` is "not a NumericDate".
    fn extreme_values(now: u64) -> Vec<(String, Option<u64>)> {
        let two_53 = 1u64 << 53;
        let mut values: Vec<(String, Option<u64>)> = [
            ("0", Some(0)),
            ("-0", Some(0)),
            ("-1", None),
            ("-1e18", None),
            ("-1000000000000000000", None),
            ("0.5", Some(1)),
            ("0.4", Some(0)),
            ("9007199254740992", Some(two_53)),
            ("9007199254740993", Some(two_53 + 1)),
            // Not 2^53 (the nearest float): serde_json's default float
            // parser is best-effort, within one ulp. jsonwebtoken reads the
            // same text with the same parser, so the two agree on it.
            ("9007199254740993.0", Some(two_53 + 2)),
            ("18446744073709551615", Some(u64::MAX)),
            // u64::MAX + 1 parses as the float 2^64: not below u64::MAX as f64.
            ("18446744073709551616", None),
            ("18446744073709551615.0", None),
            ("1.8446744073709552e19", None),
            // The largest float below 2^64.
            ("18446744073709549568.0", Some(18_446_744_073_709_549_568)),
            ("1.8e19", Some(18_000_000_000_000_000_000)),
            ("1e300", None),
            ("null", None),
            ("\"1700000000\"", None),
            ("true", None),
        ]
        .into_iter()
        .map(|(text, reading)| (text.to_owned(), reading))
        .collect();
        for (text, reading) in [
            (format!("{now}"), now),
            (format!("{}", now - 1), now - 1),
            (format!("{}", now + 1), now + 1),
            (format!("{now}.4"), now),
            (format!("{now}.5"), now + 1),
            (format!("{now}.6"), now + 1),
            (format!("{}.6", now - 1), now),
            (format!("{}", now + 3600), now + 3600),
            (format!("{}.5", now + 3600), now + 3601),
        ] {
            values.push((text, Some(reading)));
        }
        values
    }

    fn sign_raw(payload: &str) -> String {
        let raw = RawValue::from_string(payload.to_owned()).unwrap();
        jsonwebtoken::encode(&Header::default(), &raw, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    fn secs() -> u64 {
        now() as u64
    }

    /// What the validator must answer, from the readings of `exp` and
    /// `nbf` and whether `iat` is a number, at jsonwebtoken's `now`.
    fn expected(
        exp: Option<u64>,
        nbf: Option<Option<u64>>,
        iat_ok: bool,
        now: u64,
        leeway: u64,
    ) -> Result<u64, TokenError> {
        let exp = exp.ok_or(TokenError::MissingClaim)?;
        if nbf == Some(None) {
            return Err(TokenError::InvalidClaimFormat);
        }
        if exp < now - leeway {
            return Err(TokenError::Expired);
        }
        if nbf.flatten().is_some_and(|nbf| nbf > now + leeway) {
            return Err(TokenError::NotYetValid);
        }
        if !iat_ok {
            return Err(TokenError::InvalidClaimFormat);
        }
        Ok(exp)
    }

    /// Validates `payload`, retrying when the clock's second changed
    /// meanwhile, and checks the answer against `expected`.
    fn check(
        validator: &JwtValidator,
        payload: &str,
        expect: impl Fn(u64) -> Result<u64, TokenError>,
    ) {
        let token = sign_raw(payload);
        loop {
            let before = secs();
            let result = validator.validate::<Value>(&token).map(|valid| valid.exp);
            if secs() != before {
                continue;
            }
            assert_eq!(result, expect(before), "{payload}");
            return;
        }
    }

    #[test]
    fn extreme_exp_nbf_and_iat_values_get_the_answer_jsonwebtoken_gives() {
        for leeway in [0, 5] {
            let mut validator = JwtValidator::hs256(SECRET).unwrap();
            validator.set_leeway_secs(leeway);
            let now = secs();
            let values = extreme_values(now);
            let mut optional: Vec<Option<&(String, Option<u64>)>> = vec![None];
            optional.extend(values.iter().map(Some));
            for (exp, exp_reading) in &values {
                for nbf in &optional {
                    for iat in &optional {
                        let mut payload = format!(r#"{{"sub":"a","exp":{exp}"#);
                        if let Some((text, _)) = nbf {
                            payload.push_str(&format!(r#","nbf":{text}"#));
                        }
                        if let Some((text, _)) = iat {
                            payload.push_str(&format!(r#","iat":{text}"#));
                        }
                        payload.push('}');
                        // jsonwebtoken ignores `iat`; this crate reads it as a
                        // NumericDate (or null, for absent) and refuses the rest.
                        let iat_ok =
                            iat.is_none_or(|(text, reading)| reading.is_some() || text == "null");
                        check(&validator, &payload, |now| {
                            expected(*exp_reading, nbf.map(|(_, r)| *r), iat_ok, now, leeway)
                        });
                    }
                }
            }
        }
    }

    /// The float serde_json (without `float_roundtrip`, as here) reads
    /// from `text`; it may be one ulp off the nearest.
    fn as_parsed(text: &str) -> f64 {
        serde_json::from_str(text).unwrap()
    }

    /// A seeded walk over random values: fractions around `now` (where
    /// jsonwebtoken's rounding decides "expired" or "not yet valid", so its
    /// reading shows), random integers and random finite floats of every
    /// magnitude. Whatever jsonwebtoken decides must agree with the
    /// `exp` this crate reports.
    #[test]
    fn random_numeric_dates_are_read_the_same_way_by_both() {
        let validator = JwtValidator::hs256(SECRET).unwrap();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..3000 {
            let now = secs();
            let (text, reading) = match round % 3 {
                0 => {
                    let offset = (next() % 6000) as f64 / 1000.0 - 3.0;
                    let text = format!("{:?}", now as f64 + offset);
                    (text.clone(), Some(as_parsed(&text).round() as u64))
                }
                1 => {
                    let value = next();
                    if value % 2 == 0 {
                        (value.to_string(), Some(value))
                    } else {
                        (format!("-{}", value >> 1 | 1), None)
                    }
                }
                _ => {
                    let value = f64::from_bits(next());
                    if !value.is_finite() {
                        continue;
                    }
                    let text = format!("{value:e}");
                    let value = as_parsed(&text);
                    let reading =
                        (value >= 0.0 && value < u64::MAX as f64).then(|| value.round() as u64);
                    (text, reading)
                }
            };
            check(
                &validator,
                &format!(r#"{{"sub":"a","exp":{text}}}"#),
                |now| expected(reading, None, true, now, 0),
            );
            let exp = now + 3600;
            check(
                &validator,
                &format!(r#"{{"sub":"a","exp":{exp},"nbf":{text}}}"#),
                |now| expected(Some(exp), Some(reading), true, now, 0),
            );
        }
    }

    #[test]
    fn iss_and_sub_are_read_and_sub_can_be_required() {
        let mut validator = JwtValidator::hs256(SECRET).unwrap();
        let exp = secs() + 60;
        let valid = validator
            .validate::<Value>(&sign(&json!({"iss": "https://a", "sub": "x", "exp": exp})))
            .unwrap();
        assert_eq!(valid.iss.as_deref(), Some("https://a"));
        assert_eq!(valid.sub.as_deref(), Some("x"));
        let anonymous = sign(&json!({"iss": "https://a", "exp": exp}));
        let valid = validator.validate::<Value>(&anonymous).unwrap();
        assert_eq!((valid.iss.as_deref(), valid.sub), (Some("https://a"), None));
        // jsonwebtoken accepts an issuer list; an identity needs one issuer.
        assert_eq!(
            validator
                .validate::<Value>(&sign(
                    &json!({"iss": ["https://a"], "sub": "x", "exp": exp})
                ))
                .unwrap_err(),
            TokenError::InvalidClaimFormat
        );
        assert_eq!(
            validator
                .validate::<Value>(&sign(&json!({"sub": 7, "exp": exp})))
                .unwrap_err(),
            TokenError::InvalidClaimFormat
        );
        validator.require_subject();
        assert_eq!(
            validator.validate::<Value>(&anonymous).unwrap_err(),
            TokenError::MissingClaim
        );
        assert_eq!(
            validator
                .validate::<Value>(&sign(&json!({"sub": 7, "exp": exp})))
                .unwrap_err(),
            TokenError::MissingClaim
        );
    }
}
