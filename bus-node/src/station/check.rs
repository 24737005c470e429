//! Checking a draft as the operator types: the same parsers as the CLI and the save
//! (`Nik::parse`, the date format, `Sex`, `Phone`, `Text`, the catalogue's field checks),
//! with each problem as a text key of the station's catalogue, so it reads in the
//! operator's language and says what to fix.

use crate::drafts::DraftForm;
use keliling_shared::application::Phone;
use keliling_shared::catalogue::FieldKind;
use keliling_shared::{Nik, NikError, NikWarning, Service, Sex, Text};

/// One thing to fix, on one field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The form field's name (`nik`, `date_of_birth`, `f.kk_number`, …).
    pub field: String,
    /// The text key (`nik-length`, …).
    pub key: &'static str,
    /// The text's arguments.
    pub args: Vec<(&'static str, String)>,
}

/// What the form says now: problems that block saving, warnings that do not.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

fn p(field: &str, key: &'static str) -> Problem {
    Problem {
        field: field.to_owned(),
        key,
        args: Vec::new(),
    }
}

fn with(mut pr: Problem, name: &'static str, v: impl ToString) -> Problem {
    pr.args.push((name, v.to_string()));
    pr
}

/// The date format of every date field.
pub fn parse_date(s: &str) -> Option<time::Date> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s.trim(), &fmt).ok()
}

/// Checks `f` for `svc`. Empty fields the operator has not reached yet are problems too
/// (`required`): the page shows those only once the operator tries to save.
pub fn check(f: &DraftForm, svc: &Service) -> Checked {
    let mut c = Checked::default();
    let text = |c: &mut Checked, field: &str, v: &str| {
        if Text::parse(v).is_err() {
            c.problems.push(p(
                field,
                if v.trim().is_empty() {
                    "required"
                } else {
                    "text-bad"
                },
            ));
        }
    };
    text(&mut c, "village", &f.village);
    text(&mut c, "full_name", &f.full_name);
    text(&mut c, "address", &f.address);
    let nik = match Nik::parse(&f.nik) {
        Ok(n) => Some(n),
        Err(e) => {
            let field = "nik";
            c.problems.push(match e {
                _ if f.nik.trim().is_empty() => p(field, "required"),
                NikError::Length(n) => with(p(field, "nik-length"), "n", n),
                NikError::NotDigits => p(field, "nik-digits"),
                NikError::Province(code) => {
                    with(p(field, "nik-province"), "code", format!("{code:02}"))
                }
                NikError::Region => p(field, "nik-region"),
                NikError::BirthDate(_) => p(field, "nik-birth"),
                NikError::Serial => p(field, "nik-serial"),
            });
            None
        }
    };
    let dob = parse_date(&f.date_of_birth);
    if dob.is_none() {
        c.problems.push(p(
            "date_of_birth",
            if f.date_of_birth.trim().is_empty() {
                "required"
            } else {
                "date-bad"
            },
        ));
    }
    if let Some(d) = dob {
        if d > time::OffsetDateTime::now_utc().date() {
            c.problems.push(p("date_of_birth", "date-future"));
        }
    }
    let sex = Sex::parse(&f.sex);
    if sex.is_none() {
        c.problems.push(p("sex", "required"));
    }
    if !f.phone.trim().is_empty() && Phone::parse(&f.phone).is_err() {
        c.problems.push(p("phone", "phone-bad"));
    }
    if let (Some(nik), Some(dob), Some(sex)) = (&nik, dob, sex) {
        for w in nik.check_against(dob, sex) {
            c.warnings.push(match w {
                NikWarning::BirthDateMismatch {
                    nik_day,
                    nik_month,
                    nik_year2,
                } => with(
                    p("nik", "nik-warn-birth"),
                    "date",
                    format!("{nik_day:02}-{nik_month:02}-..{nik_year2:02}"),
                ),
                NikWarning::SexMismatch { .. } => p("nik", "nik-warn-sex"),
            });
        }
    }
    for spec in &svc.fields {
        let name = format!("f.{}", spec.name);
        let v = f.fields.get(&spec.name).map(|s| s.trim()).unwrap_or("");
        if v.is_empty() {
            if spec.required {
                c.problems.push(p(&name, "required"));
            }
            continue;
        }
        let bad = match spec.kind {
            FieldKind::Text => Text::parse(v).is_err().then_some("text-bad"),
            FieldKind::Digits16 => (!(v.len() == 16 && v.bytes().all(|b| b.is_ascii_digit())))
                .then_some("digits16-bad"),
            FieldKind::Date => parse_date(v).is_none().then_some("date-bad"),
            FieldKind::Choice => (!spec.choices.iter().any(|c| c == v)).then_some("choice-bad"),
        };
        if let Some(key) = bad {
            c.problems.push(p(&name, key));
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> Service {
        let cat = keliling_shared::Catalogue::builtin();
        cat.service(&keliling_shared::ServiceCode::parse("KIA").unwrap())
            .unwrap()
            .clone()
    }

    #[test]
    fn each_problem_names_its_field_and_what_to_fix() {
        let mut f = DraftForm {
            village: "Oelamasi".into(),
            full_name: "Rina".into(),
            nik: "53710144039".into(),
            date_of_birth: "2020-03-04".into(),
            sex: "P".into(),
            address: "Jl. Timor Raya".into(),
            ..DraftForm::default()
        };
        let c = check(&f, &svc());
        let nik = c.problems.iter().find(|p| p.field == "nik").unwrap();
        assert_eq!(nik.key, "nik-length");
        assert_eq!(nik.args, vec![("n", "11".to_owned())]);
        f.nik = "5371014403900001".into();
        let c = check(&f, &svc());
        assert!(c.problems.iter().all(|p| p.field != "nik"));
        assert!(
            c.warnings.iter().any(|w| w.key == "nik-warn-birth"),
            "the NIK says 1990, the form 2020: kept, with a warning"
        );
    }
}
