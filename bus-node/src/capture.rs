//! Taking an application: operator's fields and camera files in, a durable record and a
//! receipt out.
//!
//! Everything a citizen hands over is parsed here, once: a typo in a NIK is caught while
//! the citizen is still at the window, with a message the operator can read out. The ID
//! photo goes through the photo pipeline (upright, cropped, resized, metadata stripped)
//! and its retake advice comes back at once.

use crate::store::{Store, StoreError};
use keliling_photo::{Advice, PhotoError, PhotoSpec};
use keliling_shared::application::{FieldName, MediaType, Phone, ShapeError, MAX_ATTACHMENT_BYTES};
use keliling_shared::catalogue::{BackgroundColour, CatalogueError};
use keliling_shared::wire::{BackgroundNote, PhotoAdvice, RecordNotes};
use keliling_shared::{
    Applicant, Application, ApplicationId, Attachment, AttachmentKind, BusId, Catalogue, GeoPoint,
    Nik, NikWarning, ServiceCode, Sex, Sha256, Stop, Text, UnixMillis,
};
use std::collections::BTreeMap;

/// Raw input, as typed by the operator or passed on the command line.
#[derive(Debug, Clone, Default)]
pub struct CaptureInput {
    pub operator: String,
    pub village: String,
    pub gps: Option<(f64, f64)>,
    pub service: String,
    pub full_name: String,
    pub nik: String,
    /// `YYYY-MM-DD`.
    pub date_of_birth: String,
    pub sex: String,
    pub address: String,
    pub phone: Option<String>,
    pub fields: Vec<(String, String)>,
    /// The camera's file, as it came off the camera.
    pub photo: Option<Vec<u8>>,
    /// Document scans: (document name from the catalogue, file bytes).
    pub documents: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{field}: {why}")]
    Field { field: &'static str, why: String },
    #[error(transparent)]
    Nik(#[from] keliling_shared::NikError),
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error("pas foto tidak dapat dipakai: {id} ({0})", id = .0.message_id())]
    Photo(PhotoError),
    #[error("foto harus diulang (retake the photo): {0}")]
    Retake(String),
    #[error("dokumen {name}: {why}")]
    Document { name: String, why: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<PhotoError> for CaptureError {
    fn from(e: PhotoError) -> Self {
        CaptureError::Photo(e)
    }
}

/// What the operator hands back to the citizen, and what the screen shows.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub application: Application,
    pub warnings: Vec<NikWarning>,
    pub photo_advice: Vec<Advice>,
}

impl Receipt {
    /// The tracking number printed on the receipt.
    pub fn tracking_number(&self) -> String {
        self.application.id.to_string()
    }

    /// The citizen's receipt, in Bahasa Indonesia.
    pub fn render(&self, service_name: &str) -> String {
        let a = &self.application;
        let mut out = String::new();
        out.push_str("=== TANDA TERIMA PERMOHONAN ===\n");
        out.push_str(&format!("Nomor pelacakan : {}\n", a.id));
        out.push_str(&format!(
            "Layanan         : {} ({})\n",
            service_name, a.service
        ));
        out.push_str(&format!("Nama            : {}\n", a.applicant.full_name));
        out.push_str(&format!("NIK             : {}\n", a.applicant.nik.masked()));
        out.push_str(&format!("Lokasi          : {}\n", a.stop.village));
        out.push_str(&format!(
            "Bus / petugas   : {} / {}\n",
            a.bus_id, a.operator
        ));
        out.push_str(&format!("Waktu           : {}\n", a.captured_at));
        out.push_str(&format!("Lampiran        : {}\n", a.attachments.len()));
        out.push_str("Status          : tersimpan di bus, akan dikirim saat ada sinyal\n");
        for w in &self.warnings {
            out.push_str(&format!("PERHATIAN       : {w}\n"));
        }
        for adv in &self.photo_advice {
            out.push_str(&format!("Saran foto      : {}\n", adv.message_id()));
        }
        out
    }
}

/// Settings capture needs from the node's config.
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    pub bus_id: BusId,
    pub chunk_size: u32,
    pub photo_limits: keliling_photo::Limits,
}

fn field(field: &'static str) -> impl Fn(String) -> CaptureError {
    move |why| CaptureError::Field { field, why }
}

/// Parses the input, runs the photo pipeline, checks against the catalogue and saves the
/// application durably, encrypted to the bus public key (the bus need not be unlocked).
/// The returned receipt is a promise: the data is committed.
pub fn capture(
    store: &mut Store,
    catalogue: &Catalogue,
    settings: &CaptureSettings,
    input: CaptureInput,
) -> Result<Receipt, CaptureError> {
    // Before the citizen's details and photo are taken: a bus without a key says so now.
    store.sealing_key()?;
    let service =
        ServiceCode::parse(input.service.trim()).map_err(|e| field("layanan")(e.to_string()))?;
    let svc = catalogue.service(&service)?;
    let details = Details::parse(&input)?;
    let mut blobs: Vec<Blob> = Vec::new();
    let mut photo_advice = Vec::new();
    if let Some(raw) = &input.photo {
        let (photo, advice) = id_photo(raw, svc, details.date_of_birth, settings)?;
        blobs.push(photo);
        photo_advice = advice;
    }
    for (name, bytes) in input.documents {
        blobs.push(document(name, bytes)?);
    }
    let text = |name: &'static str, v: &str| Text::parse(v).map_err(|e| field(name)(e.to_string()));
    let app = Application {
        id: ApplicationId::new_v7(),
        bus_id: settings.bus_id.clone(),
        operator: text("petugas", &input.operator)?,
        stop: Stop {
            village: text("desa", &input.village)?,
            gps: details.gps,
        },
        service,
        applicant: Applicant {
            full_name: text("nama", &input.full_name)?,
            nik: Nik::parse(&input.nik)?,
            date_of_birth: details.date_of_birth,
            sex: details.sex,
            address: text("alamat", &input.address)?,
            phone: details.phone,
        },
        fields: details.fields,
        attachments: blobs.iter().map(|(a, _)| a.clone()).collect(),
        captured_at: UnixMillis::now(),
    };
    app.check_shape()?;
    catalogue.check(&app)?;
    let notes = RecordNotes {
        photo_advice: photo_advice.iter().map(advice_note).collect(),
    };
    store.save_noted(&app, &blobs, settings.chunk_size, &notes)?;
    Ok(Receipt {
        warnings: app.warnings(),
        application: app,
        photo_advice,
    })
}

/// The photo station's advice as it travels to HQ (shown to its reviewers).
fn advice_note(a: &Advice) -> PhotoAdvice {
    match *a {
        Advice::TooSmall {
            width,
            height,
            min_width,
            min_height,
        } => PhotoAdvice::TooSmall {
            width,
            height,
            min_width,
            min_height,
        },
        Advice::TooDark { .. } => PhotoAdvice::TooDark,
        Advice::TooBright { .. } => PhotoAdvice::TooBright,
        Advice::Blurred { .. } => PhotoAdvice::Blurred,
        Advice::WrongBackground { expected } => PhotoAdvice::WrongBackground {
            expected: match expected {
                keliling_photo::Background::Red => BackgroundNote::Red,
                keliling_photo::Background::Blue => BackgroundNote::Blue,
                keliling_photo::Background::White => BackgroundNote::White,
            },
        },
    }
}

/// The typed-in details that need parsing beyond free text.
struct Details {
    date_of_birth: time::Date,
    sex: Sex,
    gps: Option<GeoPoint>,
    phone: Option<Phone>,
    fields: BTreeMap<FieldName, Text>,
}

impl Details {
    fn parse(input: &CaptureInput) -> Result<Details, CaptureError> {
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        let date_of_birth = time::Date::parse(input.date_of_birth.trim(), &fmt).map_err(|_| {
            field("tanggal lahir")("tulis TTTT-BB-HH, mis. 1990-03-12 (write YYYY-MM-DD)".into())
        })?;
        let sex = Sex::parse(&input.sex)
            .ok_or_else(|| field("jenis kelamin")("tulis L atau P (write L or P)".into()))?;
        let gps = match input.gps {
            Some((lat, lon)) => Some(GeoPoint::new(lat, lon).ok_or_else(|| {
                field("GPS")("koordinat di luar jangkauan (out of range)".into())
            })?),
            None => None,
        };
        let phone = match input
            .phone
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            Some(p) => Some(Phone::parse(p).map_err(field("telepon"))?),
            None => None,
        };
        let mut fields = BTreeMap::new();
        for (k, v) in &input.fields {
            let name = FieldName::parse(k.trim()).map_err(field("isian"))?;
            let value = Text::parse(v).map_err(|e| CaptureError::Field {
                field: "isian",
                why: format!("{name}: {e}"),
            })?;
            fields.insert(name, value);
        }
        Ok(Details {
            date_of_birth,
            sex,
            gps,
            phone,
            fields,
        })
    }
}

/// An attachment and its bytes, as the store saves them.
type Blob = (Attachment, Vec<u8>);

/// The camera file made into the service's ID photo, with the advice for the operator;
/// refused when the advice says to retake it.
fn id_photo(
    raw: &[u8],
    svc: &keliling_shared::Service,
    date_of_birth: time::Date,
    settings: &CaptureSettings,
) -> Result<(Blob, Vec<keliling_photo::Advice>), CaptureError> {
    let rules = svc.photo.clone().unwrap_or_default();
    let spec = PhotoSpec {
        width: rules.width,
        height: rules.height,
        max_bytes: rules.max_bytes,
        background: rules
            .background
            .resolve(date_of_birth.year())
            .map(|c| match c {
                BackgroundColour::Red => keliling_photo::Background::Red,
                BackgroundColour::Blue => keliling_photo::Background::Blue,
                BackgroundColour::White => keliling_photo::Background::White,
            }),
    };
    let photo = keliling_photo::normalize(raw, &spec, &settings.photo_limits)?;
    if let Some(blocking) = photo.advice.iter().find(|a| a.is_blocking()) {
        return Err(CaptureError::Retake(blocking.message_id()));
    }
    let attachment = Attachment {
        kind: AttachmentKind::IdPhoto,
        sha256: Sha256::digest(&photo.jpeg),
        size: photo.jpeg.len() as u64,
        media_type: MediaType::Jpeg,
    };
    Ok(((attachment, photo.jpeg), photo.advice))
}

/// A document scan, checked to be a JPEG, PNG or PDF within the size limit.
fn document(name: String, bytes: Vec<u8>) -> Result<Blob, CaptureError> {
    let doc = FieldName::parse(name.trim()).map_err(|why| CaptureError::Document {
        name: name.clone(),
        why,
    })?;
    let media_type = MediaType::sniff(&bytes).ok_or_else(|| CaptureError::Document {
        name: name.clone(),
        why: "bukan JPEG, PNG atau PDF (not a JPEG, PNG or PDF)".into(),
    })?;
    if bytes.len() as u64 > MAX_ATTACHMENT_BYTES {
        return Err(CaptureError::Document {
            name,
            why: format!(
                "{} byte, paling besar {MAX_ATTACHMENT_BYTES} (too large)",
                bytes.len()
            ),
        });
    }
    let attachment = Attachment {
        kind: AttachmentKind::Document(doc),
        sha256: Sha256::digest(&bytes),
        size: bytes.len() as u64,
        media_type,
    };
    Ok((attachment, bytes))
}
