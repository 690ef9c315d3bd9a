//! Entry points for the `jwt_token` fuzz target (`fuzz/fuzz_targets/jwt_token.rs`); not a
//! stable API.
//!
//! The target needs tokens that pass the signature check, or the claim checks and the `acl`
//! claim parser would never run: [`sign_hs256`] signs arbitrary header and payload bytes with
//! [`SECRET`], which [`authenticator`] accepts.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};

use super::{acl_from_claim, AclClaimError, HmacSecret, JwtAuthenticator, JwtConfig};
use crate::acl::Acl;
use crate::{Credentials, Decision};

/// The HMAC secret of [`authenticator`].
pub const SECRET: &[u8] = b"unigate-fuzz-secret-0123456789abcdef";

/// An HS256 authenticator with claim checks (`iss = "fuzz"`, `sub` bound to the client id or
/// `"any"`), `username_claim = "name"`, no `exp` required, and the default `acl` claim.
#[must_use]
pub fn authenticator() -> Option<JwtAuthenticator> {
    let mut config: JwtConfig =
        toml::from_str("require_exp = false\nusername_claim = \"name\"\nclaims = { iss = \"fuzz\", sub = [\"${clientid}\", \"any\"] }\n")
            .ok()?;
    config.secret = Some(HmacSecret::new(SECRET));
    JwtAuthenticator::new("fuzz", &config).ok()
}

/// `base64url(header).base64url(payload).signature` with HS256 and [`SECRET`].
#[must_use]
pub fn sign_hs256(header: &[u8], payload: &[u8]) -> Option<String> {
    let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_secret(SECRET), Algorithm::HS256).ok()?;
    Some(format!("{message}.{signature}"))
}

/// Runs `authenticator` on `creds` to completion; `None` if it waits (only a JWKS fetch does,
/// and the fuzzing authenticator has none).
pub fn decide(authenticator: &JwtAuthenticator, creds: &Credentials) -> Option<Decision> {
    let mut future = pin!(authenticator.decide(creds));
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(d) => Some(d),
        Poll::Pending => None,
    }
}

/// Parses `json` and, when it is JSON, compiles it as an `acl` claim.
pub fn acl_claim(json: &[u8]) -> Option<Result<Acl, AclClaimError>> {
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    Some(acl_from_claim(&value))
}

/// The `acl` member of a JSON object `payload`, compiled; `None` when `payload` is not an object
/// or has no (or a null) `acl`. What an allowed token's identity must carry.
pub fn acl_member(payload: &[u8]) -> Option<Result<Acl, AclClaimError>> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    match value.get("acl")? {
        serde_json::Value::Null => None,
        acl => Some(acl_from_claim(acl)),
    }
}
