//! The fleet PKI: one CA for the fleet, a server certificate for the broker, a client
//! certificate for HQ and one per bus, and a revocation list.
//!
//! Layout of the PKI directory (keep it on HQ, readable by HQ's operators only):
//!
//! ```text
//! ca.pem  ca.key            the fleet CA (the key signs certificates and the CRL)
//! broker.pem broker.key     the broker's server certificate (embedded broker or Mosquitto)
//! hq.pem  hq.key            HQ ingest's client certificate (common name `hq`)
//! crl.pem                   the revocation list, re-signed on every revocation
//! registry.toml             every certificate issued: serial, name, kind, dates, revocation
//! buses/<bus-id>/           the bundle for one bus: bus.toml and tls/{ca.pem,bus.pem,bus.key}
//! ```
//!
//! Invariants:
//! - A bus certificate's common name is its [`BusId`]; HQ's is `hq`, which is not a valid
//!   bus id, so no bus can be issued HQ's broker permissions by its name.
//! - Client certificates carry only the clientAuth purpose and the broker's only
//!   serverAuth: a stolen bus key cannot pose as the broker.
//! - A revoked bus id is never issued again, and the CRL always lists every revoked
//!   certificate. Private keys are written with mode 0600, every file atomically.

use keliling_shared::BusId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// HQ's client certificate common name (and its Mosquitto user name).
pub const HQ_COMMON_NAME: &str = "hq";

const CA_YEARS: i64 = 20;
const LEAF_YEARS: i64 = 5;
/// The CRL's nextUpdate. Mosquitto (OpenSSL) refuses every client once a CRL is past it,
/// so it is far ahead; `hq-sync pki crl` re-signs it any time.
const CRL_DAYS: i64 = 3 * 365;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no fleet PKI in {0}: create it with `hq-sync pki init`")]
    Missing(PathBuf),
    #[error("a fleet PKI already exists in {0}; refusing to overwrite its CA")]
    Exists(PathBuf),
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("registry {path} is not valid: {reason}")]
    Registry { path: PathBuf, reason: String },
    #[error("bus {0} was revoked; a revoked bus id is never issued again (give the replacement bus a new id)")]
    Revoked(BusId),
    #[error("bus {0} already has a valid certificate; use --renew to issue a new one (the old one is revoked)")]
    AlreadyIssued(BusId),
    #[error("bus {0} has no certificate to revoke")]
    Unknown(BusId),
    #[error(transparent)]
    Signing(#[from] crate::signing::SigningError),
}

/// Why a certificate was revoked (RFC 5280 reasons that fit a fleet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The bus (or its disk) is lost or stolen: its key may be in other hands.
    KeyCompromise,
    /// Replaced by a newer certificate for the same bus.
    Superseded,
    /// The bus left service.
    Retired,
}

impl Reason {
    fn rfc5280(self) -> RevocationReason {
        match self {
            Reason::KeyCompromise => RevocationReason::KeyCompromise,
            Reason::Superseded => RevocationReason::Superseded,
            Reason::Retired => RevocationReason::CessationOfOperation,
        }
    }
}

impl std::str::FromStr for Reason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lost" | "stolen" | "key-compromise" => Ok(Reason::KeyCompromise),
            "superseded" => Ok(Reason::Superseded),
            "retired" => Ok(Reason::Retired),
            other => Err(format!(
                "unknown reason {other:?} (lost, stolen, superseded, retired)"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Broker,
    Hq,
    Bus,
}

/// One issued certificate, as kept in `registry.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Issued {
    /// Hex, big-endian.
    pub serial: String,
    pub common_name: String,
    pub kind: Kind,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    pub reason: Option<Reason>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Registry {
    #[serde(default)]
    crl_number: u64,
    #[serde(default, rename = "cert")]
    certs: Vec<Issued>,
}

/// Where a bus will find its files: the bundle's `bus.toml` names absolute paths under
/// `install_dir` (the bundle is copied there on the bus).
#[derive(Debug, Clone)]
pub struct BundleOptions {
    /// Broker host name or address as the bus will dial it (must be in the broker
    /// certificate's names).
    pub broker_host: String,
    pub broker_port: u16,
    /// Where the bundle is installed on the bus, e.g. `/etc/keliling`.
    pub install_dir: PathBuf,
    /// Where the bus keeps its store, e.g. `/var/lib/keliling`.
    pub data_dir: PathBuf,
    /// Issue a new certificate for a bus that has one (the old one is revoked).
    pub renew: bool,
}

/// What provisioning produced.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// HQ's verifying keys (`hq-keys.pub`): the bus believes only what they signed.
    pub hq_keys: PathBuf,
    pub serial: String,
}

/// The fleet PKI in one directory.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Pki {
    /// Creates the CA, the broker's certificate (for `broker_names`: host names and IP
    /// addresses the broker is reached at) and HQ's client certificate, and an empty CRL.
    pub fn init(dir: &Path, broker_names: &[String]) -> Result<Pki, PkiError> {
        let pki = Pki {
            dir: dir.to_owned(),
        };
        if pki.ca_cert().exists() || pki.ca_key().exists() {
            return Err(PkiError::Exists(dir.to_owned()));
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        restrict_dir(dir)?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Keliling fleet CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Keliling");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(365 * CA_YEARS);
        params.serial_number = Some(random_serial());
        params.key_identifier_method = KeyIdMethod::Sha256;
        let key = KeyPair::generate()?;
        let ca = params.self_signed(&key)?;
        write_private(&pki.ca_key(), key.serialize_pem().as_bytes())?;
        write_atomic(&pki.ca_cert(), ca.pem().as_bytes())?;
        let mut registry = Registry::default();
        pki.issue(
            &mut registry,
            "keliling-broker",
            Kind::Broker,
            broker_names,
            &pki.broker_cert(),
            &pki.broker_key(),
        )?;
        pki.issue(
            &mut registry,
            HQ_COMMON_NAME,
            Kind::Hq,
            &[],
            &pki.hq_cert(),
            &pki.hq_key(),
        )?;
        pki.write_crl(&mut registry)?;
        pki.save_registry(&registry)?;
        pki.signing().init()?;
        Ok(pki)
    }

    /// HQ's keys for signing down messages (`signing.rs`).
    pub fn signing(&self) -> crate::signing::SigningDir {
        crate::signing::SigningDir::in_pki(&self.dir)
    }

    /// The PKI at `dir`, for its paths only (nothing is read).
    pub fn at(dir: &Path) -> Pki {
        Pki {
            dir: dir.to_owned(),
        }
    }

    /// Opens an existing PKI.
    pub fn open(dir: &Path) -> Result<Pki, PkiError> {
        let pki = Pki {
            dir: dir.to_owned(),
        };
        if !pki.ca_cert().exists() || !pki.ca_key().exists() {
            return Err(PkiError::Missing(dir.to_owned()));
        }
        Ok(pki)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn broker_cert(&self) -> PathBuf {
        self.dir.join("broker.pem")
    }
    pub fn broker_key(&self) -> PathBuf {
        self.dir.join("broker.key")
    }
    pub fn hq_cert(&self) -> PathBuf {
        self.dir.join("hq.pem")
    }
    pub fn hq_key(&self) -> PathBuf {
        self.dir.join("hq.key")
    }
    pub fn crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }
    fn registry_path(&self) -> PathBuf {
        self.dir.join("registry.toml")
    }
    pub fn bundle_dir(&self, bus: &BusId) -> PathBuf {
        self.dir.join("buses").join(bus.as_str())
    }

    /// Every certificate issued, oldest first.
    pub fn issued(&self) -> Result<Vec<Issued>, PkiError> {
        Ok(self.load_registry()?.certs)
    }

    /// Makes a bus's key and certificate (common name = bus id) and its ready-to-copy
    /// bundle: `bus.toml` plus `tls/`.
    pub fn provision_bus(&self, bus: &BusId, opts: &BundleOptions) -> Result<Bundle, PkiError> {
        let mut registry = self.load_registry()?;
        let is_mine = |c: &Issued| c.kind == Kind::Bus && c.common_name == bus.as_str();
        if registry
            .certs
            .iter()
            .any(|c| is_mine(c) && c.reason == Some(Reason::KeyCompromise))
        {
            return Err(PkiError::Revoked(bus.clone()));
        }
        let live = registry
            .certs
            .iter()
            .filter(|c| is_mine(c) && c.revoked_at.is_none())
            .count();
        if live > 0 && !opts.renew {
            return Err(PkiError::AlreadyIssued(bus.clone()));
        }
        let now = OffsetDateTime::now_utc();
        for c in registry.certs.iter_mut() {
            if is_mine(c) && c.revoked_at.is_none() {
                c.revoked_at = Some(now);
                c.reason = Some(Reason::Superseded);
            }
        }
        let dir = self.bundle_dir(bus);
        let tls = dir.join("tls");
        std::fs::create_dir_all(&tls).map_err(io(&tls))?;
        restrict_dir(&dir)?;
        let cert = tls.join("bus.pem");
        let key = tls.join("bus.key");
        let ca = tls.join("ca.pem");
        let serial = self.issue(&mut registry, bus.as_str(), Kind::Bus, &[], &cert, &key)?;
        let ca_pem = std::fs::read(self.ca_cert()).map_err(io(&self.ca_cert()))?;
        write_atomic(&ca, &ca_pem)?;
        // HQ's verifying keys, pinned in the bundle. A PKI made before down messages were
        // signed gets its signing keys now.
        let signing = self.signing();
        if !signing.current().exists() {
            signing.init()?;
        }
        let hq_keys = dir.join("hq-keys.pub");
        write_atomic(&hq_keys, signing.public_text()?.as_bytes())?;
        let config = dir.join("bus.toml");
        write_atomic(&config, bundle_config(bus, opts).as_bytes())?;
        if live > 0 {
            self.write_crl(&mut registry)?;
        }
        self.save_registry(&registry)?;
        Ok(Bundle {
            dir,
            config,
            ca,
            cert,
            key,
            hq_keys,
            serial,
        })
    }

    /// Revokes every certificate of `bus` and re-signs the CRL. Returns the serials.
    pub fn revoke(&self, bus: &BusId, reason: Reason) -> Result<Vec<String>, PkiError> {
        let mut registry = self.load_registry()?;
        let now = OffsetDateTime::now_utc();
        let mut serials = Vec::new();
        let mut known = false;
        for c in registry
            .certs
            .iter_mut()
            .filter(|c| c.kind == Kind::Bus && c.common_name == bus.as_str())
        {
            known = true;
            if c.revoked_at.is_none() || reason == Reason::KeyCompromise {
                c.revoked_at.get_or_insert(now);
                c.reason = Some(reason);
                serials.push(c.serial.clone());
            }
        }
        if !known {
            return Err(PkiError::Unknown(bus.clone()));
        }
        self.write_crl(&mut registry)?;
        self.save_registry(&registry)?;
        Ok(serials)
    }

    /// Re-signs the CRL (e.g. before its nextUpdate).
    pub fn refresh_crl(&self) -> Result<(), PkiError> {
        let mut registry = self.load_registry()?;
        self.write_crl(&mut registry)?;
        self.save_registry(&registry)
    }

    fn load_ca(&self) -> Result<(rcgen::Certificate, KeyPair), PkiError> {
        let pem = std::fs::read_to_string(self.ca_cert()).map_err(io(&self.ca_cert()))?;
        let key_pem = std::fs::read_to_string(self.ca_key()).map_err(io(&self.ca_key()))?;
        let key = KeyPair::from_pem(&key_pem)?;
        // rcgen signs with an issuer `Certificate`; re-creating it from the CA's own
        // parameters and key gives the same subject and key identifier, so what it signs
        // chains to the CA certificate on disk.
        let params = CertificateParams::from_ca_cert_pem(&pem)?;
        let ca = params.self_signed(&key)?;
        Ok((ca, key))
    }

    fn issue(
        &self,
        registry: &mut Registry,
        common_name: &str,
        kind: Kind,
        names: &[String],
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<String, PkiError> {
        let (ca, ca_key) = self.load_ca()?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Keliling");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match kind {
            Kind::Broker => ExtendedKeyUsagePurpose::ServerAuth,
            Kind::Hq | Kind::Bus => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        for n in names {
            params
                .subject_alt_names
                .push(match n.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(n.as_str().try_into()?),
                });
        }
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(365 * LEAF_YEARS);
        let serial = random_serial();
        let serial_hex = hex::encode(serial.to_bytes());
        params.serial_number = Some(serial);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let not_after = params.not_after;
        let cert = params.signed_by(&key, &ca, &ca_key)?;
        write_private(key_path, key.serialize_pem().as_bytes())?;
        write_atomic(cert_path, cert.pem().as_bytes())?;
        registry.certs.push(Issued {
            serial: serial_hex.clone(),
            common_name: common_name.to_owned(),
            kind,
            issued_at: now,
            not_after,
            revoked_at: None,
            reason: None,
        });
        Ok(serial_hex)
    }

    fn write_crl(&self, registry: &mut Registry) -> Result<(), PkiError> {
        let (ca, ca_key) = self.load_ca()?;
        let now = OffsetDateTime::now_utc();
        registry.crl_number += 1;
        let mut revoked = Vec::new();
        for c in &registry.certs {
            if let Some(at) = c.revoked_at {
                let bytes = hex::decode(&c.serial).map_err(|e| PkiError::Registry {
                    path: self.registry_path(),
                    reason: format!("serial {}: {e}", c.serial),
                })?;
                revoked.push(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&bytes),
                    revocation_time: at,
                    reason_code: c.reason.map(Reason::rfc5280),
                    invalidity_date: None,
                });
            }
        }
        let crl = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + Duration::days(CRL_DAYS),
            crl_number: SerialNumber::from(registry.crl_number),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&ca, &ca_key)?;
        write_atomic(&self.crl(), crl.pem()?.as_bytes())
    }

    fn load_registry(&self) -> Result<Registry, PkiError> {
        let path = self.registry_path();
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        toml::from_str(&text).map_err(|e| PkiError::Registry {
            path,
            reason: e.to_string(),
        })
    }

    fn save_registry(&self, r: &Registry) -> Result<(), PkiError> {
        let path = self.registry_path();
        let text = toml::to_string(r).map_err(|e| PkiError::Registry {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, text.as_bytes())
    }
}

fn random_serial() -> SerialNumber {
    // 16 random bytes, positive (top bit clear) and never zero: RFC 5280's at most 20
    // octets, unpredictable so serials say nothing about the fleet's size.
    let mut b: [u8; 16] = rand::random();
    b[0] = (b[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&b)
}

fn bundle_config(bus: &BusId, o: &BundleOptions) -> String {
    let tls = o.install_dir.join("tls");
    format!(
        "# Keliling bus node: the bundle for {bus}, made by `hq-sync pki provision-bus`.\n\
         # Copy this directory to {install} on the bus (tls/bus.key readable by the\n\
         # bus-node service only), then: bus-node -c {install}/bus.toml init\n\
         bus_id = \"{bus}\"\n\
         data_dir = {data:?}\n\
         \n\
         [broker]\n\
         host = {host:?}\n\
         port = {port}\n\
         keep_alive_secs = 30\n\
         connection_timeout_secs = 60\n\
         \n\
         # TLS 1.3 with this bus's certificate; only the fleet CA is trusted.\n\
         [broker.tls]\n\
         ca = {ca:?}\n\
         cert = {cert:?}\n\
         key = {key:?}\n\
         \n\
         # HQ's signing keys (current, next): the bus believes only down messages they signed.\n\
         [trust]\n\
         hq_keys = {hq_keys:?}\n",
        install = o.install_dir.display(),
        data = o.data_dir.display().to_string(),
        host = o.broker_host,
        port = o.broker_port,
        ca = tls.join("ca.pem").display().to_string(),
        cert = tls.join("bus.pem").display().to_string(),
        key = tls.join("bus.key").display().to_string(),
        hq_keys = o.install_dir.join("hq-keys.pub").display().to_string(),
    )
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename, fsync the dir.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_with_mode(path, bytes, 0o644)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_with_mode(path, bytes, 0o600)
}

fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn restrict_dir(dir: &Path) -> Result<(), PkiError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> BundleOptions {
        BundleOptions {
            broker_host: "127.0.0.1".into(),
            broker_port: 8883,
            install_dir: "/etc/keliling".into(),
            data_dir: "/var/lib/keliling".into(),
            renew: false,
        }
    }

    #[test]
    fn init_provision_revoke() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("pki");
        let pki = Pki::init(&dir, &["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert!(matches!(Pki::init(&dir, &[]), Err(PkiError::Exists(_))));
        let bus: BusId = "bus-ntt-01".parse().unwrap();
        let b = pki.provision_bus(&bus, &opts()).unwrap();
        // The bundle's config is a valid bus config pointing at the install dir.
        let text = std::fs::read_to_string(&b.config).unwrap();
        assert!(text.contains("/etc/keliling/tls/bus.pem"), "{text}");
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["bus_id"].as_str(), Some("bus-ntt-01"));
        // The certificate chains to the CA, names the bus and is for clients only.
        let der = keliling_shared::tls::load_certs(&b.cert, "cert").unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(&der[0]).unwrap();
        let cn = x
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(cn, "bus-ntt-01");
        assert_eq!(x.version(), x509_parser::x509::X509Version::V3);
        let eku = x.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&b.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "bus key must not be group/world readable");
        }
        assert!(matches!(
            pki.provision_bus(&bus, &opts()),
            Err(PkiError::AlreadyIssued(_))
        ));
        let serials = pki.revoke(&bus, Reason::KeyCompromise).unwrap();
        assert_eq!(serials, vec![b.serial.clone()]);
        let crls = keliling_shared::tls::load_crls(&pki.crl()).unwrap();
        let (_, crl) = x509_parser::parse_x509_crl(&crls[0]).unwrap();
        let listed: Vec<String> = crl
            .iter_revoked_certificates()
            .map(|r| hex::encode(r.raw_serial()))
            .collect();
        assert!(listed.contains(&b.serial), "{listed:?} lacks {}", b.serial);
        assert!(matches!(
            pki.provision_bus(
                &bus,
                &BundleOptions {
                    renew: true,
                    ..opts()
                }
            ),
            Err(PkiError::Revoked(_))
        ));
        let unknown: BusId = "bus-none".parse().unwrap();
        assert!(matches!(
            pki.revoke(&unknown, Reason::Retired),
            Err(PkiError::Unknown(_))
        ));
    }

    #[test]
    fn renewing_supersedes_the_old_certificate() {
        let d = tempfile::tempdir().unwrap();
        let pki = Pki::init(d.path(), &["127.0.0.1".into()]).unwrap();
        let bus: BusId = "bus-a".parse().unwrap();
        let first = pki.provision_bus(&bus, &opts()).unwrap();
        let second = pki
            .provision_bus(
                &bus,
                &BundleOptions {
                    renew: true,
                    ..opts()
                },
            )
            .unwrap();
        assert_ne!(first.serial, second.serial);
        let issued = pki.issued().unwrap();
        let old = issued.iter().find(|c| c.serial == first.serial).unwrap();
        assert_eq!(old.reason, Some(Reason::Superseded));
        let new = issued.iter().find(|c| c.serial == second.serial).unwrap();
        assert!(new.revoked_at.is_none());
    }
}
