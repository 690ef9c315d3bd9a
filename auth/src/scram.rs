//! SCRAM-SHA-256 (RFC 5802, RFC 7677), server side, sans-IO: what MQTT 5 enhanced
//! authentication (the AUTH packet) runs with the password store.
//!
//! The exchange: the client's first message (`n,,n=user,r=cnonce`) arrives in CONNECT; the
//! server answers with its first message (`r=cnonce+snonce,s=salt,i=iterations`) in AUTH; the
//! client's final message (`c=biws,r=…,p=proof`) proves it knows the password; the server's
//! final message (`v=signature`) in CONNACK proves the server knew it too. The server keeps
//! only `StoredKey` and `ServerKey` (not the password, not a password-equivalent for other
//! mechanisms), in the PostgreSQL notation
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (standard base64).
//!
//! Unknown users get a made-up but stable salt (HMAC of the user name under a per-process
//! secret), so the exchange does not tell whether a user exists. Channel binding is not
//! offered (`n,,`; a client asking for it with `p=` is refused).

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The mechanism name, as in the MQTT 5 Authentication Method property.
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// PBKDF2 iterations of new credentials (RFC 7677's minimum; it is the client that pays it).
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Iteration counts accepted in stored credentials.
const ITERATIONS: std::ops::RangeInclusive<u32> = 4096..=10_000_000;
/// Longest SCRAM message accepted.
const MAX_MESSAGE: usize = 4096;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Why an exchange failed. The messages never contain a proof, key or password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScramError {
    /// A message does not follow RFC 5802's grammar.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding, which is not offered.
    #[error("channel binding is not supported")]
    ChannelBinding,
    /// The final message does not continue this exchange (nonce or GS2 header differ).
    #[error("SCRAM final message does not match the exchange")]
    Mismatch,
    /// The proof is wrong: wrong password or unknown user.
    #[error("SCRAM proof does not verify")]
    BadProof,
    /// Stored credentials cannot be parsed.
    #[error("bad SCRAM credentials: {0}")]
    BadCredentials(&'static str),
}

/// What the server stores for a user.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// PBKDF2 salt.
    pub salt: Vec<u8>,
    /// H(ClientKey).
    pub stored_key: [u8; 32],
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: [u8; 32],
}

impl fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: new_from_slice cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

impl ScramCredentials {
    /// Derives the credentials of `password` (RFC 5802 §3).
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> ScramCredentials {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let server_key = hmac(&salted, b"Server Key");
        ScramCredentials {
            iterations,
            salt: salt.to_vec(),
            stored_key,
            server_key,
        }
    }

    /// New credentials for `password` with a random 16-byte salt.
    pub fn generate(password: &[u8]) -> ScramCredentials {
        let salt: [u8; 16] = rand_bytes();
        Self::derive(password, &salt, DEFAULT_ITERATIONS)
    }

    /// Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn parse(s: &str) -> Result<ScramCredentials, ScramError> {
        let bad = ScramError::BadCredentials;
        let rest = s
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or(bad("does not start with SCRAM-SHA-256$"))?;
        let (params, keys) = rest
            .split_once('$')
            .ok_or(bad("expected iterations:salt$stored:server"))?;
        let (iterations, salt) = params.split_once(':').ok_or(bad("expected iterations:salt"))?;
        let (stored, server) = keys.split_once(':').ok_or(bad("expected StoredKey:ServerKey"))?;
        let iterations: u32 = iterations.parse().map_err(|_| bad("iterations is not a number"))?;
        if !ITERATIONS.contains(&iterations) {
            return Err(bad("iterations out of range (4096 to 10000000)"));
        }
        let salt = B64.decode(salt).map_err(|_| bad("salt is not base64"))?;
        if salt.is_empty() {
            return Err(bad("empty salt"));
        }
        let key = |k: &str| -> Result<[u8; 32], ScramError> {
            B64.decode(k)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
                .ok_or(bad("keys must be 32 bytes of base64"))
        };
        Ok(ScramCredentials {
            iterations,
            salt,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }

    /// Made-up credentials for a user that does not exist, stable per user name and process.
    pub fn decoy(username: &str) -> ScramCredentials {
        static SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
        let secret = SECRET.get_or_init(rand_bytes);
        let mac = hmac(secret, username.as_bytes());
        ScramCredentials {
            iterations: DEFAULT_ITERATIONS,
            salt: mac[..16].to_vec(),
            stored_key: rand_bytes(),
            server_key: rand_bytes(),
        }
    }
}

impl fmt::Display for ScramCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

pub(crate) fn rand_bytes<const N: usize>() -> [u8; N] {
    use rand::RngCore as _;
    let mut b = [0u8; N];
    rand::thread_rng().fill_bytes(&mut b);
    b
}

/// A fresh server nonce: 18 random bytes, base64 (printable, no comma).
pub fn server_nonce() -> String {
    B64.encode(rand_bytes::<18>())
}

/// The client's first message, parsed.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The user name (SASLprep is not applied; `=2C` and `=3D` are decoded).
    pub username: String,
    gs2_header: String,
    nonce: String,
    bare: String,
}

impl fmt::Debug for ClientFirst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientFirst")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

fn printable_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Parses `gs2-header client-first-message-bare` (RFC 5802 §7).
pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, ScramError> {
    if msg.len() > MAX_MESSAGE {
        return Err(ScramError::Malformed("message too long"));
    }
    let s = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let (cbind, rest) = s.split_once(',').ok_or(ScramError::Malformed("no GS2 header"))?;
    match cbind {
        "n" | "y" => {}
        c if c.starts_with("p=") => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::Malformed("bad channel binding flag")),
    }
    let (authzid, bare) = rest.split_once(',').ok_or(ScramError::Malformed("no GS2 header"))?;
    if !authzid.is_empty() && !authzid.starts_with("a=") {
        return Err(ScramError::Malformed("bad authzid"));
    }
    let mut parts = bare.split(',');
    let user = parts
        .next()
        .and_then(|p| p.strip_prefix("n="))
        .ok_or(ScramError::Malformed("expected n=user"))?;
    let nonce = parts
        .next()
        .and_then(|p| p.strip_prefix("r="))
        .ok_or(ScramError::Malformed("expected r=nonce"))?;
    if bare.starts_with("m=") {
        return Err(ScramError::Malformed("mandatory extension not supported"));
    }
    if !printable_nonce(nonce) {
        return Err(ScramError::Malformed("bad nonce"));
    }
    let username = decode_saslname(user)?;
    if username.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    Ok(ClientFirst {
        username,
        gs2_header: format!("{cbind},{authzid},"),
        nonce: nonce.to_string(),
        bare: bare.to_string(),
    })
}

fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest
            .get(i..i + 3)
            .ok_or(ScramError::Malformed("bad escape in user name"))?;
        match esc {
            "=2C" => out.push(','),
            "=3D" => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A server-side exchange between the server's first message and the client's final one.
pub struct ServerExchange {
    gs2_header: String,
    nonce: String,
    client_first_bare: String,
    server_first: String,
    creds: ScramCredentials,
}

impl fmt::Debug for ServerExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerExchange").finish_non_exhaustive()
    }
}

impl ServerExchange {
    /// Starts the exchange: returns it and the server's first message.
    pub fn start(first: &ClientFirst, creds: ScramCredentials, server_nonce: &str) -> (ServerExchange, String) {
        let nonce = format!("{}{}", first.nonce, server_nonce);
        let server_first = format!("r={nonce},s={},i={}", B64.encode(&creds.salt), creds.iterations);
        (
            ServerExchange {
                gs2_header: first.gs2_header.clone(),
                nonce,
                client_first_bare: first.bare.clone(),
                server_first: server_first.clone(),
                creds,
            },
            server_first,
        )
    }

    /// Checks the client's final message; on success returns the server's final message.
    pub fn finish(self, client_final: &[u8]) -> Result<String, ScramError> {
        if client_final.len() > MAX_MESSAGE {
            return Err(ScramError::Malformed("message too long"));
        }
        let s = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = s.rsplit_once(",p=").ok_or(ScramError::Malformed("expected p=proof"))?;
        let mut parts = without_proof.split(',');
        let cbind = parts
            .next()
            .and_then(|p| p.strip_prefix("c="))
            .ok_or(ScramError::Malformed("expected c=binding"))?;
        let nonce = parts
            .next()
            .and_then(|p| p.strip_prefix("r="))
            .ok_or(ScramError::Malformed("expected r=nonce"))?;
        let cbind = B64
            .decode(cbind)
            .map_err(|_| ScramError::Malformed("c= is not base64"))?;
        if cbind != self.gs2_header.as_bytes() || nonce != self.nonce {
            return Err(ScramError::Mismatch);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("p= is not base64"))?;
        if proof.len() != 32 {
            return Err(ScramError::BadProof);
        }
        let auth_message = format!("{},{},{}", self.client_first_bare, self.server_first, without_proof);
        let client_signature = hmac(&self.creds.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for (i, k) in client_key.iter_mut().enumerate() {
            *k = proof[i] ^ client_signature[i];
        }
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        if !bool::from(stored.ct_eq(&self.creds.stored_key)) {
            return Err(ScramError::BadProof);
        }
        let server_signature = hmac(&self.creds.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

/// The client side, for tests and tools: the final message for `password`, given both first
/// messages. Returns (client-final, expected server-final).
pub fn client_final(
    password: &[u8],
    client_first_bare: &str,
    server_first: &str,
    gs2_header: &str,
) -> Result<(String, String), ScramError> {
    let mut nonce = None;
    let mut salt = None;
    let mut iterations = None;
    for part in server_first.split(',') {
        if let Some(v) = part.strip_prefix("r=") {
            nonce = Some(v);
        } else if let Some(v) = part.strip_prefix("s=") {
            salt = B64.decode(v).ok();
        } else if let Some(v) = part.strip_prefix("i=") {
            iterations = v.parse::<u32>().ok();
        }
    }
    let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
        return Err(ScramError::Malformed("bad server-first message"));
    };
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, &salt, iterations, &mut salted);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let without_proof = format!("c={},r={nonce}", B64.encode(gs2_header));
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(signature).map(|(a, b)| a ^ b).collect();
    let server_key = hmac(&salted, b"Server Key");
    let server_signature = hmac(&server_key, auth_message.as_bytes());
    Ok((
        format!("{without_proof},p={}", B64.encode(proof)),
        format!("v={}", B64.encode(server_signature)),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    // RFC 7677 §3.
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str =
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_creds() -> ScramCredentials {
        ScramCredentials::derive(b"pencil", &B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap(), 4096)
    }

    #[test]
    fn rfc7677_exchange() {
        let first = parse_client_first(CLIENT_FIRST.as_bytes()).unwrap();
        assert_eq!(first.username, "user");
        let (ex, server_first) = ServerExchange::start(&first, rfc_creds(), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(server_first, SERVER_FIRST);
        assert_eq!(ex.finish(CLIENT_FINAL.as_bytes()).unwrap(), SERVER_FINAL);
    }

    #[test]
    fn rfc7677_client_side() {
        let (fin, server_final) =
            client_final(b"pencil", "n=user,r=rOprNGfwEbeRWgbNEkqO", SERVER_FIRST, "n,,").unwrap();
        assert_eq!(fin, CLIENT_FINAL);
        assert_eq!(server_final, SERVER_FINAL);
    }

    #[test]
    fn wrong_password_wrong_nonce_and_tampering_fail() {
        let first = parse_client_first(CLIENT_FIRST.as_bytes()).unwrap();
        let start = || ServerExchange::start(&first, rfc_creds(), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0").0;
        let (wrong, _) = client_final(b"pencils", "n=user,r=rOprNGfwEbeRWgbNEkqO", SERVER_FIRST, "n,,").unwrap();
        assert_eq!(start().finish(wrong.as_bytes()), Err(ScramError::BadProof));
        let other_nonce = CLIENT_FINAL.replace("k0,p=", "k1,p=");
        assert_eq!(start().finish(other_nonce.as_bytes()), Err(ScramError::Mismatch));
        let other_binding = CLIENT_FINAL.replace("c=biws", "c=eSws");
        assert_eq!(start().finish(other_binding.as_bytes()), Err(ScramError::Mismatch));
        assert!(start().finish(b"garbage").is_err());
        assert!(start().finish(b"c=biws,r=x,p=!!!").is_err());
        // A decoy never verifies.
        let (ex, _) = ServerExchange::start(&first, ScramCredentials::decoy("user"), "x");
        assert_eq!(ex.finish(CLIENT_FINAL.as_bytes()), Err(ScramError::Mismatch));
    }

    #[test]
    fn client_first_grammar() {
        assert_eq!(
            parse_client_first(b"p=tls-unique,,n=u,r=abc"),
            Err(ScramError::ChannelBinding)
        );
        assert!(parse_client_first(b"n,,n=u").is_err());
        assert!(parse_client_first(b"n,,r=abc,n=u").is_err());
        assert!(parse_client_first(b"x,,n=u,r=abc").is_err());
        assert!(parse_client_first(b"n,,n=,r=abc").is_err());
        assert!(
            parse_client_first(b"n,,n=u,r=a,b").is_ok(),
            "extensions after the nonce are allowed"
        );
        assert!(parse_client_first(b"n,,n=u=2,r=abc").is_err());
        assert_eq!(parse_client_first(b"n,,n=a=2Cb=3Dc,r=abc").unwrap().username, "a,b=c");
        assert!(parse_client_first(&[b'n'; 5000]).is_err());
        assert!(parse_client_first(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn credentials_round_trip_and_redact() {
        let c = ScramCredentials::generate(b"secret");
        let s = c.to_string();
        assert!(s.starts_with("SCRAM-SHA-256$4096:"));
        assert_eq!(ScramCredentials::parse(&s).unwrap(), c);
        assert!(!format!("{c:?}").contains(&B64.encode(c.stored_key)));
        for bad in [
            "",
            "SCRAM-SHA-1$4096:c2FsdA==$a:b",
            "SCRAM-SHA-256$10:c2FsdA==$AAAA:AAAA",
            "SCRAM-SHA-256$4096:$AAAA:AAAA",
            "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",
        ] {
            assert!(ScramCredentials::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ScramCredentials::decoy("x").salt, ScramCredentials::decoy("x").salt);
        assert_ne!(ScramCredentials::decoy("x").salt, ScramCredentials::decoy("y").salt);
    }
}
