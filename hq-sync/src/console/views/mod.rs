//! The console's pages, one module each; what they share (the layout's data, time and
//! NIK formatting, text that must be shown rather than obeyed) lives here.

mod audit;
mod blob;
mod detail;
mod fleet;
mod login;
pub mod queue;

use super::i18n::Tr;
use super::{assets, texts, Console};
use crate::staff::{Lang, Staff};
use askama::Template;
use axum::response::Redirect;
use axum::routing::{get, post};
use axum::Router;
use keliling_shared::UnixMillis;

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/applications") }))
        .route("/login", get(login::page).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/language", post(login::language))
        .route("/applications", get(queue::page))
        .route("/applications.csv", get(queue::export_csv))
        .route("/fleet", get(fleet::page))
        .route("/audit", get(audit::page))
        .route("/quarantine", get(audit::quarantine))
        .route("/applications/:bus/:id", get(detail::page))
        .route("/applications/:bus/:id/claim", post(detail::claim))
        .route("/applications/:bus/:id/release", post(detail::release))
        .route("/applications/:bus/:id/decide", post(detail::decide))
        .route("/applications/:bus/:id/check", post(detail::check))
        .route("/applications/:bus/:id/blobs/:sha", get(blob::serve))
        .route("/assets/:name", get(assets::serve))
}

/// The logged-in staff member, as the layout shows them.
pub struct Me {
    pub name: String,
    pub supervisor: bool,
    pub role_key: &'static str,
    pub lang: &'static str,
}

impl Me {
    pub fn of(s: &Staff) -> Me {
        Me {
            name: s.display_name.clone(),
            supervisor: s.is_supervisor(),
            role_key: match s.role {
                crate::staff::Role::Reviewer => "role-reviewer",
                crate::staff::Role::Supervisor => "role-supervisor",
            },
            lang: s.language.as_str(),
        }
    }
}

/// The texts in a staff member's language.
pub fn tr(lang: Lang) -> Option<Tr<'static>> {
    texts().map(|t| t.tr(lang))
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    t: Tr<'static>,
    en: Tr<'static>,
    key: &'static str,
}

/// An error page in both languages (there may be no session to say which).
pub fn error_page(key: &'static str) -> Option<String> {
    ErrorPage {
        t: tr(Lang::Id)?,
        en: tr(Lang::En)?,
        key,
    }
    .render()
    .ok()
}

/// Renders a page; a template error is an internal error, never a panic.
pub fn render(t: &impl Template) -> Result<axum::response::Html<String>, super::PageError> {
    t.render()
        .map(axum::response::Html)
        .map_err(|e| super::PageError::Internal(format!("template: {e}")))
}

/// HQ's local time (WIB by default), `YYYY-MM-DD HH:MM`.
pub fn when(t: UnixMillis, offset_minutes: i32) -> String {
    keliling_web::time::date_time(t, offset_minutes)
}

/// A NIK with its middle hidden (`5371 01•• •••• 0001`): enough to tell people apart in
/// a list, not enough to use. The full NIK is on the (audit-logged) detail page.
pub fn masked_nik(nik: &str) -> String {
    if nik.len() != 16 || !nik.is_ascii() {
        return "•".repeat(16);
    }
    format!("{} {}•• •••• {}", &nik[0..4], &nik[4..6], &nik[12..16])
}

/// Characters that change how text looks without being seen: direction overrides and
/// isolates, zero-width characters, other format characters. A name holding one may be
/// crafted to read as something else.
pub fn is_hidden_char(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{00AD}' | '\u{061C}' | '\u{180E}')
}

/// Whether text holds hidden characters ([`is_hidden_char`]).
pub fn suspicious(s: &str) -> bool {
    s.chars().any(is_hidden_char)
}

/// Text with every hidden character made visible as `⟨U+202E⟩`, so that what staff see is
/// what is stored. The templates escape the result like any other text.
pub fn shown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_hidden_char(c) {
            out.push_str(&format!("⟨U+{:04X}⟩", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_are_shown_and_flagged() {
        let evil = "Budi\u{202E}gnp.exe\u{200B}";
        assert!(suspicious(evil));
        assert_eq!(shown(evil), "Budi⟨U+202E⟩gnp.exe⟨U+200B⟩");
        assert!(!suspicious("Siti Nurhaliza"));
        assert_eq!(masked_nik("5371015203900001"), "5371 01•• •••• 0001");
        assert_eq!(when(UnixMillis(0), 7 * 60), "1970-01-01 07:00");
    }
}
