//! A JWT arrives as an MQTT password (or user name, or CoAP query) from anyone: the shape check,
//! header parsing, signature check, claim checks and the `acl` claim parser must never panic,
//! and the decisions must follow the documented table.
//!
//! Each input is used three ways:
//!
//! 1. as the token itself, against an HS256 authenticator with a fixed secret;
//! 2. as header and payload JSON (split at the first byte 0x00; without one, the whole input is
//!    the payload under `{"alg":"HS256"}`), signed with that secret, so that the claim checks and
//!    the `acl` claim parser run on arbitrary claims;
//! 3. as an `acl` claim on its own.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use unigate_auth::jwt::fuzzing::{acl_claim, acl_member, authenticator, decide, sign_hs256};
use unigate_auth::jwt::{looks_like_jwt, JwtAuthenticator, MAX_TOKEN_LEN};
use unigate_auth::{Credentials, Decision, DenyReason, Protocol, Secret};

static AUTHENTICATOR: OnceLock<JwtAuthenticator> = OnceLock::new();

fn creds(token: &[u8]) -> Credentials {
    Credentials {
        client_id: Some("c1".to_string()),
        username: Some("u".to_string()),
        password: Some(Secret::new(token)),
        ..Credentials::new(Protocol::Mqtt, "fuzz")
    }
}

fuzz_target!(|data: &[u8]| {
    let auth = AUTHENTICATOR.get_or_init(|| authenticator().expect("the fuzzing authenticator builds"));

    // 1. The input as a token.
    let d = decide(auth, &creds(data)).expect("static keys never wait");
    if data.is_empty() {
        assert_eq!(d, Decision::Ignore);
    } else if data.len() > MAX_TOKEN_LEN {
        assert_eq!(d, Decision::Deny(DenyReason::BadCredentials));
    } else if !looks_like_jwt(data) {
        assert_eq!(d, Decision::Ignore);
    } else {
        assert_ne!(d, Decision::Ignore, "a JWT-shaped token is decided");
    }

    // 2. The input as signed header and payload.
    let (header, payload) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&br#"{"alg":"HS256"}"#[..], data),
    };
    if let Some(token) = sign_hs256(header, payload) {
        let d = decide(auth, &creds(token.as_bytes())).expect("static keys never wait");
        if token.len() > MAX_TOKEN_LEN {
            assert_eq!(d, Decision::Deny(DenyReason::BadCredentials));
        }
        if let Decision::Allow(identity) = &d {
            assert_eq!(&*identity.authenticator, "fuzz");
            assert!(identity.username.is_some(), "username_claim is required");
            // The identity carries exactly the token's acl claim, which compiled.
            match acl_member(payload) {
                None => assert!(identity.acl.is_none()),
                Some(Ok(acl)) => assert_eq!(identity.acl.as_deref(), Some(&acl)),
                Some(Err(e)) => panic!("allowed with a malformed acl claim: {e}"),
            }
        }
    }

    // 3. The input as an acl claim.
    if let Some(Ok(acl)) = acl_claim(data) {
        let _ = acl.rules().len();
    }
});
