//! In-crate scenario tests: a [`DtlsPeer`] against an rtc-dtls client `Endpoint`, in memory,
//! over a simulated clock (no sockets, no sleeping), as in quinn-proto's tests. Certificates are
//! made here with rcgen (ECDSA P-256); none are checked in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cert;
mod psk;
mod resilience;
mod timers;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rtc_dtls::config::{ConfigBuilder, HandshakeConfig};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::crypto_provider::SignatureScheme;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_shared::TransportProtocol;
use rustls::pki_types::CertificateDer;

use crate::{ring_provider, CipherSuiteId, DtlsPeer, DtlsServerConfig, DtlsServerOptions, Error, PskOptions};

const SERVER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(127, 0, 0, 1), 5684));
const CLIENT: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(127, 0, 0, 2),
    40000,
));

const PSK_CCM8: CipherSuiteId = CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8;
const PSK_GCM: CipherSuiteId = CipherSuiteId::Tls_Psk_With_Aes_128_Gcm_Sha256;
const ECDSA_CCM8: CipherSuiteId = CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Ccm_8;
const ECDSA_GCM: CipherSuiteId = CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Gcm_Sha256;

const IDENTITY: &[u8] = b"device-1";
const KEY: &[u8] = b"0123456789abcdef";

/// PSK options knowing one identity, [`IDENTITY`] → [`KEY`].
fn psk_options() -> PskOptions {
    PskOptions {
        lookup: Arc::new(|id: &[u8]| (id == IDENTITY).then(|| KEY.to_vec())),
        identity_hint: None,
    }
}

fn psk_server(suites: Vec<CipherSuiteId>) -> DtlsServerConfig {
    DtlsServerConfig::new(DtlsServerOptions {
        psk: Some(psk_options()),
        cipher_suites: suites,
        ..Default::default()
    })
    .unwrap()
}

/// A PSK client sending `identity` with `key`, offering `suites` in that order.
fn psk_client(identity: &[u8], key: &[u8], suites: Vec<CipherSuiteId>) -> Arc<HandshakeConfig> {
    let key = key.to_vec();
    let b = ConfigBuilder::default()
        .with_crypto_provider(ring_provider())
        .with_cipher_suites(suites)
        .with_psk(Some(Arc::new(move |_hint: &[u8]| Ok(key.clone()))))
        // On a client, rtc-dtls sends the "identity hint" as its identity.
        .with_psk_identity_hint(Some(identity.to_vec()));
    Arc::new(b.build(true, None).unwrap())
}

/// A certificate and its PKCS#8 key.
#[derive(Clone)]
struct Credential {
    chain: Vec<Vec<u8>>,
    key: Vec<u8>,
}

/// A CA with a server certificate and a client certificate, and a client certificate from a
/// CA nobody trusts.
struct Pki {
    ca: Vec<u8>,
    server: Credential,
    client: Credential,
    rogue_client: Credential,
}

fn new_ca(name: &str) -> (Vec<u8>, Issuer<'static, KeyPair>) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    (cert.der().to_vec(), Issuer::new(p, key))
}

fn leaf(issuer: &Issuer<'static, KeyPair>, cn: &str, eku: ExtendedKeyUsagePurpose) -> Credential {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages.push(eku);
    let cert = p.signed_by(&key, issuer).unwrap();
    Credential {
        chain: vec![cert.der().to_vec()],
        key: key.serialize_der(),
    }
}

/// One PKI per test process: key generation is the slow part.
fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let (ca, issuer) = new_ca("unigate dtls test CA");
        let (_, rogue) = new_ca("rogue CA");
        Pki {
            ca,
            server: leaf(&issuer, "localhost", ExtendedKeyUsagePurpose::ServerAuth),
            client: leaf(&issuer, "device-1", ExtendedKeyUsagePurpose::ClientAuth),
            rogue_client: leaf(&rogue, "rogue", ExtendedKeyUsagePurpose::ClientAuth),
        }
    })
}

/// A client that trusts the test CA for the server ("localhost") and presents `cred`, if any.
fn cert_client(cred: Option<&Credential>, suites: Vec<CipherSuiteId>) -> Arc<HandshakeConfig> {
    let provider = ring_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(pki().ca.clone())).unwrap();
    let mut b = ConfigBuilder::default()
        .with_crypto_provider(provider.clone())
        .with_cipher_suites(suites)
        .with_roots_cas(roots)
        .with_server_name("localhost".into());
    if let Some(c) = cred {
        let key = provider
            .crypto()
            .import_signing_key(SignatureScheme::EcdsaP256Sha256, &c.key)
            .unwrap();
        let chain = c.chain.iter().cloned().map(CertificateDer::from).collect();
        b = b.with_certificates(vec![Certificate::from_signing_key(chain, key)]);
    }
    Arc::new(b.build(true, None).unwrap())
}

/// A server peer and an rtc-dtls client talking through memory, with a simulated clock.
struct Pair {
    server: DtlsPeer,
    client: Endpoint,
    now: Instant,
    client_established: bool,
    /// Application data the client received.
    client_app: Vec<Vec<u8>>,
    /// The client got a close_notify.
    client_peer_closed: bool,
    /// The first error of the client's endpoint (its connection is then unusable).
    client_error: Option<String>,
    /// Every error `handle_datagram` returned.
    server_errors: Vec<Error>,
}

impl Pair {
    /// The client has sent its ClientHello; nothing was delivered yet.
    fn new(scfg: &DtlsServerConfig, ccfg: &Arc<HandshakeConfig>) -> Pair {
        let now = Instant::now();
        let mut client = Endpoint::new(CLIENT, TransportProtocol::UDP, None);
        client.connect(now, SERVER, ccfg.clone(), None).unwrap();
        Pair {
            server: DtlsPeer::new(scfg, CLIENT, now).unwrap(),
            client,
            now,
            client_established: false,
            client_app: Vec::new(),
            client_peer_closed: false,
            client_error: None,
            server_errors: Vec::new(),
        }
    }

    /// A pair whose handshake has completed on both sides.
    fn established(scfg: &DtlsServerConfig, ccfg: &Arc<HandshakeConfig>) -> Pair {
        let mut p = Pair::new(scfg, ccfg);
        p.drive();
        assert!(p.server.is_established(), "server: {:?}", p.server_errors);
        assert!(p.client_established, "client: {:?}", p.client_error);
        assert_eq!(p.server_errors, vec![], "no datagram of a clean handshake is dropped");
        p
    }

    /// Delivers the client's pending datagrams to the server; returns how many.
    fn client_to_server(&mut self) -> usize {
        let mut n = 0;
        while let Some(t) = self.client.poll_transmit() {
            n += 1;
            if let Err(e) = self.server.handle_datagram(self.now, &t.message) {
                self.server_errors.push(e);
            }
        }
        n
    }

    /// Delivers the server's pending datagrams to the client; returns how many.
    fn server_to_client(&mut self) -> usize {
        let mut n = 0;
        while let Some(d) = self.server.poll_transmit() {
            n += 1;
            self.client_read(&d);
        }
        n
    }

    fn client_read(&mut self, d: &[u8]) {
        if self.client_error.is_some() {
            return;
        }
        match self.client.read(self.now, SERVER, None, d.into()) {
            Ok(events) => {
                for ev in events {
                    match ev {
                        EndpointEvent::HandshakeComplete => self.client_established = true,
                        EndpointEvent::ApplicationData(d) => self.client_app.push(d.to_vec()),
                        EndpointEvent::PeerClosed => self.client_peer_closed = true,
                        _ => {}
                    }
                }
            }
            Err(e) => self.client_error = Some(e.to_string()),
        }
    }

    /// Exchanges datagrams until neither side has anything to send.
    fn drive(&mut self) {
        for _ in 0..50 {
            if self.client_to_server() + self.server_to_client() == 0 {
                return;
            }
        }
        panic!("handshake did not settle");
    }

    /// The handshake failed on both sides and the server peer is closed.
    fn assert_failed(&self) {
        assert!(!self.server.is_established());
        assert!(self.server.is_closed(), "server peer must be closed");
        assert!(
            self.server_errors.iter().any(|e| matches!(e, Error::Handshake(_))),
            "server errors: {:?}",
            self.server_errors
        );
        assert!(!self.client_established, "client must not complete");
        assert!(self.client_error.is_some(), "client must see the failure");
    }

    /// Sends `up` client → server and `down` server → client; true if both arrive intact.
    fn roundtrip(&mut self, up: &[u8], down: &[u8]) -> bool {
        self.client.write(self.now, SERVER, up).unwrap();
        self.client_to_server();
        let mut got = Vec::new();
        while let Some(d) = self.server.poll_app_data() {
            got.push(d);
        }
        if self.server.send_app_data(down).is_err() {
            return false;
        }
        self.client_app.clear();
        self.server_to_client();
        got == [up.to_vec()] && self.client_app == [down.to_vec()]
    }
}

/// xorshift64*: deterministic, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }

    /// A datagram of up to 300 random bytes; if `structured`, with a plausible record header
    /// (type 20..=23, DTLS 1.2, epoch 0 or 1, consistent length) and, for handshake records, a
    /// consistent unfragmented handshake header, so it gets past framing checks.
    fn datagram(&mut self, structured: bool) -> Vec<u8> {
        let len = self.below(300);
        let mut d = vec![0u8; len];
        self.fill(&mut d);
        if structured && len > 13 {
            d[0] = 20 + self.below(4) as u8;
            d[1] = 0xfe;
            d[2] = 0xfd;
            d[3] = 0;
            d[4] = self.below(2) as u8;
            d[11..13].copy_from_slice(&((len - 13) as u16).to_be_bytes());
            if d[0] == 22 && len >= 25 {
                d[13] = [1u8, 2, 3, 11, 12, 14, 15, 16, 20][self.below(9)];
                let body = ((len - 25) as u32).to_be_bytes();
                d[14..17].copy_from_slice(&body[1..]);
                d[17] = 0;
                d[18] = self.below(3) as u8;
                d[19..22].copy_from_slice(&[0, 0, 0]);
                d[22..25].copy_from_slice(&body[1..]);
            }
        }
        d
    }
}

/// A record with the given header fields and body.
fn record(content_type: u8, epoch: u16, seq: u64, body: &[u8]) -> Vec<u8> {
    let mut r = vec![content_type, 0xfe, 0xfd];
    r.extend_from_slice(&epoch.to_be_bytes());
    r.extend_from_slice(&seq.to_be_bytes()[2..]);
    r.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    r.extend_from_slice(body);
    r
}
