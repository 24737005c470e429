//! The station's pages, one module each; what they share (the layout with the sync
//! banner, times in the bus's zone, rendering) lives here.

mod amend;
mod find;
mod form;
mod login;
mod new;
mod photo;
mod receipt;
mod summary;
mod today;

use super::auth::OpSession;
use super::banner::BannerView;
use super::{texts, PageError, Station};
use askama::Template;
use axum::extract::{DefaultBodyLimit, Path};
use axum::response::{Html, Response};
use axum::routing::{get, post};
use axum::Router;
use keliling_shared::UnixMillis;
use keliling_web::assets::Asset;
use keliling_web::{Lang, Tr};

/// The largest upload: a camera file (the photo pipeline's own limit is checked after).
const MAX_UPLOAD: usize = 24 * 1024 * 1024;

pub fn routes() -> Router<Station> {
    Router::new()
        .route("/", get(today::page))
        .route("/status.json", get(today::status_json))
        .route("/login", get(login::page).post(login::submit))
        .route("/lock", post(login::lock))
        .route("/language", post(login::language))
        .route("/new", get(new::page).post(new::create))
        .route("/drafts/:id", get(form::page).post(form::autosave))
        .route("/drafts/:id/save", post(form::save))
        .route("/drafts/:id/discard", post(form::discard))
        .route(
            "/drafts/:id/photo",
            post(photo::upload).layer(DefaultBodyLimit::max(MAX_UPLOAD)),
        )
        .route("/drafts/:id/photo.jpg", get(photo::image))
        .route(
            "/drafts/:id/document",
            post(photo::document).layer(DefaultBodyLimit::max(MAX_UPLOAD)),
        )
        .route("/applications/:id/amend", post(amend::start))
        .route("/drafts/:id/approve", post(photo::approve))
        .route("/drafts/:id/retake", post(photo::retake))
        .route("/applications/:id", get(receipt::page))
        .route("/find", get(find::page).post(find::search))
        .route("/summary", get(summary::page))
        .route("/assets/:name", get(asset))
}

const ASSETS: &[Asset] = &[
    (
        "station.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../assets/station.css"),
    ),
    (
        "station.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../assets/station.js"),
    ),
    (
        "logo.svg",
        "image/svg+xml",
        include_bytes!("../../../assets/logo.svg"),
    ),
];

async fn asset(Path(name): Path<String>) -> Response {
    keliling_web::assets::serve(ASSETS, &name)
}

/// What the layout shows around every page of a signed-in operator.
pub struct Layout {
    pub t: Tr<'static>,
    pub operator: String,
    pub csrf: String,
    pub bus: String,
    pub banner: BannerView,
    /// Which tab is current: `today`, `new`, `find`.
    pub nav: &'static str,
    /// The path to come back to after switching the language.
    pub back: String,
}

impl Layout {
    /// Reads the banner's figures from the store.
    pub async fn of(
        st: &Station,
        s: &OpSession,
        nav: &'static str,
        back: String,
    ) -> Result<Layout, PageError> {
        let status = st.db(|store| store.status()).await?;
        Ok(Layout {
            t: tr(s.lang)?,
            operator: s.name.clone(),
            csrf: s.csrf.clone(),
            bus: st.bus_id().to_string(),
            banner: st.banner().view(&status),
            nav,
            back,
        })
    }

    /// "Connected to HQ" or "No signal: data is safe on the bus".
    pub fn banner_link(&self) -> String {
        self.t.get(if self.banner.online {
            "banner-online"
        } else {
            "banner-offline"
        })
    }

    /// What waits: "3 applications waiting · 180 KB · about 2 min to go".
    pub fn banner_waiting(&self) -> String {
        let b = &self.banner;
        if b.waiting == 0 {
            return self.t.get("banner-all-sent");
        }
        let mut s = format!(
            "{} · {}",
            self.t.n("banner-waiting", b.waiting),
            human_bytes(b.bytes_waiting)
        );
        if let Some(eta) = &b.eta_secs {
            s.push_str(" · ");
            s.push_str(&self.eta(eta));
        }
        s
    }

    pub fn other_lang(&self) -> &'static str {
        match self.t.lang() {
            "id" => "en",
            _ => "id",
        }
    }

    /// "about … to go", in the page's language.
    pub fn eta(&self, secs: &u64) -> String {
        let time = match *secs {
            s if s < 90 => self.t.n("duration-secs", s),
            s if s < 5400 => self.t.n("duration-mins", s.div_ceil(60)),
            s => self.t.n("duration-hours", s.div_ceil(3600)),
        };
        self.t.arg("banner-eta", "time", &time)
    }
}

pub fn human_bytes(b: u64) -> String {
    match b {
        b if b < 1000 => format!("{b} B"),
        b if b < 1_000_000 => format!("{} KB", b.div_ceil(1000)),
        b => format!("{:.1} MB", b as f64 / 1e6),
    }
}

/// The texts in a language.
pub fn tr(lang: Lang) -> Result<Tr<'static>, PageError> {
    texts()
        .map(|t| t.tr(lang))
        .ok_or_else(|| PageError::Internal("texts not loaded".into()))
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
    let t = texts()?;
    ErrorPage {
        t: t.tr(Lang::Id),
        en: t.tr(Lang::En),
        key,
    }
    .render()
    .ok()
}

/// Renders a page; a template error is an internal error, never a panic.
pub fn render(t: &impl Template) -> Result<Html<String>, PageError> {
    t.render()
        .map(Html)
        .map_err(|e| PageError::Internal(format!("template: {e}")))
}

/// The bus's local time, `HH:MM` today or `YYYY-MM-DD HH:MM`.
pub fn when(t: UnixMillis, offset_minutes: i32) -> String {
    keliling_web::time::short(t, offset_minutes)
}

/// The start of today in the bus's time zone.
pub fn start_of_today(offset_minutes: i32) -> UnixMillis {
    keliling_web::time::start_of_day(UnixMillis::now(), offset_minutes)
}

/// Parses a tracking number from a path.
pub fn app_id(s: &str) -> Result<keliling_shared::ApplicationId, PageError> {
    keliling_shared::ApplicationId::parse(s).map_err(|_| PageError::NotFound)
}
