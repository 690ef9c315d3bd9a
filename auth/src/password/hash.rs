//! Stored password hashes: parsed once when the file is loaded (so a bad entry is reported
//! with its user and file, not discovered at the first login), verified at connect time.
//!
//! Accepted formats (see the module documentation of [`super`] for the full description):
//! argon2id / argon2i PHC strings, bcrypt `$2a$`/`$2b$`/`$2y$`, PBKDF2 PHC strings
//! (`$pbkdf2-sha256$` / `$pbkdf2-sha512$`) and `$sha256$<salt>$<digest>` for imported tables.

use std::fmt;
use std::str::FromStr;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, PasswordHash as Phc, Version};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::PasswordError;

/// Passwords longer than this (in bytes) are refused without hashing: hashing a megabyte
/// costs real time for argon2's initial BLAKE2b and PBKDF2's HMAC keying, and no human or
/// device needs more.
pub const MAX_PASSWORD_LEN: usize = 4096;

/// Upper bound on argon2 work accepted from a stored hash: `m_cost × t_cost` in KiB passes
/// (4 GiB of memory traffic, a few seconds here). A typo such as `m=1900000000` would
/// otherwise make every login for that user allocate gigabytes.
const MAX_ARGON2_WORK: u64 = 4 * 1024 * 1024;
/// Upper bound on argon2 memory accepted from a stored hash (KiB): 1 GiB.
const MAX_ARGON2_M_KIB: u32 = 1024 * 1024;
/// Upper bound on bcrypt cost accepted from a stored hash (2^16 rounds: about 4 s here).
const MAX_BCRYPT_COST: u32 = 16;
/// bcrypt's own lower bound.
const MIN_BCRYPT_COST: u32 = 4;
/// Upper bound on PBKDF2 iterations accepted from a stored hash.
const MAX_PBKDF2_ROUNDS: u32 = 10_000_000;

/// Base64 as used in `$sha256$` entries: the standard alphabet, padding optional.
const SHA256_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The argon2id cost of newly added hashes. Verification always uses the parameters embedded
/// in each stored hash, so changing this never invalidates existing entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Cost {
    /// Memory in KiB (`m`).
    pub m_kib: u32,
    /// Passes over the memory (`t`).
    pub t: u32,
    /// Lanes (`p`). The hash is computed on one thread whatever `p` is.
    pub p: u32,
}

impl Argon2Cost {
    /// The defaults chosen by measurement (see the module documentation of [`super`]):
    /// 24 MiB, 1 pass, 1 lane — about 10 ms per verification on one core here, so that 10,000
    /// clients reconnecting at once verify within about a minute on 2 cores.
    pub const DEFAULT: Argon2Cost = Argon2Cost {
        m_kib: 24 * 1024,
        t: 1,
        p: 1,
    };

    fn params(self) -> Result<Params, PasswordError> {
        Params::new(self.m_kib, self.t, self.p, None)
            .map_err(|e| PasswordError::Hash(format!("invalid argon2 parameters: {e}")))
    }
}

impl std::str::FromStr for Argon2Cost {
    type Err = String;

    /// `m=19456,t=2,p=1`: memory in KiB, passes, lanes, as a PHC string writes them (`p` may
    /// be left out: 1). The message of an error names the rule broken.
    fn from_str(s: &str) -> Result<Argon2Cost, String> {
        let (mut m, mut t, mut p) = (None, None, None);
        for part in s.split(',') {
            let (k, v) = part
                .trim()
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected key=value (m=KiB,t=passes,p=lanes)"))?;
            let v: u32 = v.trim().parse().map_err(|_| format!("{k}: {v:?} is not a number"))?;
            let slot = match k.trim() {
                "m" => &mut m,
                "t" => &mut t,
                "p" => &mut p,
                other => return Err(format!("unknown parameter {other:?} (m, t, p)")),
            };
            if slot.replace(v).is_some() {
                return Err(format!("{k} given twice"));
            }
        }
        let cost = Argon2Cost {
            m_kib: m.ok_or("m (memory in KiB) is missing")?,
            t: t.ok_or("t (passes) is missing")?,
            p: p.unwrap_or(1),
        };
        if cost.m_kib > MAX_ARGON2_M_KIB {
            return Err(format!("m: at most {MAX_ARGON2_M_KIB} KiB (1 GiB)"));
        }
        if !(1..=16).contains(&cost.p) {
            return Err("p: 1 to 16 lanes".into());
        }
        if cost.t > 100 {
            return Err("t: at most 100 passes".into());
        }
        cost.params().map_err(|e| e.to_string())?;
        Ok(cost)
    }
}

impl std::fmt::Display for Argon2Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "m={},t={},p={}", self.m_kib, self.t, self.p)
    }
}

impl Default for Argon2Cost {
    fn default() -> Argon2Cost {
        Argon2Cost::DEFAULT
    }
}

/// The algorithm of a [`StoredHash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HashFormat {
    /// `$argon2id$…` (the default for new hashes).
    Argon2id,
    /// `$argon2i$…`.
    Argon2i,
    /// `$2a$…`, `$2b$…`, `$2y$…`.
    Bcrypt,
    /// `$pbkdf2-sha256$…`.
    Pbkdf2Sha256,
    /// `$pbkdf2-sha512$…`.
    Pbkdf2Sha512,
    /// `$sha256$<salt>$<digest>`.
    SaltedSha256,
}

impl fmt::Display for HashFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HashFormat::Argon2id => "argon2id",
            HashFormat::Argon2i => "argon2i",
            HashFormat::Bcrypt => "bcrypt",
            HashFormat::Pbkdf2Sha256 => "pbkdf2-sha256",
            HashFormat::Pbkdf2Sha512 => "pbkdf2-sha512",
            HashFormat::SaltedSha256 => "salted sha256",
        })
    }
}

/// Why a stored hash string was refused. The message never contains the hash itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HashFormatError(String);

impl HashFormatError {
    pub(crate) fn new(reason: impl Into<String>) -> HashFormatError {
        HashFormatError(reason.into())
    }
}

/// A checked, verifiable password hash. `Debug` shows the algorithm only.
///
/// Small on purpose (72 bytes and the string): a password file may hold 100,000 users. The
/// PHC formats (argon2, PBKDF2) are checked at load and parsed again from the string at each
/// verification (about a microsecond, against milliseconds of hashing). Kept parsed, with the
/// PHC crate's fixed-size buffers, they took about 1.2 KB per user: a server with 100,000
/// argon2id users reached 420 MB RSS, 299 MB with this form (most of the rest is what parsing
/// the TOML file left behind).
#[derive(Clone)]
pub struct StoredHash {
    /// The string as stored (written back unchanged on save).
    raw: Box<str>,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Argon2 { algorithm: Algorithm },
    Bcrypt { cost: u32 },
    Pbkdf2 { algorithm: pbkdf2::Algorithm },
    SaltedSha256 { salt: Box<[u8]>, digest: [u8; 32] },
}

/// An argon2 PHC string, parsed.
struct Argon2Parts {
    phc: Phc,
    algorithm: Algorithm,
    version: Version,
    params: Params,
}

/// A PBKDF2 PHC string, parsed.
struct Pbkdf2Parts {
    phc: Phc,
    algorithm: pbkdf2::Algorithm,
    params: pbkdf2::Params,
}

impl fmt::Debug for StoredHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoredHash({}, <redacted>)", self.format())
    }
}

impl FromStr for StoredHash {
    type Err = HashFormatError;

    fn from_str(s: &str) -> Result<StoredHash, HashFormatError> {
        StoredHash::parse(s)
    }
}

impl StoredHash {
    /// Parses a stored hash string, checking its parameters (and refusing costs so high that
    /// every login would take seconds).
    pub fn parse(s: &str) -> Result<StoredHash, HashFormatError> {
        let kind = if s.starts_with("$argon2id$") || s.starts_with("$argon2i$") {
            Kind::Argon2 {
                algorithm: parse_argon2(s)?.algorithm,
            }
        } else if s.starts_with("$argon2d$") {
            return Err(HashFormatError::new(
                "argon2d is not accepted (its memory access depends on the password); use argon2id",
            ));
        } else if s.starts_with("$2a$") || s.starts_with("$2b$") || s.starts_with("$2y$") {
            parse_bcrypt(s)?
        } else if s.starts_with("$pbkdf2-sha256$") || s.starts_with("$pbkdf2-sha512$") {
            Kind::Pbkdf2 {
                algorithm: parse_pbkdf2(s)?.algorithm,
            }
        } else if let Some(rest) = s.strip_prefix("$sha256$") {
            parse_sha256(rest)?
        } else {
            return Err(HashFormatError::new(
                "unrecognised hash format (accepted: $argon2id$, $argon2i$, $2a$/$2b$/$2y$ bcrypt, \
                 $pbkdf2-sha256$, $pbkdf2-sha512$, $sha256$<salt>$<digest>)",
            ));
        };
        Ok(StoredHash { raw: s.into(), kind })
    }

    /// A new argon2id hash of `password` with a random 16-byte salt.
    pub fn generate(password: &[u8], cost: Argon2Cost) -> Result<StoredHash, PasswordError> {
        if password.len() > MAX_PASSWORD_LEN {
            return Err(PasswordError::PasswordTooLong { max: MAX_PASSWORD_LEN });
        }
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, cost.params()?);
        let salt = random_salt()?;
        let mut out = [0u8; 32];
        argon2_with_work_memory(&argon2, password, &salt, &mut out).map_err(|e| PasswordError::Hash(e.to_string()))?;
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
        let phc = format!(
            "$argon2id$v=19${cost}${}${}",
            base64::Engine::encode(&b64, salt),
            base64::Engine::encode(&b64, out)
        );
        StoredHash::parse(&phc).map_err(|e| PasswordError::Hash(e.to_string()))
    }

    /// The algorithm.
    pub fn format(&self) -> HashFormat {
        match &self.kind {
            Kind::Argon2 {
                algorithm: Algorithm::Argon2i,
                ..
            } => HashFormat::Argon2i,
            Kind::Argon2 { .. } => HashFormat::Argon2id,
            Kind::Bcrypt { .. } => HashFormat::Bcrypt,
            Kind::Pbkdf2 {
                algorithm: pbkdf2::Algorithm::Pbkdf2Sha512,
                ..
            } => HashFormat::Pbkdf2Sha512,
            Kind::Pbkdf2 { .. } => HashFormat::Pbkdf2Sha256,
            Kind::SaltedSha256 { .. } => HashFormat::SaltedSha256,
        }
    }

    /// The stored string. Callers must not log it.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether `password` matches, using the parameters embedded in the hash. Digests are
    /// compared in constant time. Passwords over [`MAX_PASSWORD_LEN`] never match (and are not
    /// hashed). bcrypt, by its definition, looks at the first 72 bytes only.
    pub fn verify(&self, password: &[u8]) -> bool {
        if password.len() > MAX_PASSWORD_LEN {
            return false;
        }
        match &self.kind {
            Kind::Argon2 { .. } => {
                let Ok(Argon2Parts {
                    phc,
                    algorithm,
                    version,
                    params,
                }) = parse_argon2(&self.raw)
                else {
                    tracing::warn!("argon2 hash no longer parses");
                    return false;
                };
                let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
                    tracing::warn!("argon2 hash without salt or output");
                    return false;
                };
                let mut buf = [0u8; 64];
                let Some(out) = buf.get_mut(..expected.len()) else {
                    tracing::warn!("argon2 output longer than 64 bytes");
                    return false;
                };
                let argon2 = Argon2::new(algorithm, version, params);
                match argon2_with_work_memory(&argon2, password, salt, out) {
                    Ok(()) => out.ct_eq(expected.as_bytes()).into(),
                    Err(e) => {
                        // Parameters were checked at load: this is not the client's fault.
                        tracing::warn!(error = %e, "argon2 verification failed to run");
                        false
                    }
                }
            }
            Kind::Bcrypt { .. } => match bcrypt::verify(password, &self.raw) {
                Ok(ok) => ok,
                Err(e) => {
                    tracing::warn!(error = %e, "bcrypt verification failed to run");
                    false
                }
            },
            Kind::Pbkdf2 { .. } => {
                match parse_pbkdf2(&self.raw).map(|p| pbkdf2::Pbkdf2::default().verify_password(password, &p.phc)) {
                    Err(_) => {
                        tracing::warn!("pbkdf2 hash no longer parses");
                        false
                    }
                    Ok(result) => match result {
                        Ok(()) => true,
                        Err(argon2::password_hash::Error::PasswordInvalid) => false,
                        Err(e) => {
                            tracing::warn!(error = %e, "pbkdf2 verification failed to run");
                            false
                        }
                    },
                }
            }
            Kind::SaltedSha256 { salt, digest } => {
                let computed = Sha256::new().chain_update(salt).chain_update(password).finalize();
                computed.as_slice().ct_eq(digest.as_slice()).into()
            }
        }
    }

    /// What verification costs, as a key: hashes with equal keys take the same time to verify.
    pub(crate) fn cost_key(&self) -> String {
        match &self.kind {
            Kind::Argon2 { .. } => match parse_argon2(&self.raw) {
                Ok(Argon2Parts {
                    algorithm,
                    version,
                    params,
                    ..
                }) => format!(
                    "{algorithm}/{version:?}/{}/{}/{}/{:?}",
                    params.m_cost(),
                    params.t_cost(),
                    params.p_cost(),
                    params.output_len()
                ),
                Err(_) => "argon2/unparsable".to_owned(),
            },
            Kind::Bcrypt { cost } => format!("bcrypt/{cost}"),
            Kind::Pbkdf2 { .. } => match parse_pbkdf2(&self.raw) {
                Ok(Pbkdf2Parts { algorithm, params, .. }) => {
                    format!("{algorithm}/{}/{}", params.rounds(), params.output_len())
                }
                Err(_) => "pbkdf2/unparsable".to_owned(),
            },
            Kind::SaltedSha256 { .. } => "sha256".to_owned(),
        }
    }

    /// A hash that costs as much to verify as this one and that no password matches: what
    /// unknown users are verified against, so that their timing matches known users'.
    pub(crate) fn dummy_like(&self) -> Result<StoredHash, PasswordError> {
        let password = random_salt()?;
        let salt = random_salt()?;
        let raw = match &self.kind {
            Kind::Argon2 { .. } => {
                let phc = parse_argon2(&self.raw)
                    .map_err(|e| PasswordError::Hash(e.to_string()))?
                    .phc;
                // Same algorithm, version and parameters; a random salt and a random output
                // instead of hashing (which would take m KiB and ~10 ms at every load): a
                // verification against it runs in full and fails (a match is a 2^-256 chance).
                let Some(head) = self.raw.rsplitn(3, '$').nth(2) else {
                    return Err(PasswordError::Hash("argon2 hash without salt and output".into()));
                };
                let mut output = vec![0u8; phc.hash.as_ref().map_or(32, |h| h.len())];
                rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut output);
                let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
                format!(
                    "{head}${}${}",
                    base64::Engine::encode(&b64, salt),
                    base64::Engine::encode(&b64, output)
                )
            }
            Kind::Bcrypt { cost } => bcrypt::hash_with_salt(password, *cost, salt)
                .map_err(|e| PasswordError::Hash(e.to_string()))?
                .format_for_version(bcrypt::Version::TwoB),
            Kind::Pbkdf2 { .. } => {
                let Pbkdf2Parts { algorithm, params, .. } =
                    parse_pbkdf2(&self.raw).map_err(|e| PasswordError::Hash(e.to_string()))?;
                pbkdf2::Pbkdf2::new(algorithm, params)
                    .hash_password_with_salt(&password, &salt)
                    .map_err(|e| PasswordError::Hash(e.to_string()))?
                    .to_string()
            }
            Kind::SaltedSha256 { .. } => {
                let digest = Sha256::new().chain_update(salt).chain_update(password).finalize();
                format!("$sha256${}${}", SHA256_B64.encode(salt), SHA256_B64.encode(digest))
            }
        };
        StoredHash::parse(&raw).map_err(|e| PasswordError::Hash(e.to_string()))
    }
}

thread_local! {
    /// Argon2's working memory (m KiB), kept by each thread that hashes and reused: allocating
    /// it per hash made glibc hand out fresh, zeroed pages every time (page faults of tens of
    /// MiB per verification), and from hashing threads it was not even given back: `passwd
    /// import` grew by m per hash until it was killed. Like the crate's own buffer, it is
    /// overwritten by the next hash, not zeroed.
    static WORK_MEMORY: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `argon2`'s raw output for `password` and `salt` into `out`, on this thread's working memory.
fn argon2_with_work_memory(argon2: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> argon2::Result<()> {
    let need = argon2.params().block_count();
    WORK_MEMORY.with_borrow_mut(|memory| {
        if memory.len() < need {
            memory.resize(need, argon2::Block::new());
        }
        argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..need])
    })
}

/// 16 random bytes from the operating system.
fn random_salt() -> Result<[u8; 16], PasswordError> {
    argon2::password_hash::try_generate_salt().map_err(|e| PasswordError::Hash(format!("system RNG: {e}")))
}

fn parse_argon2(s: &str) -> Result<Argon2Parts, HashFormatError> {
    let phc = Phc::new(s).map_err(|e| HashFormatError::new(format!("invalid argon2 PHC string: {e}")))?;
    let algorithm = Algorithm::new(phc.algorithm.as_str())
        .map_err(|e| HashFormatError::new(format!("invalid argon2 algorithm: {e}")))?;
    let version = match phc.version {
        Some(v) => Version::try_from(v).map_err(|e| HashFormatError::new(format!("invalid argon2 version: {e}")))?,
        None => Version::default(),
    };
    let params = Params::try_from(&phc).map_err(|e| HashFormatError::new(format!("invalid argon2 parameters: {e}")))?;
    if phc.salt.is_none() || phc.hash.is_none() {
        return Err(HashFormatError::new("argon2 PHC string lacks a salt or a hash"));
    }
    let work = u64::from(params.m_cost()) * u64::from(params.t_cost());
    if params.m_cost() > MAX_ARGON2_M_KIB || work > MAX_ARGON2_WORK {
        return Err(HashFormatError::new(format!(
            "argon2 cost too high (m={} KiB, t={}; at most m={MAX_ARGON2_M_KIB} and m×t={MAX_ARGON2_WORK})",
            params.m_cost(),
            params.t_cost()
        )));
    }
    Ok(Argon2Parts {
        phc,
        algorithm,
        version,
        params,
    })
}

fn parse_bcrypt(s: &str) -> Result<Kind, HashFormatError> {
    let parts =
        bcrypt::HashParts::from_str(s).map_err(|e| HashFormatError::new(format!("invalid bcrypt hash: {e}")))?;
    let cost = parts.get_cost();
    if !(MIN_BCRYPT_COST..=MAX_BCRYPT_COST).contains(&cost) {
        return Err(HashFormatError::new(format!(
            "bcrypt cost {cost} out of range ({MIN_BCRYPT_COST}..={MAX_BCRYPT_COST})"
        )));
    }
    Ok(Kind::Bcrypt { cost })
}

fn parse_pbkdf2(s: &str) -> Result<Pbkdf2Parts, HashFormatError> {
    let phc = Phc::new(s).map_err(|e| {
        HashFormatError::new(format!(
            "invalid PBKDF2 PHC string ($pbkdf2-sha256$i=<rounds>[,l=<length>]$<salt>$<hash>): {e}"
        ))
    })?;
    let algorithm = pbkdf2::Algorithm::try_from(phc.algorithm.as_str())
        .map_err(|e| HashFormatError::new(format!("invalid PBKDF2 algorithm: {e}")))?;
    let params = pbkdf2::Params::try_from(&phc)
        .map_err(|e| HashFormatError::new(format!("invalid PBKDF2 parameters (i >= 1000, l <= 64): {e}")))?;
    if phc.salt.is_none() || phc.hash.is_none() {
        return Err(HashFormatError::new("PBKDF2 PHC string lacks a salt or a hash"));
    }
    if params.rounds() > MAX_PBKDF2_ROUNDS {
        return Err(HashFormatError::new(format!(
            "PBKDF2 iteration count {} too high (at most {MAX_PBKDF2_ROUNDS})",
            params.rounds()
        )));
    }
    Ok(Pbkdf2Parts { phc, algorithm, params })
}

/// `<base64 salt>$<base64 digest>`, after the `$sha256$` prefix.
fn parse_sha256(rest: &str) -> Result<Kind, HashFormatError> {
    let Some((salt, digest)) = rest.split_once('$') else {
        return Err(HashFormatError::new(
            "salted sha256 hash must be $sha256$<base64 salt>$<base64 digest>",
        ));
    };
    let salt = SHA256_B64
        .decode(salt)
        .map_err(|_| HashFormatError::new("salted sha256 hash: the salt is not valid base64"))?;
    let digest = SHA256_B64
        .decode(digest)
        .map_err(|_| HashFormatError::new("salted sha256 hash: the digest is not valid base64"))?;
    let digest: [u8; 32] = digest
        .try_into()
        .map_err(|_| HashFormatError::new("salted sha256 hash: the digest is not 32 bytes"))?;
    Ok(Kind::SaltedSha256 {
        salt: salt.into(),
        digest,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A password file may hold 100,000 users: a hash stays its string and a small tag (the
    /// parsed PHC form was ~700 bytes). Fails with the figure if a field is added.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn a_stored_hash_stays_small() {
        assert_eq!(std::mem::size_of::<StoredHash>(), 72, "StoredHash grew");
    }

    /// The dummy of an argon2 hash keeps its algorithm, version and parameters (so it costs the
    /// same to verify), gets its own salt, and matches no password: not even the one of the
    /// hash it was made like.
    #[test]
    fn an_argon2_dummy_costs_the_same_and_matches_nothing() {
        let cost = Argon2Cost { m_kib: 64, t: 2, p: 1 };
        let real = StoredHash::generate(b"pw", cost).unwrap();
        let dummy = real.dummy_like().unwrap();
        assert_eq!(dummy.cost_key(), real.cost_key());
        assert_eq!(dummy.format(), HashFormat::Argon2id);
        assert!(
            dummy.as_str().starts_with("$argon2id$v=19$m=64,t=2,p=1$"),
            "{}",
            dummy.as_str()
        );
        assert_ne!(dummy.as_str(), real.as_str());
        assert!(!dummy.verify(b"pw"));
        assert!(real.verify(b"pw"));
        // Without a version field too (it is optional in PHC strings).
        let bare = StoredHash::parse(&real.as_str().replace("$v=19", "")).unwrap();
        let d = bare.dummy_like().unwrap();
        assert!(d.as_str().starts_with("$argon2id$m=64,t=2,p=1$"), "{}", d.as_str());
        assert!(!d.verify(b"pw"));
    }
}
