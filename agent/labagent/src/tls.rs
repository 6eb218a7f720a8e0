//! TLS configuration for MLLP links: rustls server and client configs built from PEM files.
//!
//! labagent speaks MLLP over TLS in both directions: as a server towards analysers and LIS
//! systems that support it (optionally requiring client certificates, i.e. mutual TLS), and
//! as a client towards the clinic's EHR. This module turns the operator's file paths into
//! ready [`rustls::ServerConfig`] / [`rustls::ClientConfig`] values for `tokio-rustls`.
//!
//! Invariants:
//!
//! * **ring only, nothing global.** Every config is built with
//!   `builder_with_provider(ring::default_provider())` and the safe default protocol versions
//!   (TLS 1.2 and 1.3); this library never installs a process-wide default provider, so it
//!   works whether or not the binary (or rumqttc) installed one.
//! * **Explicit trust.** A client trusts only the CA file it is given; there are no system
//!   roots. A clinic's EHR is reached through a configured CA, so a missing CA is an error
//!   rather than a silent fallback.
//! * **Errors name the file.** Every [`TlsError`] about a file carries its path and a reason
//!   an operator can act on (missing, unreadable, not PEM, no certificate, no key, key does
//!   not match the certificate). Key material never appears in an error.
//!
//! PEM is parsed with [`rustls_pki_types::pem::PemObject`]; private keys may be PKCS#8,
//! PKCS#1 (RSA) or SEC1 (EC); the first key in the key file is used.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Files for a TLS server (the agent's MLLP listener).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM file with the server certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM file with the CA certificates that client certificates must chain to. When set,
    /// every client must present a valid certificate (mutual TLS); when `None`, clients are
    /// not asked for one.
    pub client_ca: Option<PathBuf>,
}

/// Files and name for a TLS client (the agent's connection to an EHR).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientTls {
    /// PEM file with the CA certificates the server must chain to; the only trust roots.
    /// Required: [`client_config`] fails with [`TlsError::NoTrustAnchors`] when `None`.
    pub ca: Option<PathBuf>,
    /// PEM file with the client certificate chain for mutual TLS; requires `key`.
    pub cert: Option<PathBuf>,
    /// PEM file with the client private key for mutual TLS; requires `cert`.
    pub key: Option<PathBuf>,
    /// Name to verify the server certificate against (and send as SNI), when it differs
    /// from the host connected to. A DNS name or an IP address.
    pub server_name: Option<String>,
}

/// Errors building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file does not exist.
    #[error("{what} file {path} does not exist")]
    FileMissing {
        /// What the file was for ("certificate", "private key", "CA").
        what: &'static str,
        /// The path as configured.
        path: PathBuf,
    },
    /// The file exists but could not be read (permissions, a directory, I/O error).
    #[error("{what} file {path} cannot be read: {source}")]
    Unreadable {
        /// What the file was for.
        what: &'static str,
        /// The path as configured.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is not well-formed PEM.
    #[error("{what} file {path} is not valid PEM: {reason}")]
    BadPem {
        /// What the file was for.
        what: &'static str,
        /// The path as configured.
        path: PathBuf,
        /// What is wrong (never includes key material).
        reason: String,
    },
    /// The file holds no `CERTIFICATE` PEM section.
    #[error("{what} file {path} contains no certificate (expected a PEM CERTIFICATE section)")]
    NoCertificate {
        /// What the file was for ("certificate" or "CA").
        what: &'static str,
        /// The path as configured.
        path: PathBuf,
    },
    /// The file holds no private key PEM section (PKCS#8, PKCS#1 or SEC1).
    #[error(
        "private key file {path} contains no private key \
         (expected PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
    )]
    NoPrivateKey {
        /// The path as configured.
        path: PathBuf,
    },
    /// A CA certificate could not be used as a trust anchor.
    #[error("CA file {path} holds a certificate that cannot be a trust anchor: {reason}")]
    BadCaCertificate {
        /// The path as configured.
        path: PathBuf,
        /// rustls' reason.
        reason: String,
    },
    /// The private key does not belong to the certificate.
    #[error("private key {key} does not match the certificate in {cert}")]
    KeyMismatch {
        /// Certificate chain file.
        cert: PathBuf,
        /// Private key file.
        key: PathBuf,
    },
    /// rustls refused the key or certificate (for example an unsupported key type).
    #[error("certificate {cert} with key {key} cannot be used: {reason}")]
    BadIdentity {
        /// Certificate chain file.
        cert: PathBuf,
        /// Private key file.
        key: PathBuf,
        /// rustls' reason.
        reason: String,
    },
    /// The client-certificate verifier could not be built from the client CA file.
    #[error("client CA file {path} cannot verify client certificates: {reason}")]
    ClientVerifier {
        /// The path as configured.
        path: PathBuf,
        /// rustls' reason.
        reason: String,
    },
    /// A client was configured without a CA file.
    #[error(
        "no CA file configured: the EHR's server certificate must be verified against \
         a configured CA (system roots are not used)"
    )]
    NoTrustAnchors,
    /// Only one of a client certificate and its key was configured.
    #[error("client {present} {path} is configured but its {missing} is not")]
    IncompleteClientIdentity {
        /// Which one is configured ("certificate" or "private key").
        present: &'static str,
        /// Its path.
        path: PathBuf,
        /// Which one is missing.
        missing: &'static str,
    },
    /// The server name is neither a valid DNS name nor an IP address.
    #[error("server name {name:?} is not a valid DNS name or IP address")]
    BadServerName {
        /// The name as configured or given.
        name: String,
    },
    /// rustls refused the protocol configuration (should not happen with the ring provider).
    #[error("TLS configuration refused: {0}")]
    Config(#[source] rustls::Error),
}

/// Builds the server configuration: certificate chain and key, and client-certificate
/// verification against `client_ca` when set.
pub fn server_config(tls: &ServerTls) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let chain = load_certs("certificate", &tls.cert)?;
    let key = load_key(&tls.key)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let roots = load_roots(ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientVerifier {
                    path: ca.clone(),
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| identity_error(e, &tls.cert, &tls.key))?;
    Ok(Arc::new(config))
}

/// Builds the client configuration: the CA file as the only trust roots, and a client
/// certificate when `cert` and `key` are both set.
pub fn client_config(tls: &ClientTls) -> Result<Arc<ClientConfig>, TlsError> {
    let ca = tls.ca.as_ref().ok_or(TlsError::NoTrustAnchors)?;
    let roots = load_roots(ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots);
    let config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = load_certs("certificate", cert)?;
            let private = load_key(key)?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| identity_error(e, cert, key))?
        }
        (Some(cert), None) => {
            return Err(TlsError::IncompleteClientIdentity {
                present: "certificate",
                path: cert.clone(),
                missing: "private key",
            });
        }
        (None, Some(key)) => {
            return Err(TlsError::IncompleteClientIdentity {
                present: "private key",
                path: key.clone(),
                missing: "certificate",
            });
        }
        (None, None) => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The name to verify the server's certificate against: `tls.server_name` if set, else
/// `connect_host` (an IPv6 literal may be given in brackets, as in `[::1]`).
pub fn server_name(tls: &ClientTls, connect_host: &str) -> Result<ServerName<'static>, TlsError> {
    let name = tls.server_name.as_deref().unwrap_or(connect_host);
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    ServerName::try_from(bare.to_owned()).map_err(|_| TlsError::BadServerName {
        name: name.to_owned(),
    })
}

/// The ring provider, built per config so nothing process-wide is touched.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads every certificate in a PEM file; at least one is required.
fn load_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(what, path, e, false))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, path, e, false))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Loads the first private key in a PEM file.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error("private key", path, e, true))
}

/// Loads a CA file into a root store.
fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs("CA", path)? {
        roots.add(cert).map_err(|e| TlsError::BadCaCertificate {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// Maps a PEM error to a [`TlsError`] naming the file. For key files the reason omits
/// anything decoded from the file.
fn pem_error(what: &'static str, path: &Path, error: pem::Error, secret: bool) -> TlsError {
    let path = path.to_owned();
    match error {
        pem::Error::Io(source) if source.kind() == io::ErrorKind::NotFound => {
            TlsError::FileMissing { what, path }
        }
        pem::Error::Io(source) => TlsError::Unreadable { what, path, source },
        pem::Error::NoItemsFound if secret => TlsError::NoPrivateKey { path },
        pem::Error::NoItemsFound => TlsError::NoCertificate { what, path },
        pem::Error::Base64Decode(_) if secret => TlsError::BadPem {
            what,
            path,
            reason: "base64 decode error".to_owned(),
        },
        other => TlsError::BadPem {
            what,
            path,
            reason: other.to_string(),
        },
    }
}

/// Maps rustls' refusal of a certificate/key pair.
fn identity_error(error: rustls::Error, cert: &Path, key: &Path) -> TlsError {
    match error {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::KeyMismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            }
        }
        other => TlsError::BadIdentity {
            cert: cert.to_owned(),
            key: key.to_owned(),
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mllp::{MllpCodec, MllpItem, frame};
    use bytes::BytesMut;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    use rustls::{AlertDescription, CertificateError};
    use std::fs;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};
    use tokio_util::codec::Decoder;

    /// Certificates written to a temporary directory.
    struct Pki {
        dir: tempfile::TempDir,
    }

    impl Pki {
        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn server(&self, client_ca: Option<&str>) -> ServerTls {
            ServerTls {
                cert: self.path("server.pem"),
                key: self.path("server.key"),
                client_ca: client_ca.map(|c| self.path(c)),
            }
        }

        fn client(&self, ca: &str, with_cert: bool, server_name: Option<&str>) -> ClientTls {
            ClientTls {
                ca: Some(self.path(ca)),
                cert: with_cert.then(|| self.path("client.pem")),
                key: with_cert.then(|| self.path("client.key")),
                server_name: server_name.map(str::to_owned),
            }
        }
    }

    fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    fn leaf(
        issuer: &CertifiedIssuer<'static, KeyPair>,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A CA, a server cert for localhost and 127.0.0.1, a client cert from the same CA,
    /// and an unrelated second CA.
    fn pki() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca1 = ca("labagent test CA");
        let ca2 = ca("unrelated CA");
        let (server_cert, server_key) = leaf(
            &ca1,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) =
            leaf(&ca1, &["analyser-1"], ExtendedKeyUsagePurpose::ClientAuth);
        let write = |name: &str, text: &str| fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", &ca1.pem());
        write("other-ca.pem", &ca2.pem());
        write("server.pem", &server_cert);
        write("server.key", &server_key);
        write("client.pem", &client_cert);
        write("client.key", &client_key);
        Pki { dir }
    }

    /// The rustls error inside an I/O error from tokio-rustls.
    fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
        e.get_ref().and_then(|inner| inner.downcast_ref())
    }

    /// Starts a one-connection TLS server that echoes one MLLP message back. Resolves to the
    /// handshake result and, on success, whether the client presented a certificate.
    async fn echo_server(
        config: Arc<ServerConfig>,
    ) -> (
        std::net::SocketAddr,
        tokio::task::JoinHandle<Result<bool, io::Error>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = TlsAcceptor::from(config).accept(tcp).await?;
            let had_client_cert = tls.get_ref().1.peer_certificates().is_some();
            let mut codec = MllpCodec::new(1024);
            let mut buf = BytesMut::new();
            loop {
                if let Some(item) = codec.decode(&mut buf).unwrap() {
                    let MllpItem::Message(m) = item else {
                        panic!("unexpected {item:?}")
                    };
                    tls.write_all(&frame(&m).unwrap()).await?;
                    tls.shutdown().await?;
                    return Ok(had_client_cert);
                }
                if tls.read_buf(&mut buf).await? == 0 {
                    panic!("client closed before a full message");
                }
            }
        });
        (addr, task)
    }

    /// Connects, sends one MLLP message and returns the echoed item.
    async fn echo_client(
        addr: std::net::SocketAddr,
        tls: &ClientTls,
        host: &str,
    ) -> Result<MllpItem, io::Error> {
        let config = client_config(tls).unwrap();
        let name = server_name(tls, host).unwrap();
        let tcp = TcpStream::connect(addr).await?;
        let mut stream = TlsConnector::from(config).connect(name, tcp).await?;
        stream
            .write_all(&frame(b"MSH|^~\\&|LAB\rOBX|1|NM|GLU||5.5\r").unwrap())
            .await?;
        let mut codec = MllpCodec::new(1024);
        let mut buf = BytesMut::new();
        loop {
            if let Some(item) = codec.decode(&mut buf).map_err(io::Error::other)? {
                return Ok(item);
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    fn echoed() -> MllpItem {
        MllpItem::Message(bytes::Bytes::from_static(
            b"MSH|^~\\&|LAB\rOBX|1|NM|GLU||5.5\r",
        ))
    }

    #[tokio::test]
    async fn handshake_and_mllp_echo_by_ip() {
        let pki = pki();
        let (addr, server) = echo_server(server_config(&pki.server(None)).unwrap()).await;
        let client = pki.client("ca.pem", false, None);
        assert_eq!(
            echo_client(addr, &client, "127.0.0.1").await.unwrap(),
            echoed()
        );
        assert!(!server.await.unwrap().unwrap(), "no client cert requested");
    }

    #[tokio::test]
    async fn mutual_tls_with_client_certificate() {
        let pki = pki();
        let config = server_config(&pki.server(Some("ca.pem"))).unwrap();
        let (addr, server) = echo_server(config).await;
        let client = pki.client("ca.pem", true, Some("localhost"));
        assert_eq!(
            echo_client(addr, &client, "127.0.0.1").await.unwrap(),
            echoed()
        );
        assert!(server.await.unwrap().unwrap(), "client cert presented");
    }

    #[tokio::test]
    async fn server_requiring_client_cert_refuses_client_without_one() {
        let pki = pki();
        let config = server_config(&pki.server(Some("ca.pem"))).unwrap();
        let (addr, server) = echo_server(config).await;
        let client = pki.client("ca.pem", false, None);
        let client_err = echo_client(addr, &client, "localhost").await.unwrap_err();
        let server_err = server.await.unwrap().unwrap_err();
        assert!(
            matches!(
                rustls_error(&server_err),
                Some(rustls::Error::NoCertificatesPresented)
            ),
            "server: {server_err:?}"
        );
        // TLS 1.3: the client finishes its handshake first, then reads the server's alert.
        assert!(
            matches!(
                rustls_error(&client_err),
                Some(rustls::Error::AlertReceived(
                    AlertDescription::CertificateRequired
                ))
            ),
            "client: {client_err:?}"
        );
    }

    #[tokio::test]
    async fn client_refuses_server_from_untrusted_ca() {
        let pki = pki();
        let (addr, _server) = echo_server(server_config(&pki.server(None)).unwrap()).await;
        let client = pki.client("other-ca.pem", false, None);
        let err = echo_client(addr, &client, "localhost").await.unwrap_err();
        assert!(
            matches!(
                rustls_error(&err),
                Some(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer
                ))
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn client_refuses_wrong_host_name() {
        let pki = pki();
        let (addr, _server) = echo_server(server_config(&pki.server(None)).unwrap()).await;
        let client = pki.client("ca.pem", false, Some("other.example"));
        let err = echo_client(addr, &client, "127.0.0.1").await.unwrap_err();
        assert!(
            matches!(
                rustls_error(&err),
                Some(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                ))
            ),
            "{err:?}"
        );
    }

    #[test]
    fn missing_files_name_the_path() {
        let pki = pki();
        let mut server = pki.server(Some("ca.pem"));
        server.cert = pki.path("nope.pem");
        let err = server_config(&server).unwrap_err();
        assert!(
            matches!(&err, TlsError::FileMissing { path, what: "certificate" } if *path == server.cert)
        );
        assert!(err.to_string().contains("nope.pem"), "{err}");

        let mut server = pki.server(None);
        server.key = pki.path("missing.key");
        let err = server_config(&server).unwrap_err();
        assert!(
            matches!(&err, TlsError::FileMissing { path, what: "private key" } if *path == server.key)
        );
        assert!(err.to_string().contains("missing.key"), "{err}");

        let server = pki.server(Some("no-ca.pem"));
        let err = server_config(&server).unwrap_err();
        assert!(
            matches!(&err, TlsError::FileMissing { path, what: "CA" } if path.ends_with("no-ca.pem"))
        );

        let client = pki.client("absent-ca.pem", false, None);
        let err = client_config(&client).unwrap_err();
        assert!(
            matches!(&err, TlsError::FileMissing { path, .. } if path.ends_with("absent-ca.pem"))
        );
        assert!(err.to_string().contains("absent-ca.pem"), "{err}");

        let mut client = pki.client("ca.pem", true, None);
        client.key = Some(pki.path("gone.key"));
        let err = client_config(&client).unwrap_err();
        assert!(matches!(&err, TlsError::FileMissing { path, .. } if path.ends_with("gone.key")));
    }

    #[test]
    fn wrong_file_contents_are_named() {
        let pki = pki();
        // A key file where a certificate is expected, and vice versa.
        let mut server = pki.server(None);
        server.cert = pki.path("server.key");
        let err = server_config(&server).unwrap_err();
        assert!(
            matches!(&err, TlsError::NoCertificate { path, .. } if path.ends_with("server.key")),
            "{err:?}"
        );
        let mut server = pki.server(None);
        server.key = pki.path("server.pem");
        let err = server_config(&server).unwrap_err();
        assert!(
            matches!(&err, TlsError::NoPrivateKey { path } if path.ends_with("server.pem")),
            "{err:?}"
        );
        // Key of another certificate.
        let mut server = pki.server(None);
        server.key = pki.path("client.key");
        let err = server_config(&server).unwrap_err();
        assert!(matches!(&err, TlsError::KeyMismatch { .. }), "{err:?}");
        assert!(err.to_string().contains("client.key"), "{err}");
        // Truncated PEM.
        fs::write(
            pki.path("broken.pem"),
            "-----BEGIN CERTIFICATE-----\nMIIB\n",
        )
        .unwrap();
        let mut server = pki.server(None);
        server.cert = pki.path("broken.pem");
        let err = server_config(&server).unwrap_err();
        assert!(matches!(&err, TlsError::BadPem { .. }), "{err:?}");
        // A directory is unreadable, not missing.
        let mut server = pki.server(None);
        server.cert = pki.dir.path().to_owned();
        let err = server_config(&server).unwrap_err();
        assert!(matches!(&err, TlsError::Unreadable { .. }), "{err:?}");
    }

    /// Splits one DER TLV at the start of `der`: (tag, contents, rest).
    fn der_tlv(der: &[u8]) -> (u8, &[u8], &[u8]) {
        let tag = der[0];
        let (len, start) = match der[1] {
            n if n < 0x80 => (n as usize, 2),
            0x81 => (der[2] as usize, 3),
            0x82 => (((der[2] as usize) << 8) | der[3] as usize, 4),
            n => panic!("unsupported DER length form {n:#x}"),
        };
        (tag, &der[start..start + len], &der[start + len..])
    }

    #[test]
    fn sec1_key_is_accepted() {
        let pki = pki();
        // rcgen writes PKCS#8; the SEC1 ECPrivateKey is the OCTET STRING inside it
        // (RFC 5208 PrivateKeyInfo: version, algorithm, privateKey).
        let pkcs8 = PrivateKeyDer::from_pem_file(pki.path("server.key")).unwrap();
        let (_, info, _) = der_tlv(pkcs8.secret_der());
        let (_, _version, rest) = der_tlv(info);
        let (_, _algorithm, rest) = der_tlv(rest);
        let (tag, sec1, _) = der_tlv(rest);
        assert_eq!(tag, 0x04, "OCTET STRING");
        let b64 = base64_encode(sec1);
        fs::write(
            pki.path("server-sec1.key"),
            format!("-----BEGIN EC PRIVATE KEY-----\n{b64}\n-----END EC PRIVATE KEY-----\n"),
        )
        .unwrap();
        let loaded = PrivateKeyDer::from_pem_file(pki.path("server-sec1.key")).unwrap();
        assert!(matches!(loaded, PrivateKeyDer::Sec1(_)));
        let mut server = pki.server(None);
        server.key = pki.path("server-sec1.key");
        server_config(&server).unwrap();
    }

    /// Standard base64 with padding, for writing test PEM files.
    fn base64_encode(data: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn client_needs_ca_and_complete_identity() {
        let pki = pki();
        let err = client_config(&ClientTls::default()).unwrap_err();
        assert!(matches!(err, TlsError::NoTrustAnchors));
        let mut client = pki.client("ca.pem", true, None);
        client.key = None;
        let err = client_config(&client).unwrap_err();
        assert!(
            matches!(&err, TlsError::IncompleteClientIdentity { missing: "private key", path, .. } if path.ends_with("client.pem")),
            "{err:?}"
        );
    }

    #[test]
    fn server_names() {
        let tls = ClientTls::default();
        assert_eq!(
            server_name(&tls, "ehr.clinic.example").unwrap(),
            ServerName::try_from("ehr.clinic.example").unwrap()
        );
        assert!(matches!(
            server_name(&tls, "127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name(&tls, "[::1]").unwrap(),
            ServerName::IpAddress(_)
        ));
        let tls = ClientTls {
            server_name: Some("ehr.internal".into()),
            ..ClientTls::default()
        };
        assert_eq!(
            server_name(&tls, "10.0.0.5").unwrap(),
            ServerName::try_from("ehr.internal").unwrap()
        );
        let tls = ClientTls {
            server_name: Some("not a name!".into()),
            ..ClientTls::default()
        };
        let err = server_name(&tls, "host").unwrap_err();
        assert!(matches!(&err, TlsError::BadServerName { name } if name == "not a name!"));
    }
}
