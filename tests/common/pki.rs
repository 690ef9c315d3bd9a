//! Test certificates made by rcgen: a CA, a server certificate for localhost / 127.0.0.1 (ECDSA
//! P-256, PKCS#8 key), client certificates (good, from a rogue CA, expired, revoked) and a CRL,
//! written as PEM files in a temporary directory that is removed on drop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};

/// A CA with a server certificate and client certificates, written as PEM files.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("unigate-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (ca_pem, ca) = new_ca("unigate test CA");
        let (_, rogue) = new_ca("rogue CA");
        std::fs::write(dir.join("ca.pem"), ca_pem).unwrap();

        let server_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "localhost");
        p.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        let server = p.signed_by(&server_key, &ca).unwrap();
        std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
        std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();

        client(&dir, "device-1", &ca, 1, false);
        client(&dir, "rogue", &rogue, 2, false);
        client(&dir, "expired", &ca, 3, true);
        client(&dir, "revoked", &ca, 4, false);
        let crl = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(4000, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(4u64),
                revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&ca)
        .unwrap();
        std::fs::write(dir.join("ca.crl"), crl.pem().unwrap()).unwrap();
        // A key that belongs to no certificate here.
        std::fs::write(dir.join("other.key"), KeyPair::generate().unwrap().serialize_pem()).unwrap();
        Pki { dir }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn p(&self, file: &str) -> String {
        self.path(file).display().to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(p, key))
}

pub fn client(dir: &Path, cn: &str, issuer: &Issuer<'static, KeyPair>, serial: u64, expired: bool) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.serial_number = Some(SerialNumber::from(serial));
    p.use_authority_key_identifier_extension = true;
    p.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
    if expired {
        p.not_before = rcgen::date_time_ymd(2019, 1, 1);
        p.not_after = rcgen::date_time_ymd(2020, 1, 1);
    }
    let cert = p.signed_by(&key, issuer).unwrap();
    std::fs::write(dir.join(format!("{cn}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{cn}.key")), key.serialize_pem()).unwrap();
}
