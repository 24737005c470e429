//! The NIK (Nomor Induk Kependudukan): Indonesia's 16-digit population number.
//!
//! Layout: `PP RR DD dd mm yy SSSS`: province, regency/city and district codes where the
//! number was issued; birth day (plus 40 for women), month and two-digit year; a serial
//! from 0001. A NIK is never corrected after issue, so a NIK whose encoded birth date or
//! sex disagrees with what the citizen states is *kept* with a [`NikWarning`] that both
//! the operator and HQ see; only a NIK that cannot be a NIK at all is refused.

use crate::application::Sex;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Province codes in use (Kemendagri), including the Papua provinces formed in 2022.
const PROVINCES: &[u8] = &[
    11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 31, 32, 33, 34, 35, 36, 51, 52, 53, 61, 62, 63, 64, 65,
    71, 72, 73, 74, 75, 76, 81, 82, 91, 92, 93, 94, 95, 96, 97,
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NikError {
    #[error("NIK harus 16 angka, tertulis {0} angka (a NIK has 16 digits, this has {0})")]
    Length(usize),
    #[error("NIK hanya boleh berisi angka (a NIK holds digits only)")]
    NotDigits,
    #[error("kode provinsi {0:02} pada NIK tidak dikenal (unknown province code {0:02})")]
    Province(u8),
    #[error(
        "kode kabupaten/kota atau kecamatan 00 pada NIK tidak sah (regency or district code 00)"
    )]
    Region,
    #[error(
        "tanggal lahir pada NIK tidak sah: {0} (the birth date in the NIK is impossible: {0})"
    )]
    BirthDate(String),
    #[error("nomor urut 0000 pada NIK tidak sah (serial 0000)")]
    Serial,
}

/// What a valid NIK says that disagrees with the citizen's stated data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NikWarning {
    /// The NIK encodes another birth date than the one stated.
    BirthDateMismatch {
        nik_day: u8,
        nik_month: u8,
        nik_year2: u8,
    },
    /// The NIK encodes the other sex.
    SexMismatch { nik_sex: Sex },
}

impl fmt::Display for NikWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NikWarning::BirthDateMismatch { nik_day, nik_month, nik_year2 } => write!(
                f,
                "tanggal lahir pada NIK ({nik_day:02}-{nik_month:02}-..{nik_year2:02}) berbeda dengan yang dinyatakan; NIK disimpan apa adanya (the NIK's birth date differs from the stated one; kept as issued)"
            ),
            NikWarning::SexMismatch { nik_sex } => write!(
                f,
                "jenis kelamin pada NIK ({}) berbeda dengan yang dinyatakan; NIK disimpan apa adanya (the NIK's sex differs from the stated one; kept as issued)",
                nik_sex.label_id()
            ),
        }
    }
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Nik(String);

impl Nik {
    pub fn parse(s: &str) -> Result<Self, NikError> {
        let s = s.trim();
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NikError::NotDigits);
        }
        if s.len() != 16 {
            return Err(NikError::Length(s.len()));
        }
        let d = |i: usize| -> u8 { (s.as_bytes()[i] - b'0') * 10 + (s.as_bytes()[i + 1] - b'0') };
        let province = d(0);
        if !PROVINCES.contains(&province) {
            return Err(NikError::Province(province));
        }
        if d(2) == 0 || d(4) == 0 {
            return Err(NikError::Region);
        }
        let (day_raw, month, year2) = (d(6), d(8), d(10));
        let day = if day_raw > 40 { day_raw - 40 } else { day_raw };
        if !(1..=12).contains(&month) {
            return Err(NikError::BirthDate(format!("bulan {month:02}")));
        }
        // The century is not encoded: accept a day that exists in either 19yy or 20yy
        // (29 February needs a leap year in one of them).
        let exists = [1900i32, 2000].iter().any(|c| {
            time::Month::try_from(month)
                .ok()
                .and_then(|m| time::Date::from_calendar_date(c + i32::from(year2), m, day).ok())
                .is_some()
        });
        if day == 0 || !exists {
            return Err(NikError::BirthDate(format!("hari {day_raw:02}")));
        }
        if &s[12..16] == "0000" {
            return Err(NikError::Serial);
        }
        Ok(Nik(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
    fn two(&self, i: usize) -> u8 {
        let b = self.0.as_bytes();
        (b[i] - b'0') * 10 + (b[i + 1] - b'0')
    }
    pub fn province(&self) -> u8 {
        self.two(0)
    }
    pub fn regency(&self) -> u8 {
        self.two(2)
    }
    pub fn district(&self) -> u8 {
        self.two(4)
    }
    pub fn sex(&self) -> Sex {
        if self.two(6) > 40 {
            Sex::Female
        } else {
            Sex::Male
        }
    }
    /// Day, month and two-digit year of birth as encoded.
    pub fn birth(&self) -> (u8, u8, u8) {
        let day = self.two(6);
        (
            if day > 40 { day - 40 } else { day },
            self.two(8),
            self.two(10),
        )
    }
    pub fn serial(&self) -> u16 {
        self.0[12..16].parse().unwrap_or(0)
    }
    /// Masked for receipts and logs: the region and serial digits hidden.
    pub fn masked(&self) -> String {
        format!("{}**********{}", &self.0[..2], &self.0[12..])
    }

    /// Compares what the NIK encodes with what the citizen states.
    pub fn check_against(&self, date_of_birth: time::Date, sex: Sex) -> Vec<NikWarning> {
        let mut w = Vec::new();
        let (d, m, y) = self.birth();
        let stated = (
            date_of_birth.day(),
            u8::from(date_of_birth.month()),
            (date_of_birth.year().rem_euclid(100)) as u8,
        );
        if (d, m, y) != stated {
            w.push(NikWarning::BirthDateMismatch {
                nik_day: d,
                nik_month: m,
                nik_year2: y,
            });
        }
        if self.sex() != sex {
            w.push(NikWarning::SexMismatch {
                nik_sex: self.sex(),
            });
        }
        w
    }
}

impl TryFrom<String> for Nik {
    type Error = NikError;
    fn try_from(s: String) -> Result<Self, NikError> {
        Nik::parse(&s).map_err(crate::de_error::note)
    }
}
impl From<Nik> for String {
    fn from(n: Nik) -> String {
        n.0
    }
}
impl fmt::Display for Nik {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
/// Debug output is masked: a NIK is personal data and must not leak into logs by `{:?}`.
impl fmt::Debug for Nik {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nik({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn parses_a_woman_born_1990() {
        // Kupang (53 71), district 01; 12 March 1990 + 40; serial 0001.
        let n = Nik::parse("5371015203900001").unwrap();
        assert_eq!((n.province(), n.regency(), n.district()), (53, 71, 1));
        assert_eq!(n.sex(), Sex::Female);
        assert_eq!(n.birth(), (12, 3, 90));
        assert_eq!(n.serial(), 1);
        assert!(n
            .check_against(date!(1990 - 03 - 12), Sex::Female)
            .is_empty());
        assert_eq!(format!("{n:?}"), "Nik(53**********0001)");
    }

    #[test]
    fn refuses_what_cannot_be_a_nik() {
        assert_eq!(Nik::parse("537101520390000"), Err(NikError::Length(15)));
        assert_eq!(Nik::parse("53710152039000a1"), Err(NikError::NotDigits));
        assert_eq!(Nik::parse("9971015203900001"), Err(NikError::Province(99)));
        assert_eq!(Nik::parse("5300015203900001"), Err(NikError::Region));
        assert!(matches!(
            Nik::parse("5371013203900001"),
            Err(NikError::BirthDate(_))
        )); // day 32
        assert!(matches!(
            Nik::parse("5371017203900001"),
            Err(NikError::BirthDate(_))
        )); // day 72
        assert!(matches!(
            Nik::parse("5371011213900001"),
            Err(NikError::BirthDate(_))
        )); // month 13
        assert!(matches!(
            Nik::parse("5371013002900001"),
            Err(NikError::BirthDate(_))
        )); // 30 Feb
        assert!(Nik::parse("5371012902000001").is_ok()); // 29 Feb 2000
        assert_eq!(Nik::parse("5371015203900000"), Err(NikError::Serial));
    }

    #[test]
    fn mismatch_is_kept_with_warnings() {
        let n = Nik::parse("5371011203900001").unwrap(); // male, 12-03-90
        let w = n.check_against(date!(1991 - 03 - 12), Sex::Female);
        assert_eq!(w.len(), 2);
        assert!(w[0].to_string().contains("NIK"));
    }
}
