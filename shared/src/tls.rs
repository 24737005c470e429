//! TLS for every MQTT link: TLS 1.3 only, the fleet CA as the only root, and a client
//! certificate on every connection (mTLS).
//!
//! Invariants:
//! - A broker connection is TLS unless the config says `insecure_plaintext = true`
//!   ([`BrokerTransport::resolve`]); there is no silent fallback from TLS to plain TCP.
//! - Only the fleet CA is trusted: a broker certificate from any other CA (even a
//!   publicly trusted one) is refused, so a captured DNS name is not enough to pose as HQ.
//! - One crypto provider (aws-lc-rs) is named explicitly, so adding a crate that enables
//!   another rustls provider cannot make TLS setup fail at run time.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no {what} in PEM form")]
    Empty { what: &'static str, path: PathBuf },
    #[error("{what} in {path} is not usable: {reason}")]
    Invalid {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "TLS is required: set [broker.tls] ca, cert and key (from `hq-sync pki provision-bus`), \
         or set [broker] insecure_plaintext = true for a local experiment"
    )]
    NotConfigured,
    #[error("TLS setup: {0}")]
    Rustls(String),
}

/// `[broker.tls]`: the files a client needs. Paths are as written (relative to the
/// working directory); `hq-sync pki provision-bus` writes absolute ones.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTlsFiles {
    /// The fleet CA certificate (PEM): the only root trusted for the broker.
    pub ca: Option<PathBuf>,
    /// This client's certificate (PEM; common name = bus id, or `hq` for HQ).
    pub cert: Option<PathBuf>,
    /// This client's private key (PEM, PKCS#8). Keep it readable by the service only.
    /// The broker's certificate is verified against the configured broker host, which
    /// must be one of the names `hq-sync pki init --broker-name` put in it.
    pub key: Option<PathBuf>,
}

/// How a client reaches the broker, decided once from the config.
#[derive(Clone)]
pub enum BrokerTransport {
    Tls(Arc<ClientConfig>),
    /// Only when the operator asked for it; callers log a loud warning.
    InsecurePlaintext,
}

impl std::fmt::Debug for BrokerTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerTransport::Tls(_) => f.write_str("Tls"),
            BrokerTransport::InsecurePlaintext => f.write_str("InsecurePlaintext"),
        }
    }
}

impl BrokerTransport {
    /// TLS from `files`, or plain TCP only when `insecure_plaintext` is set. Setting both
    /// is refused too: a config that says two things is a mistake worth stopping for.
    pub fn resolve(
        files: &ClientTlsFiles,
        insecure_plaintext: bool,
    ) -> Result<BrokerTransport, TlsError> {
        let any_tls = files.ca.is_some() || files.cert.is_some() || files.key.is_some();
        if insecure_plaintext {
            if any_tls {
                return Err(TlsError::Rustls(
                    "both [broker] insecure_plaintext = true and [broker.tls] files are set; \
                     choose one"
                        .into(),
                ));
            }
            return Ok(BrokerTransport::InsecurePlaintext);
        }
        let (Some(ca), Some(cert), Some(key)) = (&files.ca, &files.cert, &files.key) else {
            return Err(TlsError::NotConfigured);
        };
        Ok(BrokerTransport::Tls(client_config(ca, cert, key)?))
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, BrokerTransport::Tls(_))
    }
}

/// The crypto provider every Keliling TLS endpoint uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A TLS 1.3 client config trusting only `ca`, presenting `cert` with `key`.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = root_store(ca)?;
    let chain = load_certs(cert, "certificate")?;
    let key_der = load_key(key)?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key_der)
        .map_err(|e| TlsError::Invalid {
            what: "client certificate and key",
            path: cert.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(Arc::new(config))
}

/// A root store holding exactly the certificates in `ca`.
pub fn root_store(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca, "CA certificate")? {
        roots.add(c).map_err(|e| TlsError::Invalid {
            what: "CA certificate",
            path: ca.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in a PEM file, in order (leaf first for a chain).
pub fn load_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            what,
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path, "private key")?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what: "private key",
            path: path.to_owned(),
        },
        e => TlsError::Invalid {
            what: "private key",
            path: path.to_owned(),
            reason: e.to_string(),
        },
    })
}

/// Every CRL in a PEM file (none is an error: an empty CRL is still a CRL).
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = read(path, "revocation list")?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            what: "revocation list",
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if crls.is_empty() {
        return Err(TlsError::Empty {
            what: "revocation list",
            path: path.to_owned(),
        });
    }
    Ok(crls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_required_unless_plaintext_is_asked_for() {
        let none = ClientTlsFiles::default();
        assert!(matches!(
            BrokerTransport::resolve(&none, false),
            Err(TlsError::NotConfigured)
        ));
        assert!(!BrokerTransport::resolve(&none, true).unwrap().is_tls());
        let some = ClientTlsFiles {
            ca: Some("ca.pem".into()),
            ..ClientTlsFiles::default()
        };
        assert!(BrokerTransport::resolve(&some, true).is_err());
        assert!(matches!(
            BrokerTransport::resolve(&some, false),
            Err(TlsError::NotConfigured)
        ));
    }

    #[test]
    fn missing_and_empty_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = load_certs(&dir.path().join("nope.pem"), "CA certificate").unwrap_err();
        assert!(e.to_string().contains("nope.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem").unwrap();
        assert!(matches!(
            load_certs(&empty, "certificate"),
            Err(TlsError::Empty { .. })
        ));
        assert!(matches!(load_key(&empty), Err(TlsError::Empty { .. })));
    }
}
