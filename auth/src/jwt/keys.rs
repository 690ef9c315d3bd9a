//! Verification keys: an HMAC secret, a PEM public key or the keys of a JWKS, each with the
//! algorithms it may verify.
//!
//! Every key carries its own list of algorithms, derived from its type (and, for a JWK, its `alg`
//! member) and narrowed by the configured `algorithms`. A token is only ever verified with a key
//! whose list holds the token's `alg`: that is what stops algorithm confusion (an `HS256` token
//! "signed" with an RSA public key's bytes never meets an HMAC verifier).

use std::fmt;
use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use serde::de::{self, Deserializer};
use serde::Deserialize;

/// A signature algorithm a jwt authenticator may accept (`algorithms = ["RS256", …]`).
///
/// `none` is not one of them and never will be; `ES512` (P-521) is not supported by the
/// jsonwebtoken crate and is refused in the configuration.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

const TABLE: [(JwtAlgorithm, &str, Algorithm); 12] = [
    (JwtAlgorithm::HS256, "HS256", Algorithm::HS256),
    (JwtAlgorithm::HS384, "HS384", Algorithm::HS384),
    (JwtAlgorithm::HS512, "HS512", Algorithm::HS512),
    (JwtAlgorithm::RS256, "RS256", Algorithm::RS256),
    (JwtAlgorithm::RS384, "RS384", Algorithm::RS384),
    (JwtAlgorithm::RS512, "RS512", Algorithm::RS512),
    (JwtAlgorithm::PS256, "PS256", Algorithm::PS256),
    (JwtAlgorithm::PS384, "PS384", Algorithm::PS384),
    (JwtAlgorithm::PS512, "PS512", Algorithm::PS512),
    (JwtAlgorithm::ES256, "ES256", Algorithm::ES256),
    (JwtAlgorithm::ES384, "ES384", Algorithm::ES384),
    (JwtAlgorithm::EdDSA, "EdDSA", Algorithm::EdDSA),
];

impl JwtAlgorithm {
    /// Every supported algorithm.
    pub const ALL: [JwtAlgorithm; 12] = [
        JwtAlgorithm::HS256,
        JwtAlgorithm::HS384,
        JwtAlgorithm::HS512,
        JwtAlgorithm::RS256,
        JwtAlgorithm::RS384,
        JwtAlgorithm::RS512,
        JwtAlgorithm::PS256,
        JwtAlgorithm::PS384,
        JwtAlgorithm::PS512,
        JwtAlgorithm::ES256,
        JwtAlgorithm::ES384,
        JwtAlgorithm::EdDSA,
    ];

    /// Its name in a JOSE header (`HS256`, …, `EdDSA`).
    #[must_use]
    pub fn name(self) -> &'static str {
        TABLE.iter().find(|(a, _, _)| *a == self).map_or("?", |(_, n, _)| n)
    }

    pub(crate) fn to_jwt(self) -> Algorithm {
        TABLE
            .iter()
            .find(|(a, _, _)| *a == self)
            .map_or(Algorithm::HS256, |(_, _, j)| *j)
    }

    pub(crate) fn from_jwt(alg: Algorithm) -> JwtAlgorithm {
        TABLE
            .iter()
            .find(|(_, _, j)| *j == alg)
            .map_or(JwtAlgorithm::HS256, |(a, _, _)| *a)
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for JwtAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<JwtAlgorithm, String> {
        if let Some((a, _, _)) = TABLE.iter().find(|(_, n, _)| *n == s) {
            return Ok(*a);
        }
        Err(if s.eq_ignore_ascii_case("none") {
            "`none` is never accepted: tokens must be signed".to_string()
        } else if s == "ES512" {
            "ES512 (P-521) is not supported (the jsonwebtoken crate has no P-521)".to_string()
        } else {
            let names: Vec<&str> = TABLE.iter().map(|(_, n, _)| *n).collect();
            format!("unknown algorithm {s:?}: expected one of {}", names.join(", "))
        })
    }
}

impl<'de> Deserialize<'de> for JwtAlgorithm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JwtAlgorithm, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// What a key is, which decides the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Hmac,
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    /// The algorithms a key of this kind can verify.
    pub(crate) fn algorithms(self) -> &'static [Algorithm] {
        match self {
            KeyKind::Hmac => &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            KeyKind::Rsa => &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            KeyKind::EcP256 => &[Algorithm::ES256],
            KeyKind::EcP384 => &[Algorithm::ES384],
            KeyKind::Ed25519 => &[Algorithm::EdDSA],
        }
    }

    /// For error messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            KeyKind::Hmac => "an HMAC secret",
            KeyKind::Rsa => "an RSA key",
            KeyKind::EcP256 => "an EC P-256 key",
            KeyKind::EcP384 => "an EC P-384 key",
            KeyKind::Ed25519 => "an Ed25519 key",
        }
    }
}

/// One key and what it may verify.
#[derive(Debug)]
pub(crate) struct VerifyKey {
    /// The JWK `kid`; `None` for configured keys (and kid-less JWKs), which match any token.
    pub(crate) kid: Option<String>,
    pub(crate) kind: KeyKind,
    /// Its `Debug` prints no key material.
    pub(crate) key: DecodingKey,
    /// Never empty; always within `kind.algorithms()`.
    pub(crate) algorithms: Vec<Algorithm>,
}

impl VerifyKey {
    fn matches_kid(&self, kid: Option<&str>) -> bool {
        match (&self.kid, kid) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => true,
        }
    }
}

/// The keys of one authenticator: one configured key, or the usable keys of a JWKS.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    pub(crate) keys: Vec<VerifyKey>,
}

impl KeySet {
    /// Whether a token with this `kid` has a key to try (a refetch is due when not).
    pub(crate) fn knows_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.matches_kid(Some(kid)))
    }

    /// The keys to try for a token with this `kid` and `alg`, in order.
    pub(crate) fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerifyKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| k.matches_kid(kid) && k.algorithms.contains(&alg))
    }
}

/// Whether `key` can verify `alg` at all: builds the verifier, which parses EC points and
/// Ed25519 keys. (RSA keys are parsed per verification by the crate; see [`rsa_bits`].)
fn verifier_accepts(key: &DecodingKey, alg: Algorithm) -> bool {
    jsonwebtoken::crypto::verify("", b"", key, alg).is_ok()
}

/// The size of an RSA modulus given as JWK components, in bits (leading zero bytes ignored).
fn rsa_bits(key: &DecodingKey) -> Option<usize> {
    match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, .. } => {
            let n = &n[n.iter().take_while(|b| **b == 0).count()..];
            let top = n.first()?;
            Some((n.len() - 1) * 8 + (8 - top.leading_zeros() as usize))
        }
        DecodingKeyKind::SecretOrDer(_) => None,
    }
}

/// Checks that key material of `kind` is usable; the reason when not.
fn check_material(kind: KeyKind, key: &DecodingKey) -> Result<(), &'static str> {
    match kind {
        KeyKind::Hmac => Ok(()),
        KeyKind::Rsa => match rsa_bits(key) {
            // jsonwebtoken's RSA verifier refuses moduli over 4096 bits; under 2048 is too weak.
            Some(bits) if bits < 2048 => Err("RSA modulus shorter than 2048 bits"),
            Some(bits) if bits > 4096 => Err("RSA modulus longer than 4096 bits"),
            _ => Ok(()),
        },
        KeyKind::EcP256 | KeyKind::EcP384 => {
            let alg = kind.algorithms()[0];
            if verifier_accepts(key, alg) {
                Ok(())
            } else {
                Err("not a point on the curve")
            }
        }
        KeyKind::Ed25519 => {
            // The crate slices the first 32 bytes without checking the length: check it here.
            let DecodingKeyKind::SecretOrDer(bytes) = key.kind() else {
                return Err("not an Ed25519 key");
            };
            if bytes.len() == 32 && verifier_accepts(key, Algorithm::EdDSA) {
                Ok(())
            } else {
                Err("not an Ed25519 public key")
            }
        }
    }
}

/// An HMAC secret.
pub(crate) fn hmac_key(secret: &[u8]) -> VerifyKey {
    VerifyKey {
        kid: None,
        kind: KeyKind::Hmac,
        key: DecodingKey::from_secret(secret),
        algorithms: KeyKind::Hmac.algorithms().to_vec(),
    }
}

/// A PEM public key (`PUBLIC KEY`, `RSA PUBLIC KEY` or a `CERTIFICATE`): RSA, EC P-256/P-384 or
/// Ed25519. The reason when it is none of those.
pub(crate) fn pem_key(pem: &[u8]) -> Result<VerifyKey, String> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("PRIVATE KEY-----") {
        return Err("holds a private key; give the public key (`openssl pkey -in key.pem -pubout`)".to_string());
    }
    let (kind, key) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        (KeyKind::Rsa, key)
    } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        // The SEC1 point: 0x04 ‖ x ‖ y (or 0x02/0x03 ‖ x), its length gives the curve.
        let kind = match key.as_bytes().len() {
            65 | 33 => KeyKind::EcP256,
            97 | 49 => KeyKind::EcP384,
            _ => {
                return Err(
                    "EC key on an unsupported curve (P-256 and P-384 only; ES512/P-521 is not supported)".into(),
                )
            }
        };
        (kind, key)
    } else if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        (KeyKind::Ed25519, key)
    } else {
        return Err("not a PEM public key of a supported type (RSA, EC P-256/P-384, Ed25519)".to_string());
    };
    check_material(kind, &key).map_err(str::to_string)?;
    Ok(VerifyKey {
        kid: None,
        kind,
        key,
        algorithms: kind.algorithms().to_vec(),
    })
}

/// The signature algorithm a JWK's `alg` names, if it names one we support.
fn key_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// A signature key from a JWKS, allowed `accepted` algorithms at most; the reason it is skipped
/// when it cannot serve (an encryption key, a symmetric key, an unsupported curve, …).
pub(crate) fn jwk_key(jwk: &Jwk, accepted: &[Algorithm]) -> Result<VerifyKey, &'static str> {
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return Err("an encryption key (use = enc)");
    }
    if let Some(ops) = &jwk.common.key_operations {
        if !ops.contains(&KeyOperations::Verify) {
            return Err("key_ops without verify");
        }
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => KeyKind::EcP256,
            EllipticCurve::P384 => KeyKind::EcP384,
            _ => return Err("an EC key on an unsupported curve (P-521/ES512 is not supported)"),
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => KeyKind::Ed25519,
            _ => return Err("an OKP key on an unsupported curve"),
        },
        // Secrets do not belong in a key set fetched over the network.
        AlgorithmParameters::OctetKey(_) => return Err("a symmetric (oct) key"),
    };
    let mut algorithms = kind.algorithms().to_vec();
    if let Some(alg) = jwk.common.key_algorithm {
        let alg = key_algorithm(alg).ok_or("its alg is not a supported signature algorithm")?;
        if !algorithms.contains(&alg) {
            return Err("its alg does not fit its key type");
        }
        algorithms = vec![alg];
    }
    algorithms.retain(|a| accepted.contains(a));
    if algorithms.is_empty() {
        return Err("none of the configured algorithms fits it");
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "malformed key parameters")?;
    check_material(kind, &key)?;
    Ok(VerifyKey {
        kid: jwk.common.key_id.clone(),
        kind,
        key,
        algorithms,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn algorithm_names_round_trip_and_none_is_refused() {
        for a in JwtAlgorithm::ALL {
            assert_eq!(a.name().parse::<JwtAlgorithm>(), Ok(a));
            assert_eq!(JwtAlgorithm::from_jwt(a.to_jwt()), a);
        }
        for none in ["none", "None", "NONE"] {
            assert!(none.parse::<JwtAlgorithm>().unwrap_err().contains("never"));
        }
        assert!("ES512".parse::<JwtAlgorithm>().unwrap_err().contains("not supported"));
        assert!("hs256".parse::<JwtAlgorithm>().unwrap_err().contains("HS256"));
    }

    #[test]
    fn kid_matching() {
        let mut a = hmac_key(b"k");
        a.kid = Some("a".into());
        let set = KeySet {
            keys: vec![a, hmac_key(b"any")],
        };
        assert!(set.knows_kid("a"));
        assert_eq!(set.candidates(Some("a"), Algorithm::HS256).count(), 2);
        assert_eq!(set.candidates(Some("b"), Algorithm::HS256).count(), 1);
        assert_eq!(set.candidates(None, Algorithm::HS256).count(), 2);
        assert_eq!(set.candidates(None, Algorithm::RS256).count(), 0);
        let only_a = KeySet {
            keys: vec![set.keys.into_iter().next().unwrap()],
        };
        assert!(!only_a.knows_kid("b"));
    }

    #[test]
    fn short_ed25519_keys_are_refused_not_sliced() {
        let jwk: Jwk = serde_json::from_str(r#"{"kty":"OKP","crv":"Ed25519","x":"AAAA"}"#).unwrap();
        assert!(jwk_key(&jwk, &[Algorithm::EdDSA]).is_err());
    }
}
