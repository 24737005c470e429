//! An application as the citizen hands it over on the bus.

use crate::ids::{ApplicationId, BusId, ServiceCode, Sha256};
use crate::nik::{Nik, NikWarning};
use crate::text::Text;
use crate::time::UnixMillis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// At most this many service-specific fields and attachments per application: the
/// catalogue needs far fewer, and a bound keeps a hostile record small.
pub const MAX_FIELDS: usize = 32;
pub const MAX_ATTACHMENTS: usize = 16;
/// The largest attachment a bus will send (a document scan), in bytes.
pub const MAX_ATTACHMENT_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Sex {
    Male,
    Female,
}

impl Sex {
    pub fn parse(s: &str) -> Option<Sex> {
        match s.trim().to_ascii_lowercase().as_str() {
            "l" | "m" | "male" | "laki-laki" | "pria" => Some(Sex::Male),
            "p" | "f" | "female" | "perempuan" | "wanita" => Some(Sex::Female),
            _ => None,
        }
    }
    pub fn label_id(self) -> &'static str {
        match self {
            Sex::Male => "laki-laki",
            Sex::Female => "perempuan",
        }
    }
}

/// A GPS position, checked to lie on Earth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "(f64, f64)", into = "(f64, f64)")]
pub struct GeoPoint {
    lat: f64,
    lon: f64,
}

impl GeoPoint {
    pub fn new(lat: f64, lon: f64) -> Option<Self> {
        (lat.is_finite()
            && lon.is_finite()
            && (-90.0..=90.0).contains(&lat)
            && (-180.0..=180.0).contains(&lon))
        .then_some(GeoPoint { lat, lon })
    }
    pub fn lat(&self) -> f64 {
        self.lat
    }
    pub fn lon(&self) -> f64 {
        self.lon
    }
}
impl TryFrom<(f64, f64)> for GeoPoint {
    type Error = &'static str;
    fn try_from((lat, lon): (f64, f64)) -> Result<Self, Self::Error> {
        GeoPoint::new(lat, lon)
            .ok_or("koordinat GPS di luar jangkauan (GPS position out of range)")
            .map_err(crate::de_error::note)
    }
}
impl From<GeoPoint> for (f64, f64) {
    fn from(p: GeoPoint) -> Self {
        (p.lat, p.lon)
    }
}

/// Where the bus stood when the application was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stop {
    pub village: Text,
    pub gps: Option<GeoPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applicant {
    pub full_name: Text,
    pub nik: Nik,
    pub date_of_birth: time::Date,
    pub sex: Sex,
    pub address: Text,
    pub phone: Option<Phone>,
}

/// An Indonesian phone number as typed: `+62…` or `0…`, 8 to 15 digits.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

impl Phone {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t: String = s.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let digits = t.strip_prefix('+').unwrap_or(&t);
        if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Phone(t))
        } else {
            Err(format!(
                "nomor telepon tidak sah {:?}: 8-15 angka (phone number must be 8-15 digits)",
                s.chars().take(30).collect::<String>()
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for Phone {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Phone::parse(&s).map_err(crate::de_error::note)
    }
}
impl From<Phone> for String {
    fn from(p: Phone) -> String {
        p.0
    }
}
impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keep = self.0.len().saturating_sub(3);
        write!(f, "Phone(***{})", &self.0[keep..])
    }
}

/// The name of a service-specific field or document, as the catalogue spells it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FieldName(String);

impl FieldName {
    pub fn parse(s: &str) -> Result<Self, String> {
        if (1..=32).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            Ok(FieldName(s.to_owned()))
        } else {
            Err(format!(
                "nama isian tidak sah {:?} (field names are 1-32 of a-z, 0-9, '_')",
                s.chars().take(40).collect::<String>()
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for FieldName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        FieldName::parse(&s).map_err(crate::de_error::note)
    }
}
impl From<FieldName> for String {
    fn from(f: FieldName) -> String {
        f.0
    }
}
impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// What an attachment is. The kind sets its sync priority: ID photos travel before
/// document scans.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AttachmentKind {
    IdPhoto,
    Document(FieldName),
}

impl AttachmentKind {
    /// Lower sends first.
    pub fn priority(&self) -> u8 {
        match self {
            AttachmentKind::IdPhoto => 0,
            AttachmentKind::Document(_) => 1,
        }
    }
    pub fn label(&self) -> String {
        match self {
            AttachmentKind::IdPhoto => "id_photo".into(),
            AttachmentKind::Document(d) => format!("doc:{d}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MediaType {
    Jpeg,
    Png,
    Pdf,
}

impl MediaType {
    pub fn sniff(bytes: &[u8]) -> Option<MediaType> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(MediaType::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(MediaType::Png)
        } else if bytes.starts_with(b"%PDF-") {
            Some(MediaType::Pdf)
        } else {
            None
        }
    }
    pub fn as_mime(self) -> &'static str {
        match self {
            MediaType::Jpeg => "image/jpeg",
            MediaType::Png => "image/png",
            MediaType::Pdf => "application/pdf",
        }
    }
}

/// A reference from a record to a blob; the bytes travel separately, in chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub kind: AttachmentKind,
    pub sha256: Sha256,
    pub size: u64,
    pub media_type: MediaType,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Application {
    pub id: ApplicationId,
    pub bus_id: BusId,
    pub operator: Text,
    pub stop: Stop,
    pub service: ServiceCode,
    pub applicant: Applicant,
    pub fields: BTreeMap<FieldName, Text>,
    pub attachments: Vec<Attachment>,
    /// The bus's clock at capture. Not trusted for ordering: HQ records its own time.
    pub captured_at: UnixMillis,
}

/// A structural problem with an application, independent of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("terlalu banyak isian: {0}, paling banyak {MAX_FIELDS} (too many fields)")]
    TooManyFields(usize),
    #[error(
        "terlalu banyak lampiran: {0}, paling banyak {MAX_ATTACHMENTS} (too many attachments)"
    )]
    TooManyAttachments(usize),
    #[error("lampiran {0} terlalu besar: {1} byte (attachment too large)")]
    AttachmentTooLarge(String, u64),
    #[error("lebih dari satu pas foto (more than one ID photo)")]
    TwoPhotos,
    #[error("lampiran yang sama dua kali (the same attachment twice)")]
    DuplicateAttachment,
    #[error("tanggal lahir di masa depan (birth date in the future)")]
    BirthInFuture,
}

impl Application {
    /// Bounds that every application must keep, whatever its service.
    pub fn check_shape(&self) -> Result<(), ShapeError> {
        if self.fields.len() > MAX_FIELDS {
            return Err(ShapeError::TooManyFields(self.fields.len()));
        }
        if self.attachments.len() > MAX_ATTACHMENTS {
            return Err(ShapeError::TooManyAttachments(self.attachments.len()));
        }
        let mut seen = std::collections::HashSet::new();
        let mut photos = 0;
        for a in &self.attachments {
            if a.size > MAX_ATTACHMENT_BYTES || a.size == 0 {
                return Err(ShapeError::AttachmentTooLarge(a.kind.label(), a.size));
            }
            if !seen.insert((a.sha256, a.kind.clone())) {
                return Err(ShapeError::DuplicateAttachment);
            }
            if a.kind == AttachmentKind::IdPhoto {
                photos += 1;
            }
        }
        if photos > 1 {
            return Err(ShapeError::TwoPhotos);
        }
        let today = time::OffsetDateTime::now_utc().date();
        if self.applicant.date_of_birth > today.next_day().unwrap_or(today) {
            return Err(ShapeError::BirthInFuture);
        }
        Ok(())
    }

    /// What the operator and HQ should both see: a NIK that disagrees with stated data.
    pub fn warnings(&self) -> Vec<NikWarning> {
        self.applicant
            .nik
            .check_against(self.applicant.date_of_birth, self.applicant.sex)
    }

    /// The application's canonical bytes' hash: HQ's test of "same id, same content".
    pub fn content_hash(&self) -> Sha256 {
        Sha256::digest(&postcard::to_stdvec(self).unwrap_or_default())
    }

    /// The versioned bytes a store keeps for this application (the wire's envelope
    /// format, so stored records carry their protocol version too).
    pub fn to_stored_bytes(&self) -> Result<Vec<u8>, crate::wire::WireError> {
        crate::wire::encode(self)
    }

    /// Reads stored bytes back, re-parsing every field.
    pub fn from_stored_bytes(bytes: &[u8]) -> Result<Self, crate::wire::WireError> {
        crate::wire::decode(bytes)
    }

    pub fn id_photo(&self) -> Option<&Attachment> {
        self.attachments
            .iter()
            .find(|a| a.kind == AttachmentKind::IdPhoto)
    }
}
