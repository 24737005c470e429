//! The bus station: the operator's screen, served by `bus-node run` on the bus's own
//! network (a tablet's browser, or the laptop itself).
//!
//! It shares the daemon's unlocked vault (drafts and lookups need the secret key) and
//! its store (through a connection pool, on blocking threads). It writes what the CLI's
//! `capture` writes, through the same [`crate::capture::capture`], plus drafts.
//!
//! One module per page under `views/`; operators' sessions in `auth.rs` (in memory: a
//! restart asks for the passphrase anyway, and PINs again); field checks as the operator
//! types in `check.rs`; the sync banner in `banner.rs`. Texts come from the station's
//! Fluent catalogues (`bus-node/i18n/`), security headers and the cross-origin check are
//! layers over every route, and every asset is compiled in (`keliling_web`).

pub mod auth;
pub mod banner;
pub mod check;
pub mod views;

use crate::capture::CaptureSettings;
use crate::catalogues::Catalogues;
use crate::config::{BusConfig, StationConfig};
use crate::store::Store;
use crate::sync::SyncMetrics;
use crate::vault::{IndexKey, UnlockedVault};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Router;
use keliling_shared::blocking::{BlockingError, Pool};
use keliling_shared::{BusId, Catalogue};
use keliling_web::i18n::{self, I18n, Lang};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use tokio::sync::watch;

/// The station's catalogues, Bahasa Indonesia first.
pub static CATALOGUES: [(Lang, &str); 2] = [
    (Lang::Id, include_str!("../../i18n/id.ftl")),
    (Lang::En, include_str!("../../i18n/en.ftl")),
];

static TEXTS: OnceLock<I18n> = OnceLock::new();

/// The station's texts (loaded and checked once, at [`Station::new`]).
pub fn texts() -> Option<&'static I18n> {
    TEXTS.get()
}

#[derive(Debug, thiserror::Error)]
pub enum StationError {
    #[error("[station] {0}")]
    Config(String),
    #[error("station texts: {0}")]
    Texts(#[from] i18n::I18nError),
    #[error("station cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("station: {0}")]
    Serve(#[from] keliling_web::serve::ServeError),
}

/// What every handler shares.
#[derive(Clone)]
pub struct Station {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool<Store>,
    vault: Arc<UnlockedVault>,
    index_key: Arc<IndexKey>,
    /// The catalogue in use: HQ's newer ones replace it while the station runs.
    catalogues: Arc<Catalogues>,
    settings: CaptureSettings,
    bus_id: BusId,
    cfg: StationConfig,
    secure_cookies: bool,
    sessions: auth::Sessions,
    banner: banner::Banner,
    /// The village of the stop, as the last saved application named it: new drafts
    /// start with it.
    village: std::sync::Mutex<String>,
}

impl Station {
    pub fn new(
        cfg: &BusConfig,
        vault: Arc<UnlockedVault>,
        metrics: Arc<SyncMetrics>,
        catalogues: Arc<Catalogues>,
    ) -> Result<Station, StationError> {
        if TEXTS.get().is_none() {
            let _ = TEXTS.set(I18n::new(&CATALOGUES)?);
        }
        let db = cfg.db_path();
        let index_key = Arc::new(vault.index_key());
        Ok(Station {
            inner: Arc::new(Inner {
                pool: Pool::new(4, move || Store::open(&db)),
                index_key,
                vault,
                catalogues,
                settings: cfg.capture_settings(),
                bus_id: cfg.bus_id.clone(),
                secure_cookies: cfg.station.tls_cert.is_some(),
                sessions: auth::Sessions::default(),
                banner: banner::Banner::new(metrics),
                village: std::sync::Mutex::new(String::new()),
                cfg: cfg.station.clone(),
            }),
        })
    }

    pub fn router(&self) -> Router {
        views::routes()
            .layer(axum::middleware::from_fn(
                keliling_web::cookies::refuse_cross_origin,
            ))
            .layer(axum::middleware::from_fn_with_state(
                keliling_web::headers::Policy {
                    // The form saves itself and the banner follows the sync: to the
                    // station only.
                    csp: keliling_web::headers::PAGE_CSP_CONNECT,
                    // The live camera preview, from the station's own pages only.
                    permissions: "camera=(self), microphone=(), geolocation=()",
                },
                keliling_web::headers::headers,
            ))
            .with_state(self.clone())
    }

    /// Runs `f` on a store connection on a blocking thread.
    pub async fn db<R, E>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, E> + Send + 'static,
    ) -> Result<R, PageError>
    where
        R: Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        self.inner.pool.run(f).await.map_err(|e| match e {
            BlockingError::Work(e) => PageError::Internal(e.to_string()),
            other => PageError::Internal(other.to_string()),
        })
    }

    pub fn vault(&self) -> Arc<UnlockedVault> {
        self.inner.vault.clone()
    }

    pub fn index_key(&self) -> Arc<IndexKey> {
        self.inner.index_key.clone()
    }

    /// The service catalogue in use now (a page keeps the one it started with).
    pub fn catalogue(&self) -> Arc<Catalogue> {
        self.inner.catalogues.current()
    }

    pub fn settings(&self) -> &CaptureSettings {
        &self.inner.settings
    }

    pub fn bus_id(&self) -> &BusId {
        &self.inner.bus_id
    }

    pub fn config(&self) -> &StationConfig {
        &self.inner.cfg
    }

    pub fn secure_cookies(&self) -> bool {
        self.inner.secure_cookies
    }

    pub fn sessions(&self) -> &auth::Sessions {
        &self.inner.sessions
    }

    pub fn banner(&self) -> &banner::Banner {
        &self.inner.banner
    }

    /// The stop's village, as the last saved application named it.
    pub fn village(&self) -> String {
        self.inner
            .village
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    pub fn set_village(&self, v: &str) {
        if let Ok(mut g) = self.inner.village.lock() {
            v.clone_into(&mut g);
        }
    }
}

/// Why a page is not served. Rendered as a page in both languages; details go to the
/// log, never to the browser.
#[derive(Debug)]
pub enum PageError {
    /// No session, or the station locked itself: to the PIN screen.
    Login,
    NotFound,
    Csrf,
    BadRequest(String),
    Internal(String),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, key) = match &self {
            PageError::Login => return Redirect::to("/login").into_response(),
            PageError::NotFound => (StatusCode::NOT_FOUND, "error-not-found"),
            PageError::Csrf => (StatusCode::FORBIDDEN, "error-csrf"),
            PageError::BadRequest(why) => {
                tracing::info!(%why, "station: bad request");
                (StatusCode::BAD_REQUEST, "error-bad-request")
            }
            PageError::Internal(why) => {
                tracing::error!(%why, "station: internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "error-internal")
            }
        };
        match views::error_page(key) {
            Some(html) => (status, Html(html)).into_response(),
            None => (status, key).into_response(),
        }
    }
}

/// Whether `ip` is on a network that stays on the bus: loopback, private (RFC 1918, IPv6
/// unique local) or link-local. Anything else would serve the station beyond the bus.
pub fn is_bus_network(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Checks `[station]`: a public or unspecified address is refused; a private one needs
/// TLS, or `allow_plain_http` (which is warned about).
pub fn check_config(c: &StationConfig) -> Result<(), StationError> {
    let ip = c.listen.ip();
    if ip.is_unspecified() || !is_bus_network(ip) {
        return Err(StationError::Config(format!(
            "listen = {} bukan alamat jaringan bus: pakai 127.0.0.1 atau alamat privat \
             (is not on the bus's network: use loopback or a private address such as 192.168.x.y; \
             the station is never served beyond the bus)",
            c.listen
        )));
    }
    match (&c.tls_cert, &c.tls_key) {
        (Some(_), Some(_)) | (None, None) => {}
        _ => {
            return Err(StationError::Config(
                "tls_cert and tls_key go together".into(),
            ))
        }
    }
    if !ip.is_loopback() && c.tls_cert.is_none() && !c.allow_plain_http {
        return Err(StationError::Config(format!(
            "listen = {} is not loopback: set tls_cert and tls_key (`hq-sync pki station-cert`), \
             or allow_plain_http = true on a private network you trust",
            c.listen
        )));
    }
    Ok(())
}

/// A station bound to its address, ready to serve.
pub struct Server {
    station: Station,
    bound: keliling_web::serve::Bound,
}

impl Server {
    pub async fn bind(
        cfg: &BusConfig,
        vault: Arc<UnlockedVault>,
        metrics: Arc<SyncMetrics>,
        catalogues: Arc<Catalogues>,
    ) -> Result<Server, StationError> {
        let c = &cfg.station;
        check_config(c)?;
        let tls = match (&c.tls_cert, &c.tls_key) {
            (Some(cert), Some(key)) => Some(keliling_web::serve::tls_acceptor(cert, key)?),
            _ => None,
        };
        if tls.is_none() && !c.listen.ip().is_loopback() {
            tracing::warn!(listen = %c.listen, "station on plain HTTP: PINs and citizens' data cross the bus network in clear, and tablets get no live camera; use a station certificate");
        }
        let station = Station::new(cfg, vault, metrics, catalogues)?;
        let bound = keliling_web::serve::Bound::bind(c.listen, tls)
            .await
            .map_err(|source| StationError::Listen {
                addr: c.listen,
                source,
            })?;
        Ok(Server { station, bound })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.bound.local_addr()
    }

    /// The URL operators open.
    pub fn url(&self) -> String {
        self.bound.url()
    }

    /// Serves until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), StationError> {
        let app = self.station.router();
        let sampler = tokio::spawn(banner::sample(self.station.clone(), shutdown.clone()));
        tracing::info!(url = %self.url(), "station listening");
        let r = self.bound.serve(app, shutdown).await;
        sampler.abort();
        Ok(r?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogues_agree_and_hold_every_key_a_template_uses() {
        let i = I18n::new(&CATALOGUES).unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let problems = i18n::check_catalogues(&i, &dir);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn the_station_is_never_served_beyond_the_bus() {
        let mut c = StationConfig::default();
        assert!(check_config(&c).is_ok());
        for public in ["8.8.8.8:80", "0.0.0.0:8090", "[2001:db8::1]:80", "[::]:80"] {
            c.listen = public.parse().unwrap();
            assert!(check_config(&c).is_err(), "{public}");
        }
        c.listen = "192.168.4.1:8090".parse().unwrap();
        assert!(
            check_config(&c).is_err(),
            "private needs TLS or allow_plain_http"
        );
        c.allow_plain_http = true;
        assert!(check_config(&c).is_ok());
        c.listen = "[fd00::1]:8090".parse().unwrap();
        assert!(check_config(&c).is_ok());
    }
}
