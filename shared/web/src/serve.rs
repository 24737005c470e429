//! Serving a router over plain HTTP or TLS 1.3 until shutdown.
//!
//! TLS is terminated here (rustls, the fleet's one crypto provider), one HTTP/1.1
//! connection per task; a failed handshake or a slow client costs its own task only, and
//! accept errors (out of file descriptors) wait instead of spinning or dying.

use axum::Router;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Whether the request came over TLS (set by the TLS accept loop; absent on plain HTTP).
#[derive(Debug, Clone, Copy)]
pub struct Transport {
    pub tls: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS: {0}")]
    Tls(String),
    #[error("server stopped: {0}")]
    Io(#[from] std::io::Error),
}

/// A TLS 1.3 acceptor for the certificate chain and key in these PEM files.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    use keliling_shared::tls;
    let tls_err = |e: &dyn std::fmt::Display| ServeError::Tls(e.to_string());
    let certs = tls::load_certs(cert, "web certificate").map_err(|e| tls_err(&e))?;
    let key = tls::load_key(key).map_err(|e| tls_err(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_err(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A site bound to its address: plain HTTP, or TLS when it has an acceptor.
pub struct Bound {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Bound {
    pub async fn bind(
        addr: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<Bound> {
        Ok(Bound {
            listener: TcpListener::bind(addr).await?,
            tls,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The URL people open.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        match self.local_addr() {
            Some(a) => format!("{scheme}://{a}/"),
            None => format!("{scheme}://?/"),
        }
    }

    /// Serves `app` until `shutdown`.
    pub async fn serve(
        self,
        app: Router,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), ServeError> {
        serve(self.listener, self.tls, app, shutdown).await
    }
}

/// Returns once `shutdown` is true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Serves `app` on `listener`, over TLS when an acceptor is given, until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    match tls {
        None => axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stopped(&mut shutdown).await })
        .await
        .map_err(ServeError::Io),
        Some(acceptor) => serve_tls(listener, acceptor, app, shutdown).await,
    }
}

async fn serve_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    use hyper_util::rt::TokioIo;
    use tower::ServiceExt;
    loop {
        let (tcp, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, %addr, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(addr));
                    req.extensions_mut().insert(Transport { tls: true });
                    app.clone().oneshot(req)
                },
            );
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .await
            {
                tracing::debug!(error = %e, %addr, "connection ended");
            }
        });
    }
}
