//! The keys both benchmarks sign and verify with: one per algorithm family,
//! from the test fixtures.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

/// `(name, alg, verifying key, signing key)` for HS256 (with `secret`),
/// RS256, ES256 and EdDSA.
pub(crate) fn signing_keys(
    secret: &[u8],
) -> [(&'static str, Algorithm, DecodingKey, EncodingKey); 4] {
    [
        (
            "HS256",
            Algorithm::HS256,
            DecodingKey::from_secret(secret),
            EncodingKey::from_secret(secret),
        ),
        (
            "RS256",
            Algorithm::RS256,
            DecodingKey::from_rsa_pem(include_bytes!("../../tests/fixtures/rsa_public.pem"))
                .unwrap(),
            EncodingKey::from_rsa_pem(include_bytes!("../../tests/fixtures/rsa_private.pem"))
                .unwrap(),
        ),
        (
            "ES256",
            Algorithm::ES256,
            DecodingKey::from_ec_pem(include_bytes!("../../tests/fixtures/ec_public.pem")).unwrap(),
            EncodingKey::from_ec_pem(include_bytes!("../../tests/fixtures/ec_private.pem"))
                .unwrap(),
        ),
        (
            "EdDSA",
            Algorithm::EdDSA,
            DecodingKey::from_ed_pem(include_bytes!("../../tests/fixtures/ed_public.pem")).unwrap(),
            EncodingKey::from_ed_pem(include_bytes!("../../tests/fixtures/ed_private.pem"))
                .unwrap(),
        ),
    ]
}
