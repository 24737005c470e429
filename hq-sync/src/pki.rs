//! The fleet PKI: one CA for the fleet, a server certificate for the broker, a client
//! certificate for HQ and one per bus, and a revocation list.
//!
//! Layout of the PKI directory (keep it on HQ, readable by HQ's operators only):
//!
//! ```text
//! ca.pem  ca.key            the fleet CA (the key signs certificates and the CRL)
//! broker.pem broker.key     the broker's server certificate (embedded broker or Mosquitto)
//! hq/<name>.pem  .key       an HQ worker's client certificate (common name = worker id:
//!                           `hq-1` from `pki init`, more from `pki provision-hq hq-2`)
//! crl.pem                   the revocation list, re-signed on every revocation
//! registry.toml             every certificate issued: serial, name, kind, dates, revocation
//! registry.lock             held (flock) around every read-modify-write of the registry
//! buses/<bus-id>/           the bundle for one bus: bus.toml and tls/{ca.pem,bus.pem,bus.key}
//! ```
//!
//! Invariants:
//! - A bus certificate's common name is its [`BusId`]; an HQ worker's is `hq-<n>`, a name
//!   [`BusId::parse`] refuses, so no bus can be issued HQ's broker permissions by its name.
//!   Brokers use the common name as the MQTT client id too (Mosquitto's
//!   `use_username_as_clientid`, the embedded broker's front), so a certificate cannot
//!   take over another client's session.
//! - Client certificates carry only the clientAuth purpose: a stolen bus key cannot pose
//!   as the broker. The broker's carries serverAuth and clientAuth (a NATS node dials the
//!   other nodes with it); its common name is no bus id and no HQ worker's, so no broker
//!   grants it a client's permissions.
//! - A revoked bus id is never issued again, and the CRL always lists every revoked
//!   certificate. Private keys are written with mode 0600 (set on the file itself, through
//!   a unique temporary name in the same directory), every file atomically; a private key
//!   readable by group or others is refused when loaded.

use keliling_shared::BusId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// The first HQ worker's certificate common name (its broker user name and client id,
/// and `[ingest] worker_id`'s default), made by `pki init`.
pub const FIRST_HQ: &str = "hq-1";

/// Whether `name` is a valid HQ worker name: `hq-` then 1 to 29 of a-z, 0-9, '-'. These
/// are the names [`BusId::parse`] reserves.
pub fn is_hq_name(name: &str) -> bool {
    name.strip_prefix("hq-").is_some_and(|rest| {
        (1..=29).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    })
}

const CA_YEARS: i64 = 20;
const LEAF_YEARS: i64 = 5;
/// The CRL's nextUpdate. Mosquitto (OpenSSL) refuses every client once a CRL is past it,
/// so it is far ahead; `hq-sync pki crl` re-signs it any time.
const CRL_DAYS: i64 = 3 * 365;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("a console or station certificate may not name {0}: the broker's certificate does (its key must never be able to pose as the broker to a bus); give it its own host name or address")]
    ConsoleName(String),
    #[error("a console or station certificate needs at least one host name or address")]
    ConsoleNoName,
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
    #[error("{0:?} is not an HQ worker name: `hq-` then 1 to 29 of a-z, 0-9, '-' (e.g. hq-2)")]
    HqName(String),
    #[error("HQ worker {0} was revoked; a revoked name is never issued again (use a new one)")]
    HqRevoked(String),
    #[error("HQ worker {0} already has a valid certificate; use --renew to issue a new one (the old one is revoked)")]
    HqAlreadyIssued(String),
    #[error("HQ worker {0} has no certificate to revoke")]
    HqUnknown(String),
    #[error(
        "private key {path} is readable by others than it may be (mode {mode:o}); refusing to use \
         it: chmod 600 it (and check who may have copied it)"
    )]
    KeyMode { path: PathBuf, mode: u32 },
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
    /// The staff console's HTTPS certificate (`pki console-cert`).
    Console,
    /// A bus station's HTTPS certificate (`pki station-cert`): common name
    /// `keliling-station-<bus>`.
    Station,
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
    /// A bus's or HQ worker's certificate's own name, `urn:keliling:cert:<name>:<serial>`,
    /// carried as its URI subject alternative name: a NATS cluster's user for exactly this
    /// certificate (`hq-sync pki nats-auth`), so a revoked one is not let in by the renewed
    /// one's subject. Unset for certificates issued before it was added.
    #[serde(default)]
    pub nats_user: Option<String>,
}

/// What a NATS cluster's `auth.conf` is made of ([`Pki::nats_users`]): (bus id or worker
/// name, the user of its valid certificate).
#[derive(Debug, Default)]
pub struct NatsUsers {
    pub buses: Vec<(String, String)>,
    pub hq: Vec<(String, String)>,
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

/// An HQ worker's certificate, from [`Pki::provision_hq`].
#[derive(Debug, Clone)]
pub struct HqIssued {
    pub cert: PathBuf,
    pub key: PathBuf,
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
        let _lock = pki.lock_registry()?;
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
        pki.make_hq_dir()?;
        pki.issue(
            &mut registry,
            FIRST_HQ,
            Kind::Hq,
            &[],
            &pki.hq_cert(FIRST_HQ),
            &pki.hq_key(FIRST_HQ),
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
    /// Where HQ workers' certificates and keys live.
    pub fn hq_dir(&self) -> PathBuf {
        self.dir.join("hq")
    }
    /// HQ worker `name`'s certificate (common name = `name` = its `[ingest] worker_id`).
    pub fn hq_cert(&self, name: &str) -> PathBuf {
        self.hq_dir().join(format!("{name}.pem"))
    }
    pub fn hq_key(&self, name: &str) -> PathBuf {
        self.hq_dir().join(format!("{name}.key"))
    }
    pub fn crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }
    fn registry_path(&self) -> PathBuf {
        self.dir.join("registry.toml")
    }
    fn lock_path(&self) -> PathBuf {
        self.dir.join("registry.lock")
    }

    /// An exclusive lock (flock) on `registry.lock`, held until the returned file is
    /// dropped: every read-modify-write of `registry.toml` and the CRL holds it, so two
    /// `hq-sync pki` commands at once cannot lose each other's certificates.
    fn lock_registry(&self) -> Result<std::fs::File, PkiError> {
        let path = self.lock_path();
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        f.lock().map_err(io(&path))?;
        Ok(f)
    }

    fn make_hq_dir(&self) -> Result<(), PkiError> {
        let d = self.hq_dir();
        std::fs::create_dir_all(&d).map_err(io(&d))?;
        restrict_dir(&d)
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
        let _lock = self.lock_registry()?;
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

    /// Makes HQ worker `name`'s key and certificate (common name = `name`, which must be
    /// that worker's `[ingest] worker_id`) in `hq/`. For Mosquitto, re-write the ACL
    /// afterwards (`hq-sync pki acl`) so the new worker gets HQ's topic lines.
    pub fn provision_hq(&self, name: &str, renew: bool) -> Result<HqIssued, PkiError> {
        if !is_hq_name(name) {
            return Err(PkiError::HqName(name.chars().take(40).collect()));
        }
        let _lock = self.lock_registry()?;
        let mut registry = self.load_registry()?;
        let is_mine = |c: &Issued| c.kind == Kind::Hq && c.common_name == name;
        if registry
            .certs
            .iter()
            .any(|c| is_mine(c) && c.reason == Some(Reason::KeyCompromise))
        {
            return Err(PkiError::HqRevoked(name.to_owned()));
        }
        let live = registry
            .certs
            .iter()
            .filter(|c| is_mine(c) && c.revoked_at.is_none())
            .count();
        if live > 0 && !renew {
            return Err(PkiError::HqAlreadyIssued(name.to_owned()));
        }
        let now = OffsetDateTime::now_utc();
        for c in registry.certs.iter_mut() {
            if is_mine(c) && c.revoked_at.is_none() {
                c.revoked_at = Some(now);
                c.reason = Some(Reason::Superseded);
            }
        }
        self.make_hq_dir()?;
        let (cert, key) = (self.hq_cert(name), self.hq_key(name));
        let serial = self.issue(&mut registry, name, Kind::Hq, &[], &cert, &key)?;
        if live > 0 {
            self.write_crl(&mut registry)?;
        }
        self.save_registry(&registry)?;
        Ok(HqIssued { cert, key, serial })
    }

    pub fn console_cert(&self) -> PathBuf {
        self.dir.join("console").join("console.pem")
    }
    pub fn console_key(&self) -> PathBuf {
        self.dir.join("console").join("console.key")
    }

    /// Issues the staff console's HTTPS certificate for `names` (host names or addresses
    /// staff open it at), replacing an earlier one. Refuses any name the broker's
    /// certificate holds: buses trust this CA for the broker, so a console key valid for
    /// the broker's name could pose as the broker.
    pub fn provision_console(
        &self,
        names: &[String],
    ) -> Result<(PathBuf, PathBuf, String), PkiError> {
        let dir = self.dir.join("console");
        let (cert, key) = (self.console_cert(), self.console_key());
        self.provision_web(Kind::Console, "keliling-console", names, &dir, &cert, &key)
    }

    /// A bus station's HTTPS certificate for `names` (the addresses tablets open it at
    /// on the bus's network), next to the bus's bundle, replacing an earlier one. Like
    /// the console's, it may hold none of the broker's names.
    pub fn provision_station(
        &self,
        bus: &BusId,
        names: &[String],
    ) -> Result<(PathBuf, PathBuf, String), PkiError> {
        let dir = self.bundle_dir(bus);
        let (cert, key) = (dir.join("station.pem"), dir.join("station.key"));
        let cn = format!("keliling-station-{bus}");
        self.provision_web(Kind::Station, &cn, names, &dir, &cert, &key)
    }

    /// Issues a web server's certificate (`kind` with common name `cn`) and revokes the
    /// one it replaces.
    fn provision_web(
        &self,
        kind: Kind,
        cn: &str,
        names: &[String],
        dir: &Path,
        cert: &Path,
        key: &Path,
    ) -> Result<(PathBuf, PathBuf, String), PkiError> {
        if names.is_empty() {
            return Err(PkiError::ConsoleNoName);
        }
        let broker = std::fs::read(self.broker_cert()).map_err(io(&self.broker_cert()))?;
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::CertificateDer::pem_slice_iter(&broker)
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| PkiError::Registry {
                path: self.broker_cert(),
                reason: "no certificate in it".into(),
            })?;
        let (_, x) =
            x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| PkiError::Registry {
                path: self.broker_cert(),
                reason: e.to_string(),
            })?;
        let mut taken: Vec<String> = Vec::new();
        if let Ok(Some(san)) = x.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => {
                        taken.push(d.to_ascii_lowercase())
                    }
                    x509_parser::extensions::GeneralName::IPAddress(b) => {
                        let ip = match b.len() {
                            4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                            16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                            _ => None,
                        };
                        if let Some(ip) = ip {
                            taken.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        for n in names {
            let norm = n
                .parse::<std::net::IpAddr>()
                .map(|ip| ip.to_string())
                .unwrap_or_else(|_| n.to_ascii_lowercase());
            if taken.contains(&norm) {
                return Err(PkiError::ConsoleName(n.clone()));
            }
        }
        let _lock = self.lock_registry()?;
        let mut registry = self.load_registry()?;
        let now = OffsetDateTime::now_utc();
        let mut replaced = false;
        for c in registry.certs.iter_mut() {
            if c.kind == kind && c.common_name == cn && c.revoked_at.is_none() {
                c.revoked_at = Some(now);
                c.reason = Some(Reason::Superseded);
                replaced = true;
            }
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        restrict_dir(dir)?;
        let serial = self.issue(&mut registry, cn, kind, names, cert, key)?;
        if replaced {
            self.write_crl(&mut registry)?;
        }
        self.save_registry(&registry)?;
        Ok((cert.to_owned(), key.to_owned(), serial))
    }

    /// Revokes every certificate of `bus` and re-signs the CRL. Returns the serials.
    pub fn revoke(&self, bus: &BusId, reason: Reason) -> Result<Vec<String>, PkiError> {
        self.revoke_name(Kind::Bus, bus.as_str(), reason)?
            .ok_or_else(|| PkiError::Unknown(bus.clone()))
    }

    /// Revokes every certificate of HQ worker `name` and re-signs the CRL.
    pub fn revoke_hq(&self, name: &str, reason: Reason) -> Result<Vec<String>, PkiError> {
        self.revoke_name(Kind::Hq, name, reason)?
            .ok_or_else(|| PkiError::HqUnknown(name.to_owned()))
    }

    /// HQ worker names with a valid (unrevoked) certificate, sorted.
    pub fn hq_workers(&self) -> Result<Vec<String>, PkiError> {
        let mut names: Vec<String> = self
            .load_registry()?
            .certs
            .into_iter()
            .filter(|c| c.kind == Kind::Hq && c.revoked_at.is_none())
            .map(|c| c.common_name)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// A NATS cluster's users (`hq-sync pki nats-auth`): each valid bus and HQ worker
    /// certificate by its own name (its URI SAN). A valid certificate issued before those
    /// names is an error naming it: mapped by its subject instead, it would let in the
    /// revoked certificates of the same subject too (NATS checks no CRL).
    pub fn nats_users(&self) -> Result<NatsUsers, PkiError> {
        let mut u = NatsUsers::default();
        for c in self.load_registry()?.certs {
            if c.revoked_at.is_some() || !matches!(c.kind, Kind::Bus | Kind::Hq) {
                continue;
            }
            let Some(user) = c.nats_user else {
                return Err(PkiError::Registry {
                    path: self.registry_path(),
                    reason: format!(
                        "the certificate of {} (serial {}) was issued before certificates named \
                         themselves; renew it (provision with --renew) before using a NATS cluster",
                        c.common_name, c.serial
                    ),
                });
            };
            match c.kind {
                Kind::Bus => u.buses.push((c.common_name, user)),
                _ => u.hq.push((c.common_name, user)),
            }
        }
        for v in [&mut u.buses, &mut u.hq] {
            v.sort();
            v.dedup();
        }
        Ok(u)
    }

    /// The Mosquitto ACL for this fleet: the per-bus pattern lines and one block per HQ
    /// worker with a valid certificate (Mosquitto 2.0 ACL files have no wildcard users).
    pub fn mosquitto_acl(&self, prefix: &str) -> Result<String, PkiError> {
        Ok(mosquitto_acl_text(prefix, &self.hq_workers()?))
    }

    /// `None` when `name` has no certificate of `kind`.
    fn revoke_name(
        &self,
        kind: Kind,
        name: &str,
        reason: Reason,
    ) -> Result<Option<Vec<String>>, PkiError> {
        let _lock = self.lock_registry()?;
        let mut registry = self.load_registry()?;
        let now = OffsetDateTime::now_utc();
        let mut serials = Vec::new();
        let mut known = false;
        for c in registry
            .certs
            .iter_mut()
            .filter(|c| c.kind == kind && c.common_name == name)
        {
            known = true;
            if c.revoked_at.is_none() || reason == Reason::KeyCompromise {
                c.revoked_at.get_or_insert(now);
                c.reason = Some(reason);
                serials.push(c.serial.clone());
            }
        }
        if !known {
            return Ok(None);
        }
        self.write_crl(&mut registry)?;
        self.save_registry(&registry)?;
        Ok(Some(serials))
    }

    /// Re-signs the CRL (e.g. before its nextUpdate).
    pub fn refresh_crl(&self) -> Result<(), PkiError> {
        let _lock = self.lock_registry()?;
        let mut registry = self.load_registry()?;
        self.write_crl(&mut registry)?;
        self.save_registry(&registry)
    }

    fn load_ca(&self) -> Result<(rcgen::Certificate, KeyPair), PkiError> {
        let pem = std::fs::read_to_string(self.ca_cert()).map_err(io(&self.ca_cert()))?;
        check_key_mode(&self.ca_key())?;
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
        params.extended_key_usages = match kind {
            // A broker node is a client too when it dials the other nodes of a cluster
            // (NATS routes over mutual TLS, config/nats/keliling.conf).
            Kind::Broker => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Kind::Console | Kind::Station => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Kind::Hq | Kind::Bus => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        for n in names {
            params
                .subject_alt_names
                .push(match n.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(n.as_str().try_into()?),
                });
        }
        let serial = random_serial();
        let serial_hex = hex::encode(serial.to_bytes());
        let nats_user = matches!(kind, Kind::Bus | Kind::Hq)
            .then(|| format!("urn:keliling:cert:{common_name}:{serial_hex}"));
        if let Some(u) = &nats_user {
            params
                .subject_alt_names
                .push(SanType::URI(u.as_str().try_into()?));
        }
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(365 * LEAF_YEARS);
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
            nats_user,
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

/// Writes a public file (certificate, ACL) atomically, mode 0644.
pub fn write_public(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_atomic(path, bytes)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_with_mode(path, bytes, 0o600)
}

fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    crate::files::write_with_mode(path, bytes, mode).map_err(io(path))
}

/// Refuses a private key file that group or others may read (or write).
pub fn check_key_mode(path: &Path) -> Result<(), PkiError> {
    check_mode(path, 0o077)
}

/// Refuses a private key file that others may read (or write); its group may. For the
/// broker's key, which README's Mosquitto set-up shares with the `mosquitto` group.
pub fn check_shared_key_mode(path: &Path) -> Result<(), PkiError> {
    check_mode(path, 0o007)
}

fn check_mode(path: &Path, forbidden: u32) -> Result<(), PkiError> {
    match crate::files::mode_exceeding(path, forbidden).map_err(io(path))? {
        Some(mode) => Err(PkiError::KeyMode {
            path: path.to_owned(),
            mode,
        }),
        None => Ok(()),
    }
}

/// The text of `config/mosquitto.acl` for topic prefix `prefix` and HQ workers `hq`.
pub fn mosquitto_acl_text(prefix: &str, hq: &[String]) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(ACL_HEADER);
    out.push_str("\n# Every bus (pattern lines apply to every client): its own up/ topics, one line per\n# kind; its own down/ topics and the fleet topics.\n");
    for kind in keliling_shared::topics::UpKind::ALL {
        let _ = writeln!(out, "pattern write {prefix}/bus/%u/up/{}", kind.as_str());
    }
    let _ = writeln!(out, "pattern read {prefix}/bus/%u/down/#");
    let _ = writeln!(out, "pattern read {prefix}/fleet/#");
    for name in hq {
        let _ = write!(
            out,
            "\n# HQ worker {name}: reads every bus's up/ topics (also through $share), answers on\n# their down/ topics, publishes the fleet topics.\nuser {name}\n"
        );
        for kind in keliling_shared::topics::UpKind::ALL {
            let _ = writeln!(out, "topic read {prefix}/bus/+/up/{}", kind.as_str());
        }
        let _ = writeln!(out, "topic write {prefix}/bus/+/down/#");
        let _ = writeln!(out, "topic write {prefix}/fleet/#");
    }
    out
}

const ACL_HEADER: &str = "\
# Keliling topic ACL for Mosquitto 2.0 (acl_file in config/mosquitto.conf).
# Made by `hq-sync pki acl` from the PKI registry; re-make it after `pki provision-hq`
# or a revocation (then: systemctl reload mosquitto). Edit the generator, not this file.
#
# With `use_identity_as_username true` a client's user name is its certificate's common
# name: a bus id (bus-ntt-01) for buses, `hq-1`, `hq-2`, ... for HQ workers; with
# `use_username_as_clientid true` it is its client id too, so no certificate can take
# over another client's session. `%u` below is that name. Mosquitto 2.0 ACL files have
# no wildcard users, so every HQ worker has its own block.
#
# Mosquitto 2.0's ACL file does not check SUBSCRIBE at all (only what is delivered): a
# bus may join HQ's shared-subscription group and take its turn in the round-robin, and
# the messages it is dealt are dropped (it may not read them). HQ's `shared_group` must
# therefore be a secret (SECURITY.md). With MQTT 3.1.1 Mosquitto PUBACKs a denied
# publish and drops it silently: that is why only HQ's own ack counts as delivered.
";
fn restrict_dir(dir: &Path) -> Result<(), PkiError> {
    crate::files::restrict_dir(dir).map_err(io(dir))
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

    /// Every bus and HQ worker certificate names itself (URI SAN), and a NATS cluster's
    /// users are exactly the valid ones: a renewal's old certificate and a revoked bus
    /// have none.
    #[test]
    fn each_valid_client_certificate_is_one_nats_user() {
        let d = tempfile::tempdir().unwrap();
        let pki = Pki::init(&d.path().join("pki"), &["127.0.0.1".into()]).unwrap();
        let (a, b): (BusId, BusId) = ("bus-ntt-01".parse().unwrap(), "bus-ntt-02".parse().unwrap());
        let first = pki.provision_bus(&a, &opts()).unwrap();
        let first = std::fs::read(&first.cert).unwrap();
        pki.provision_bus(&b, &opts()).unwrap();
        let renewed = pki
            .provision_bus(
                &a,
                &BundleOptions {
                    renew: true,
                    ..opts()
                },
            )
            .unwrap();
        pki.revoke(&b, Reason::KeyCompromise).unwrap();
        let users = pki.nats_users().unwrap();
        assert_eq!(users.buses.len(), 1, "{users:?}");
        assert_eq!(users.buses[0].0, "bus-ntt-01");
        assert_eq!(users.hq.len(), 1, "hq-1 from init: {users:?}");
        let san_of = |path: &Path| -> Vec<String> {
            let der = keliling_shared::tls::load_certs(path, "cert").unwrap();
            let (_, x) = x509_parser::parse_x509_certificate(der[0].as_ref()).unwrap();
            x.subject_alternative_name()
                .unwrap()
                .map(|s| {
                    s.value
                        .general_names
                        .iter()
                        .filter_map(|n| match n {
                            x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(san_of(&renewed.cert), vec![users.buses[0].1.clone()]);
        let old = d.path().join("first.pem");
        std::fs::write(&old, first).unwrap();
        assert_ne!(san_of(&old), san_of(&renewed.cert));
        assert_eq!(san_of(&old).len(), 1);
        assert!(users.buses[0]
            .1
            .starts_with("urn:keliling:cert:bus-ntt-01:"));
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
    fn hq_workers_have_their_own_certificates() {
        let d = tempfile::tempdir().unwrap();
        let pki = Pki::init(d.path(), &["127.0.0.1".into()]).unwrap();
        assert!(pki.hq_cert(FIRST_HQ).exists());
        assert_eq!(pki.hq_workers().unwrap(), vec!["hq-1".to_owned()]);
        let two = pki.provision_hq("hq-2", false).unwrap();
        let der = keliling_shared::tls::load_certs(&two.cert, "cert").unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(&der[0]).unwrap();
        let cn = x.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "hq-2");
        let eku = x.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(matches!(
            pki.provision_hq("hq-2", false),
            Err(PkiError::HqAlreadyIssued(_))
        ));
        for bad in ["hq", "bus-a", "hq-", "hq-A", "hq-x/y"] {
            assert!(
                matches!(pki.provision_hq(bad, false), Err(PkiError::HqName(_))),
                "{bad}"
            );
        }
        assert_eq!(pki.hq_workers().unwrap(), vec!["hq-1", "hq-2"]);
        let serials = pki.revoke_hq("hq-2", Reason::KeyCompromise).unwrap();
        assert_eq!(serials, vec![two.serial.clone()]);
        assert_eq!(pki.hq_workers().unwrap(), vec!["hq-1"]);
        assert!(matches!(
            pki.provision_hq("hq-2", true),
            Err(PkiError::HqRevoked(_))
        ));
        assert!(matches!(
            pki.revoke_hq("hq-9", Reason::Retired),
            Err(PkiError::HqUnknown(_))
        ));
        let crls = keliling_shared::tls::load_crls(&pki.crl()).unwrap();
        let (_, crl) = x509_parser::parse_x509_crl(&crls[0]).unwrap();
        assert!(crl
            .iter_revoked_certificates()
            .any(|r| hex::encode(r.raw_serial()) == two.serial));
        // A bus cannot be given an HQ name at all (BusId refuses it).
        assert!(BusId::parse("hq-3").is_err());
    }

    /// `config/mosquitto.acl` is what `hq-sync pki acl` makes for a fresh PKI.
    #[test]
    fn shipped_acl_is_the_generated_one() {
        let shipped = include_str!("../../config/mosquitto.acl");
        let made = mosquitto_acl_text(
            keliling_shared::topics::DEFAULT_PREFIX,
            &[FIRST_HQ.to_owned()],
        );
        assert_eq!(
            shipped, made,
            "re-make config/mosquitto.acl with `hq-sync pki acl`"
        );
        assert!(!made.contains("up/#"), "the ACL names each up/ kind");
        for kind in keliling_shared::topics::UpKind::ALL {
            let k = kind.as_str();
            assert!(made.contains(&format!("pattern write keliling/v1/bus/%u/up/{k}\n")));
            assert!(made.contains(&format!("topic read keliling/v1/bus/+/up/{k}\n")));
        }
        let two = mosquitto_acl_text("x/y", &["hq-1".into(), "hq-2".into()]);
        assert!(two.contains("user hq-1\n") && two.contains("user hq-2\n"));
        assert!(two.contains("topic write x/y/bus/+/down/#"));
    }

    /// A left-over temporary file (0644, from a crash) must not make the CA key readable:
    /// with one shared temporary name per directory, the key was written into it.
    #[cfg(unix)]
    #[test]
    fn a_left_over_temp_file_does_not_widen_the_key_mode() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        for name in ["ca.tmp", "broker.tmp", "registry.tmp"] {
            let p = d.path().join(name);
            std::fs::write(&p, b"left over").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let pki = Pki::init(d.path(), &["127.0.0.1".into()]).unwrap();
        for key in [pki.ca_key(), pki.broker_key(), pki.hq_key(FIRST_HQ)] {
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{} is {mode:o}", key.display());
        }
        let mode = std::fs::metadata(pki.ca_cert())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        // No temporary file of ours is left behind.
        let tmp: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .collect();
        assert!(tmp.is_empty(), "{tmp:?}");
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_ca_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let pki = Pki::init(d.path(), &["127.0.0.1".into()]).unwrap();
        std::fs::set_permissions(pki.ca_key(), std::fs::Permissions::from_mode(0o640)).unwrap();
        let bus: BusId = "bus-a".parse().unwrap();
        let e = pki.provision_bus(&bus, &opts()).unwrap_err();
        assert!(matches!(e, PkiError::KeyMode { mode: 0o640, .. }), "{e}");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(pki.ca_key(), std::fs::Permissions::from_mode(0o600)).unwrap();
        pki.provision_bus(&bus, &opts()).unwrap();
    }

    /// Provisioning from several processes (here threads, each with its own lock file
    /// handle) at once loses no certificate from the registry.
    #[test]
    fn concurrent_provisioning_keeps_every_certificate() {
        let d = tempfile::tempdir().unwrap();
        let pki = Pki::init(d.path(), &["127.0.0.1".into()]).unwrap();
        let n = 8;
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let pki = pki.clone();
                std::thread::spawn(move || {
                    let bus: BusId = format!("bus-c{i}").parse().unwrap();
                    pki.provision_bus(&bus, &opts()).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let buses = pki
            .issued()
            .unwrap()
            .into_iter()
            .filter(|c| c.kind == Kind::Bus)
            .count();
        assert_eq!(buses, n, "the registry lost certificates");
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
