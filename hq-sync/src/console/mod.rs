//! The HQ console: staff review what the buses sent, decide, and see the fleet.
//!
//! Served by `hq-sync console` as its own process (or inside `hq-sync run --console`):
//! it reads HQ's store and writes review data only (staff, sessions, claims, decisions,
//! the audit log). It holds no broker credentials and no signing key: decisions go into
//! the store's outbox, and ingest signs and sends them.
//!
//! One module per page under `views/`; security headers and the cross-origin check are
//! layers over every route (`security.rs`, `session.rs`); texts come from the Fluent
//! catalogues (`i18n.rs`); every asset is compiled in (`assets.rs`). Store work runs on
//! blocking threads through a connection pool (`keliling_shared::blocking::Pool`).

pub mod api;
pub mod assets;
pub mod session;
pub mod views;

pub use keliling_web::headers as security;
pub use keliling_web::i18n;
pub use keliling_web::serve::Transport;

/// The console's catalogues, Bahasa Indonesia first.
pub static CATALOGUES: [(crate::staff::Lang, &str); 2] = [
    (crate::staff::Lang::Id, include_str!("../../i18n/id.ftl")),
    (crate::staff::Lang::En, include_str!("../../i18n/en.ftl")),
];

use crate::config::{ConsoleConfig, HqConfig};
use crate::photos::Blobs;
use crate::staff::{SessionLimits, Staff};
use crate::store::HqStore;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Router;
use keliling_shared::blocking::{BlockingError, Pool};
use keliling_shared::{Catalogue, ServiceCode};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("console config: {0}")]
    Config(String),
    #[error("console texts: {0}")]
    Texts(#[from] i18n::I18nError),
    #[error("console cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("console TLS: {0}")]
    Tls(String),
    #[error("console stopped: {0}")]
    Serve(std::io::Error),
}

static TEXTS: OnceLock<i18n::I18n> = OnceLock::new();

/// The console's text catalogues (loaded and checked once, at [`Console::open`]).
pub fn texts() -> Option<&'static i18n::I18n> {
    TEXTS.get()
}

/// What every handler shares.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool<HqStore>,
    catalogue: Catalogue,
    blobs: Blobs,
    cfg: ConsoleConfig,
    heartbeat_secs: u64,
    secure_cookies: bool,
}

impl Console {
    /// Opens the store and checks the texts; nothing listens yet.
    pub fn open(cfg: &HqConfig) -> Result<Console, ConsoleError> {
        if TEXTS.get().is_none() {
            let t = i18n::I18n::new(&CATALOGUES)?;
            let _ = TEXTS.set(t);
        }
        let catalogue = cfg
            .catalogue()
            .map_err(|e| ConsoleError::Config(e.to_string()))?;
        let db = cfg
            .store_location()
            .map_err(|e| ConsoleError::Config(e.to_string()))?;
        // Opened once here, so that a bad path or a store from a newer build is an error
        // at start, not on the first request.
        HqStore::connect(&db, "hq-console").map_err(|e| ConsoleError::Config(e.to_string()))?;
        let blobs = Blobs::open(&cfg.photos_dir(), cfg.blobs_in_database())
            .map_err(|e| ConsoleError::Config(e.to_string()))?;
        let c = &cfg.console;
        Ok(Console {
            inner: Arc::new(Inner {
                pool: Pool::new(c.pool_size, move || HqStore::connect(&db, "hq-console")),
                catalogue,
                blobs,
                secure_cookies: c.tls_cert.is_some() || c.behind_tls_proxy,
                heartbeat_secs: cfg.fleet.heartbeat_secs,
                cfg: c.clone(),
            }),
        })
    }

    pub fn router(&self) -> Router {
        views::routes()
            .merge(api::routes())
            .layer(axum::middleware::from_fn(session::refuse_cross_origin))
            .layer(axum::middleware::from_fn_with_state(
                security::Policy::NOTHING,
                security::headers,
            ))
            .with_state(self.clone())
    }

    /// Runs `f` on a store connection on a blocking thread.
    pub async fn db<R, E>(
        &self,
        f: impl FnOnce(&mut HqStore) -> Result<R, E> + Send + 'static,
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

    pub fn limits(&self) -> SessionLimits {
        SessionLimits {
            idle: Duration::from_secs(self.inner.cfg.idle_timeout_mins.max(1) * 60),
            max_age: Duration::from_secs(self.inner.cfg.session_hours.max(1) * 3600),
        }
    }

    pub fn secure_cookies(&self) -> bool {
        self.inner.secure_cookies
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.inner.catalogue
    }

    /// Verified blobs, in the store or this machine's files.
    pub fn blobs(&self) -> &Blobs {
        &self.inner.blobs
    }

    /// The buses' heartbeat period (`[fleet] heartbeat_secs`): what "online" is measured by.
    pub fn fleet_heartbeat_secs(&self) -> u64 {
        self.inner.heartbeat_secs
    }

    pub fn config(&self) -> &ConsoleConfig {
        &self.inner.cfg
    }

    /// The services whose applications `staff` may see and decide: those of their
    /// agencies.
    pub fn visible_services(&self, staff: &Staff) -> Vec<ServiceCode> {
        self.inner
            .catalogue
            .services
            .iter()
            .filter(|s| staff.in_agency(&s.agency))
            .map(|s| s.code.clone())
            .collect()
    }

    /// Whether `staff` may see applications of `service`.
    pub fn may_see(&self, staff: &Staff, service: &str) -> bool {
        self.inner
            .catalogue
            .services
            .iter()
            .any(|s| s.code.as_str() == service && staff.in_agency(&s.agency))
    }
}

/// Why a page is not served. Rendered as a page in both languages (there may be no
/// session to say which); details go to the log, never to the browser.
#[derive(Debug)]
pub enum PageError {
    /// No session: to the login page.
    Login,
    NotFound,
    Forbidden,
    /// A form without the session's CSRF token.
    Csrf,
    BadRequest(String),
    Internal(String),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, key) = match &self {
            PageError::Login => return Redirect::to("/login").into_response(),
            PageError::NotFound => (StatusCode::NOT_FOUND, "error-not-found"),
            PageError::Forbidden => (StatusCode::FORBIDDEN, "error-forbidden"),
            PageError::Csrf => (StatusCode::FORBIDDEN, "error-csrf"),
            PageError::BadRequest(why) => {
                tracing::info!(%why, "console: bad request");
                (StatusCode::BAD_REQUEST, "error-bad-request")
            }
            PageError::Internal(why) => {
                tracing::error!(%why, "console: internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "error-internal")
            }
        };
        match views::error_page(key) {
            Some(html) => (status, Html(html)).into_response(),
            None => (status, key).into_response(),
        }
    }
}

/// A console bound to its address, ready to serve.
pub struct Server {
    console: Console,
    bound: keliling_web::serve::Bound,
}

impl Server {
    /// Binds `[console] listen`. Anything but loopback needs TLS (`tls_cert`/`tls_key`)
    /// or `behind_tls_proxy`: staff passwords and citizens' data never cross a network
    /// in clear.
    pub async fn bind(cfg: &HqConfig) -> Result<Server, ConsoleError> {
        let c = &cfg.console;
        let tls = match (&c.tls_cert, &c.tls_key) {
            (Some(cert), Some(key)) => Some(
                keliling_web::serve::tls_acceptor(cert, key)
                    .map_err(|e| ConsoleError::Tls(e.to_string()))?,
            ),
            (None, None) => None,
            _ => {
                return Err(ConsoleError::Config(
                    "[console] tls_cert and tls_key go together".into(),
                ))
            }
        };
        if !c.listen.ip().is_loopback() && tls.is_none() && !c.behind_tls_proxy {
            return Err(ConsoleError::Config(format!(
                "[console] listen = {} is not loopback: set tls_cert and tls_key, or behind_tls_proxy = true when a TLS reverse proxy is in front",
                c.listen
            )));
        }
        let console = Console::open(cfg)?;
        let bound = keliling_web::serve::Bound::bind(c.listen, tls)
            .await
            .map_err(|source| ConsoleError::Listen {
                addr: c.listen,
                source,
            })?;
        Ok(Server { console, bound })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.bound.local_addr()
    }

    /// The URL staff open.
    pub fn url(&self) -> String {
        self.bound.url()
    }

    /// Serves until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), ConsoleError> {
        let app = self.console.router();
        let sweeper = tokio::spawn(sweep_sessions(self.console.clone(), shutdown.clone()));
        tracing::info!(url = %self.url(), "console listening");
        let r = self.bound.serve(app, shutdown).await.map_err(|e| match e {
            keliling_web::serve::ServeError::Io(e) => ConsoleError::Serve(e),
            other => ConsoleError::Tls(other.to_string()),
        });
        sweeper.abort();
        r
    }
}

/// Removes expired sessions every ten minutes.
async fn sweep_sessions(c: Console, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => return,
        }
        let limits = c.limits();
        if let Err(e) = c
            .db(move |s| s.sweep_sessions(limits, keliling_shared::UnixMillis::now()))
            .await
        {
            tracing::warn!(?e, "cannot sweep expired sessions");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogues_agree_and_hold_every_key_a_template_uses() {
        let i = i18n::I18n::new(&CATALOGUES).unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let problems = i18n::check_catalogues(&i, &dir);
        assert!(problems.is_empty(), "{problems:#?}");
        assert_eq!(i.tr(crate::staff::Lang::Id).get("login-title"), "Masuk");
        assert_eq!(i.tr(crate::staff::Lang::En).get("login-title"), "Sign in");
    }
}
