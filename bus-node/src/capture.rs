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
use keliling_shared::wire::{BackgroundNote, PhotoAdvice, PhotoApproval, RecordNotes};
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
    /// Or: the ID photo the station made and the citizen accepted on screen.
    pub approved_photo: Option<ApprovedPhoto>,
    /// Document scans: (document name from the catalogue, file bytes).
    pub documents: Vec<(String, Vec<u8>)>,
    /// The application this one completes (HQ asked for more information on it).
    pub amends: Option<ApplicationId>,
    /// The application's id: the station's draft id (so saving twice saves once); a new
    /// one when absent.
    pub id: Option<ApplicationId>,
    /// Documents the operator saw and ticked on the service's checklist.
    pub documents_seen: Vec<String>,
    /// The NIK index key: given by the station (unlocked), so the application can be found
    /// by NIK at once; the CLI has none (`bus-node run` indexes it later).
    pub index_key: Option<std::sync::Arc<crate::vault::IndexKey>>,
}

/// A camera file made into a service's ID photo, with its retake advice and the spec it
/// was made for (a photo made for another service or birth year does not fit).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IdPhoto {
    #[serde(with = "serde_bytes")]
    pub jpeg: Vec<u8>,
    pub advice: Vec<Advice>,
    pub spec: PhotoSpec,
}

impl IdPhoto {
    /// Whether the photo must be retaken before it can be approved.
    pub fn must_retake(&self) -> bool {
        self.advice.iter().any(Advice::is_blocking)
    }
}

/// An ID photo the citizen saw and accepted on the station's screen, after `retakes`.
#[derive(Debug, Clone)]
pub struct ApprovedPhoto {
    pub photo: IdPhoto,
    pub retakes: u16,
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
    #[error("foto dibuat untuk layanan atau tanggal lahir lain: ambil ulang (the photo was made for another service or date of birth: retake it)")]
    PhotoSpecChanged,
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
    let mut photo_approval = None;
    let photo = match (&input.photo, input.approved_photo) {
        (Some(raw), _) => Some(make_id_photo(raw, svc, details.date_of_birth, settings)?),
        (None, Some(approved)) => {
            if approved.photo.spec != photo_spec(svc, details.date_of_birth) {
                return Err(CaptureError::PhotoSpecChanged);
            }
            photo_approval = Some(PhotoApproval {
                retakes: approved.retakes,
            });
            Some(approved.photo)
        }
        (None, None) => None,
    };
    if let Some(photo) = photo {
        if let Some(blocking) = photo.advice.iter().find(|a| a.is_blocking()) {
            return Err(CaptureError::Retake(blocking.message_id()));
        }
        let attachment = Attachment {
            kind: AttachmentKind::IdPhoto,
            sha256: Sha256::digest(&photo.jpeg),
            size: photo.jpeg.len() as u64,
            media_type: MediaType::Jpeg,
        };
        blobs.push((attachment, photo.jpeg));
        photo_advice = photo.advice;
    }
    for (name, bytes) in input.documents {
        blobs.push(document(name, bytes)?);
    }
    let text = |name: &'static str, v: &str| Text::parse(v).map_err(|e| field(name)(e.to_string()));
    let documents_seen = input
        .documents_seen
        .iter()
        .map(|d| {
            let name = FieldName::parse(d.trim()).map_err(field("dokumen"))?;
            if !svc.documents.iter().any(|x| x.name == name.as_str()) {
                return Err(field("dokumen")(format!(
                    "{name} bukan dokumen layanan ini (not a document of this service)"
                )));
            }
            Ok(name)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let app = Application {
        id: input.id.unwrap_or_else(ApplicationId::new_v7),
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
    if input.amends == Some(app.id) {
        return Err(field("amends")("an application cannot amend itself".into()));
    }
    let notes = RecordNotes {
        photo_advice: photo_advice.iter().map(advice_note).collect(),
        photo_approval,
        catalogue_version: Some(catalogue.version),
        amends: input.amends,
        documents_seen,
    };
    let tag = input.index_key.as_ref().map(|k| k.tag(&app.applicant.nik));
    store.save_with(&app, &blobs, settings.chunk_size, &notes, tag)?;
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

/// What `svc` wants the ID photo of someone born on `date_of_birth` to look like (KTP-el's
/// background depends on the birth year).
pub fn photo_spec(svc: &keliling_shared::Service, date_of_birth: time::Date) -> PhotoSpec {
    let rules = svc.photo.clone().unwrap_or_default();
    PhotoSpec {
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
    }
}

/// The camera file made into the service's ID photo, with the advice for the operator
/// (blocking advice included: the caller decides).
pub fn make_id_photo(
    raw: &[u8],
    svc: &keliling_shared::Service,
    date_of_birth: time::Date,
    settings: &CaptureSettings,
) -> Result<IdPhoto, CaptureError> {
    let spec = photo_spec(svc, date_of_birth);
    let photo = keliling_photo::normalize(raw, &spec, &settings.photo_limits)?;
    Ok(IdPhoto {
        jpeg: photo.jpeg,
        advice: photo.advice,
        spec,
    })
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
