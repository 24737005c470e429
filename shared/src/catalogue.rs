//! The service catalogue: which services a bus offers, what each needs, and its photo
//! rules. It is data (`config/services.toml`), so a new service is a config change, not
//! a release; both sides check an application against the same catalogue.

use crate::application::{Application, AttachmentKind, FieldName};
use crate::ids::ServiceCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("katalog layanan tidak terbaca: {0} (service catalogue is not valid TOML)")]
    Toml(toml::de::Error),
    #[error("katalog layanan: {0}")]
    Invalid(String),
    #[error("layanan {0} tidak ada di katalog (unknown service)")]
    UnknownService(String),
    #[error("isian wajib '{field}' ({label}) belum diisi (required field missing)")]
    MissingField { field: String, label: String },
    #[error("isian '{0}' tidak dikenal untuk layanan ini (unknown field for this service)")]
    UnknownField(String),
    #[error("isian '{field}' tidak sah: {why} (invalid field)")]
    BadField { field: String, why: String },
    #[error("pas foto wajib untuk layanan ini (this service needs an ID photo)")]
    MissingPhoto,
    #[error("pindaian dokumen '{0}' wajib untuk layanan ini (document scan required)")]
    MissingDocument(String),
    #[error("dokumen '{0}' tidak dikenal untuk layanan ini (unknown document for this service)")]
    UnknownDocument(String),
}

// Not `#[from]`: that would make the inner error the `source` too, and an error chain
// (`{:#}`) would print it twice. The message above already carries it.
impl From<toml::de::Error> for CatalogueError {
    fn from(e: toml::de::Error) -> Self {
        CatalogueError::Toml(e)
    }
}

/// The background an ID photo must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackgroundRule {
    Any,
    Red,
    Blue,
    White,
    /// KTP-el: red for odd birth years, blue for even ones.
    ByBirthYear,
}

/// What an ID photo must look like for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoRules {
    pub required: bool,
    pub width: u32,
    pub height: u32,
    pub max_bytes: usize,
    pub background: BackgroundRule,
}

impl Default for PhotoRules {
    /// 35 x 45 mm at 300 dpi.
    fn default() -> Self {
        PhotoRules {
            required: true,
            width: 413,
            height: 531,
            max_bytes: 60_000,
            background: BackgroundRule::Any,
        }
    }
}

/// A concrete background colour once the rule is applied to an applicant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackgroundColour {
    Red,
    Blue,
    White,
}

impl BackgroundRule {
    pub fn resolve(self, birth_year: i32) -> Option<BackgroundColour> {
        match self {
            BackgroundRule::Any => None,
            BackgroundRule::Red => Some(BackgroundColour::Red),
            BackgroundRule::Blue => Some(BackgroundColour::Blue),
            BackgroundRule::White => Some(BackgroundColour::White),
            BackgroundRule::ByBirthYear => Some(if birth_year.rem_euclid(2) == 1 {
                BackgroundColour::Red
            } else {
                BackgroundColour::Blue
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FieldKind {
    Text,
    /// 16 digits, like a KK (family card) number.
    Digits16,
    /// `YYYY-MM-DD`.
    Date,
    Choice,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSpec {
    pub name: String,
    pub label: String,
    pub kind: FieldKind,
    #[serde(default = "yes")]
    pub required: bool,
    #[serde(default)]
    pub choices: Vec<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentSpec {
    pub name: String,
    pub label: String,
    #[serde(default = "yes")]
    pub required: bool,
}

/// A government agency whose services a bus carries (a one-stop service hall on wheels).
/// HQ staff belong to agencies and see only their agencies' applications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agency {
    pub code: String,
    pub name: String,
    pub name_en: String,
}

/// A coded reason for rejecting an application, shown to the citizen on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectReason {
    pub code: String,
    pub label: String,
    pub label_en: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub code: ServiceCode,
    pub name: String,
    pub name_en: String,
    /// The agency that decides this service's applications (a code from `[[agency]]`).
    pub agency: String,
    /// Reasons a reviewer may reject with, besides the catalogue-wide ones.
    #[serde(default)]
    pub reject_reasons: Vec<RejectReason>,
    /// A rejection needs a second person's check (maker-checker) before it is final.
    #[serde(default)]
    pub rejection_needs_check: bool,
    /// Taken on the bus only as a booking (e.g. KTP-el recording, which by law needs
    /// biometrics at an office).
    #[serde(default)]
    pub booking_only: bool,
    #[serde(default)]
    pub fields: Vec<FieldSpec>,
    #[serde(default)]
    pub documents: Vec<DocumentSpec>,
    pub photo: Option<PhotoRules>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalogue {
    pub version: u32,
    #[serde(rename = "agency", default)]
    pub agencies: Vec<Agency>,
    /// Reasons every service may be rejected with.
    #[serde(rename = "reject_reason", default)]
    pub reject_reasons: Vec<RejectReason>,
    #[serde(rename = "service")]
    pub services: Vec<Service>,
}

/// The starter catalogue, compiled in so a bus without a config file still works.
pub const DEFAULT_CATALOGUE_TOML: &str = include_str!("../../config/services.toml");

impl Catalogue {
    pub fn from_toml(s: &str) -> Result<Self, CatalogueError> {
        let c: Catalogue = toml::from_str(s)?;
        c.check_consistent()?;
        Ok(c)
    }

    pub fn builtin() -> Self {
        // The built-in catalogue is tested below; if it ever failed to parse, an empty
        // catalogue makes every capture fail loudly rather than the process panic.
        Catalogue::from_toml(DEFAULT_CATALOGUE_TOML).unwrap_or(Catalogue {
            version: 0,
            agencies: Vec::new(),
            reject_reasons: Vec::new(),
            services: Vec::new(),
        })
    }

    /// Checks what TOML or postcard alone cannot: codes well-formed and unique, every
    /// service's agency declared, choices present, photo rules in range. A catalogue from
    /// a file or from HQ is used only after this.
    pub fn validate(&self) -> Result<(), CatalogueError> {
        self.check_consistent()
    }

    fn check_consistent(&self) -> Result<(), CatalogueError> {
        let code_ok = |c: &str| {
            !c.is_empty()
                && c.len() <= 32
                && c.chars()
                    .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '_')
        };
        let mut agencies = std::collections::HashSet::new();
        for a in &self.agencies {
            if !code_ok(&a.code) || !agencies.insert(a.code.as_str()) {
                return Err(CatalogueError::Invalid(format!(
                    "instansi {:?}: kode A-Z, 0-9, _ dan unik (agency code: A-Z, 0-9, _, unique)",
                    a.code
                )));
            }
        }
        let mut reasons = std::collections::HashSet::new();
        for r in &self.reject_reasons {
            if !code_ok(&r.code) || !reasons.insert(r.code.as_str()) {
                return Err(CatalogueError::Invalid(format!(
                    "alasan penolakan {:?}: kode A-Z, 0-9, _ dan unik (reject reason code)",
                    r.code
                )));
            }
        }
        let mut codes = std::collections::HashSet::new();
        for s in &self.services {
            if !agencies.contains(s.agency.as_str()) {
                return Err(CatalogueError::Invalid(format!(
                    "{}: instansi {:?} tidak ada di [[agency]] (unknown agency)",
                    s.code, s.agency
                )));
            }
            let mut own = std::collections::HashSet::new();
            for r in &s.reject_reasons {
                if !code_ok(&r.code)
                    || reasons.contains(r.code.as_str())
                    || !own.insert(r.code.as_str())
                {
                    return Err(CatalogueError::Invalid(format!(
                        "{}: alasan penolakan {:?}: kode A-Z, 0-9, _ dan unik (reject reason code)",
                        s.code, r.code
                    )));
                }
            }
            if !codes.insert(s.code.clone()) {
                return Err(CatalogueError::Invalid(format!(
                    "kode {} dua kali (duplicate code)",
                    s.code
                )));
            }
            for f in &s.fields {
                FieldName::parse(&f.name).map_err(CatalogueError::Invalid)?;
                if f.kind == FieldKind::Choice && f.choices.is_empty() {
                    return Err(CatalogueError::Invalid(format!(
                        "{}.{}: pilihan kosong (no choices)",
                        s.code, f.name
                    )));
                }
            }
            for d in &s.documents {
                FieldName::parse(&d.name).map_err(CatalogueError::Invalid)?;
            }
            if let Some(p) = &s.photo {
                if p.width < 100
                    || p.height < 100
                    || p.width > 2000
                    || p.height > 2000
                    || p.max_bytes < 5_000
                {
                    return Err(CatalogueError::Invalid(format!(
                        "{}: aturan foto tidak masuk akal (photo rules out of range)",
                        s.code
                    )));
                }
            }
        }
        Ok(())
    }

    /// The reasons `service` may be rejected with: the catalogue-wide ones, then its own.
    pub fn reject_reasons<'a>(
        &'a self,
        service: &'a Service,
    ) -> impl Iterator<Item = &'a RejectReason> {
        self.reject_reasons
            .iter()
            .chain(service.reject_reasons.iter())
    }

    pub fn agency(&self, code: &str) -> Option<&Agency> {
        self.agencies.iter().find(|a| a.code == code)
    }

    pub fn service(&self, code: &ServiceCode) -> Result<&Service, CatalogueError> {
        self.services
            .iter()
            .find(|s| &s.code == code)
            .ok_or_else(|| CatalogueError::UnknownService(code.to_string()))
    }

    /// Checks an application against its service: fields present and well-formed, the
    /// photo and documents it needs attached. Used at capture and again at HQ.
    pub fn check(&self, app: &Application) -> Result<(), CatalogueError> {
        let svc = self.service(&app.service)?;
        let known: BTreeMap<&str, &FieldSpec> =
            svc.fields.iter().map(|f| (f.name.as_str(), f)).collect();
        for (name, value) in &app.fields {
            let spec = known
                .get(name.as_str())
                .ok_or_else(|| CatalogueError::UnknownField(name.to_string()))?;
            spec.check_value(value.as_str())?;
        }
        for f in &svc.fields {
            if f.required && !app.fields.keys().any(|k| k.as_str() == f.name) {
                return Err(CatalogueError::MissingField {
                    field: f.name.clone(),
                    label: f.label.clone(),
                });
            }
        }
        let has_photo = app
            .attachments
            .iter()
            .any(|a| a.kind == AttachmentKind::IdPhoto);
        if svc.photo.as_ref().is_some_and(|p| p.required) && !has_photo {
            return Err(CatalogueError::MissingPhoto);
        }
        for a in &app.attachments {
            if let AttachmentKind::Document(d) = &a.kind {
                if !svc.documents.iter().any(|s| s.name == d.as_str()) {
                    return Err(CatalogueError::UnknownDocument(d.to_string()));
                }
            }
        }
        for d in svc.documents.iter().filter(|d| d.required) {
            let attached = app
                .attachments
                .iter()
                .any(|a| matches!(&a.kind, AttachmentKind::Document(n) if n.as_str() == d.name));
            if !attached {
                return Err(CatalogueError::MissingDocument(d.name.clone()));
            }
        }
        Ok(())
    }
}

impl FieldSpec {
    fn check_value(&self, v: &str) -> Result<(), CatalogueError> {
        let bad = |why: &str| CatalogueError::BadField {
            field: self.name.clone(),
            why: why.to_owned(),
        };
        match self.kind {
            FieldKind::Text => Ok(()),
            FieldKind::Digits16 => {
                if v.len() == 16 && v.bytes().all(|b| b.is_ascii_digit()) {
                    Ok(())
                } else {
                    Err(bad("harus 16 angka (must be 16 digits)"))
                }
            }
            FieldKind::Date => {
                let fmt = time::macros::format_description!("[year]-[month]-[day]");
                time::Date::parse(v, &fmt)
                    .map(|_| ())
                    .map_err(|_| bad("tanggal harus TTTT-BB-HH (date must be YYYY-MM-DD)"))
            }
            FieldKind::Choice => {
                if self.choices.iter().any(|c| c == v) {
                    Ok(())
                } else {
                    Err(bad(&format!(
                        "pilih salah satu: {} (choose one)",
                        self.choices.join(", ")
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of a city's one-stop service hall (`config/services-city.toml`): 200
    /// services from 13 agencies, every service's agency known, the starter services in it.
    #[test]
    fn the_city_example_catalogue_loads() {
        let text = include_str!("../../config/services-city.toml");
        let cat = Catalogue::from_toml(text).unwrap();
        assert_eq!(cat.services.len(), 200);
        assert_eq!(cat.agencies.len(), 13);
        for s in &cat.services {
            assert!(
                cat.agencies.iter().any(|a| a.code == s.agency),
                "{}",
                s.code
            );
        }
        for code in ["KIA", "KK_UPDATE", "SIM_RENEWAL", "KTP_EL"] {
            assert!(
                cat.service(&ServiceCode::parse(code).unwrap()).is_ok(),
                "{code}"
            );
        }
    }

    #[test]
    fn builtin_catalogue_parses_and_has_the_starter_services() {
        let c = Catalogue::from_toml(DEFAULT_CATALOGUE_TOML).unwrap();
        for code in ["KIA", "KK_UPDATE", "AKTA_LAHIR", "SIM_RENEWAL", "KTP_EL"] {
            c.service(&ServiceCode::parse(code).unwrap()).unwrap();
        }
        let ktp = c.service(&ServiceCode::parse("KTP_EL").unwrap()).unwrap();
        assert!(ktp.booking_only);
        let bg = ktp.photo.as_ref().unwrap().background;
        assert_eq!(bg.resolve(1991), Some(BackgroundColour::Red));
        assert_eq!(bg.resolve(1990), Some(BackgroundColour::Blue));
    }

    #[test]
    fn duplicate_codes_refused() {
        let t = format!("{DEFAULT_CATALOGUE_TOML}\n[[service]]\ncode = \"KIA\"\nname = \"x\"\nname_en = \"x\"\nagency = \"DUKCAPIL\"\n");
        assert!(matches!(
            Catalogue::from_toml(&t),
            Err(CatalogueError::Invalid(_))
        ));
    }

    #[test]
    fn services_belong_to_declared_agencies() {
        let c = Catalogue::builtin();
        assert!(c.agency("DUKCAPIL").is_some() && c.agency("POLRI").is_some());
        let sim = c
            .service(&ServiceCode::parse("SIM_RENEWAL").unwrap())
            .unwrap();
        assert_eq!(sim.agency, "POLRI");
        assert!(c.reject_reasons(sim).any(|r| r.code == "PHOTO_UNUSABLE"));
        assert!(c
            .reject_reasons(sim)
            .any(|r| r.code == "HEALTH_CERT_NEEDED"));
        let t = DEFAULT_CATALOGUE_TOML.replacen("agency = \"POLRI\"", "agency = \"NOPE\"", 1);
        assert!(matches!(
            Catalogue::from_toml(&t),
            Err(CatalogueError::Invalid(_))
        ));
    }
}
