//! Who sent an HTTP request: `Authorization: Bearer <token>` (the token goes to the chain as
//! the password, where a jwt or oauth2 authenticator takes it), `Authorization: Basic`
//! (user name and password, e.g. for the password store), or the TLS client certificate. A
//! listener whose chain lets everyone in needs none.
//!
//! Results are remembered for `http.auth_cache` under a SHA-256 of the credentials (never the
//! credentials themselves), so that a client sending Basic credentials with every request
//! does not pay for argon2 every time.

use std::sync::Arc;

use actix_web::dev::Extensions;
use actix_web::HttpRequest;
use base64::Engine as _;
use unigate_auth::{Credentials, Identity, Outcome, Protocol, Secret};

use crate::auth::CredentialCache;

use super::error::ApiError;
use super::HttpShared;

/// The TLS client certificate chain of a connection (DER, leaf first), stored at connect.
#[derive(Clone)]
struct PeerCerts(Arc<Vec<Vec<u8>>>);

/// actix-web's connect hook: keeps the client certificate chain of a TLS connection for the
/// requests on it.
pub fn on_connect(conn: &dyn std::any::Any, ext: &mut Extensions) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    if let Some(tls) = conn.downcast_ref::<Tls>() {
        if let Some(certs) = (**tls).get_ref().1.peer_certificates() {
            ext.insert(PeerCerts(Arc::new(certs.iter().map(|c| c.to_vec()).collect())));
        }
    }
}

/// The TLS client certificate chain of the request's connection (empty without one).
pub fn peer_certificates(req: &HttpRequest) -> Vec<Vec<u8>> {
    req.conn_data::<PeerCerts>()
        .map(|c| c.0.as_ref().clone())
        .unwrap_or_default()
}

/// Who sent a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The client id (ACL `${clientid}`): the `clientid` query parameter, else the one the
    /// authenticator bound, else the user name, else `http`.
    pub client_id: Arc<str>,
    /// The identity.
    pub identity: Identity,
}

/// Authenticates a request; `client_id` is what the request asked to be known as.
pub async fn authenticate(
    req: &HttpRequest,
    shared: &HttpShared,
    client_id: Option<&str>,
) -> Result<Principal, ApiError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::unauthenticated("malformed Authorization header"))
        })
        .transpose()?;
    let certs = req.conn_data::<PeerCerts>().cloned();
    let chain = shared.auth().chain();
    let principal = |identity: Identity| {
        let id: Arc<str> = match (client_id, &identity.client_id, &identity.username) {
            (Some(c), _, _) => Arc::from(c),
            (None, Some(c), _) => c.clone(),
            (None, None, Some(u)) => u.clone(),
            (None, None, None) => Arc::from("http"),
        };
        Principal {
            client_id: id,
            identity,
        }
    };
    if header.is_none() && certs.is_none() && chain.allows_everyone() {
        return Ok(principal(Identity::anonymous(None)));
    }
    let mut creds = Credentials::new(Protocol::Http, shared.name.clone());
    creds.peer = req.peer_addr();
    creds.client_id = client_id.map(str::to_string);
    match header {
        Some(h) => {
            let (scheme, value) = h.split_once(' ').unwrap_or((h, ""));
            let value = value.trim();
            if scheme.eq_ignore_ascii_case("bearer") && !value.is_empty() {
                creds.password = Some(Secret::new(value.as_bytes().to_vec()));
            } else if scheme.eq_ignore_ascii_case("basic") {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(value)
                    .ok()
                    .and_then(|d| String::from_utf8(d).ok())
                    .ok_or_else(|| ApiError::unauthenticated("malformed Basic credentials"))?;
                let (user, password) = decoded
                    .split_once(':')
                    .ok_or_else(|| ApiError::unauthenticated("malformed Basic credentials"))?;
                creds.username = Some(user.to_string());
                creds.password = Some(Secret::new(password.as_bytes().to_vec()));
            } else {
                return Err(ApiError::unauthenticated(
                    "unsupported Authorization scheme (Bearer or Basic)",
                ));
            }
        }
        None if certs.is_none() => return Err(ApiError::unauthenticated("credentials required")),
        None => {}
    }
    if let Some(PeerCerts(chain_der)) = &certs {
        creds.peer_certificates = chain_der.as_ref().clone();
    }
    let ttl = shared.config.auth_cache;
    let key = (!ttl.is_zero()).then(|| {
        let mut parts: Vec<&[u8]> = vec![
            creds.client_id.as_deref().unwrap_or("").as_bytes(),
            creds.username.as_deref().unwrap_or("").as_bytes(),
            creds.password.as_ref().map(Secret::expose).unwrap_or(b""),
        ];
        parts.extend(creds.peer_certificates.iter().map(Vec::as_slice));
        CredentialCache::key(&chain, &parts)
    });
    if let Some(identity) = key.as_ref().and_then(|k| shared.auth_cache.get(k)) {
        return Ok(principal(identity));
    }
    match shared.auth().run(creds).await {
        Outcome::Allowed(identity) => {
            if let Some(k) = key {
                shared.auth_cache.put(k, &identity, ttl);
            }
            Ok(principal(identity))
        }
        Outcome::Denied { reason, .. } => Err(match reason {
            unigate_auth::DenyReason::Unavailable => ApiError::unavailable("identity provider unavailable"),
            other => ApiError::unauthenticated(other.to_string()),
        }),
    }
}
