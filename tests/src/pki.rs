//! Throw-away certificates with `rcgen` and the matching rustls configurations (ring only).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate authority.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    /// Its certificate (DER).
    pub der: CertificateDer<'static>,
    /// Its certificate (PEM).
    pub pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// A leaf certificate and its key.
pub struct Leaf {
    /// Certificate (DER).
    pub der: CertificateDer<'static>,
    /// Certificate (PEM).
    pub pem: String,
    /// PKCS#8 key (DER).
    pub key_der: Vec<u8>,
    /// PKCS#8 key (PEM).
    pub key_pem: String,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf").finish_non_exhaustive()
    }
}

impl Ca {
    /// A new self-signed CA named `cn`.
    pub fn new(cn: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("self-sign ca");
        Ca {
            der: cert.der().clone(),
            pem: cert.pem(),
            params,
            key,
        }
    }

    fn issue(&self, cn: &str, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> Leaf {
        self.issue_with(cn, names, purpose, false)
    }

    fn issue_with(
        &self,
        cn: &str,
        names: &[&str],
        purpose: ExtendedKeyUsagePurpose,
        expired: bool,
    ) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![purpose];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("leaf key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign leaf");
        Leaf {
            der: cert.der().clone(),
            pem: cert.pem(),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Leaf {
        self.issue(
            names.first().copied().unwrap_or("server"),
            names,
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate named `cn`.
    pub fn client(&self, cn: &str) -> Leaf {
        self.issue(cn, &[cn], ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// A server certificate for `names` that expired on 2021-01-01 (valid from 2020-01-01).
    pub fn expired_server(&self, names: &[&str]) -> Leaf {
        self.issue_with(
            names.first().copied().unwrap_or("server"),
            names,
            ExtendedKeyUsagePurpose::ServerAuth,
            true,
        )
    }

    /// A client certificate named `cn` that expired on 2021-01-01.
    pub fn expired_client(&self, cn: &str) -> Leaf {
        self.issue_with(cn, &[cn], ExtendedKeyUsagePurpose::ClientAuth, true)
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).expect("add root");
        roots
    }
}

impl Leaf {
    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// Writes `NAME.pem` and `NAME.key` into `dir`; returns (cert, key) paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.pem).expect("write cert");
        std::fs::write(&key, &self.key_pem).expect("write key");
        (cert, key)
    }
}

/// Writes a CA certificate to `dir/NAME.pem`.
pub fn write_ca(ca: &Ca, dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(format!("{name}.pem"));
    std::fs::write(&p, &ca.pem).expect("write ca");
    p
}

/// A TLS server configuration with `leaf`; requires client certificates signed by
/// `client_ca` when given.
pub fn server_config(leaf: &Leaf, client_ca: Option<&Ca>) -> Arc<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions");
    let builder = match client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(ca.roots()), provider())
                    .build()
                    .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(
        builder
            .with_single_cert(vec![leaf.der.clone()], leaf.key())
            .expect("server cert"),
    )
}

/// A TLS client configuration trusting `ca`, presenting `identity` when given.
pub fn client_config(ca: &Ca, identity: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(ca.roots());
    Arc::new(match identity {
        Some(leaf) => builder
            .with_client_auth_cert(vec![leaf.der.clone()], leaf.key())
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    })
}
