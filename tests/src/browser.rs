//! Headless Chromium for the console's browser tests: Debian's `chromium` driven through
//! `chromedriver` (package `chromium-driver`) over WebDriver, with fantoccini. Never a
//! downloaded browser. Outside CI a missing browser skips the test (it says so); in CI
//! it is an error, as for Mosquitto.

use crate::ports::free_port;
use anyhow::{anyhow, bail, Context, Result};
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const CHROMIUM: &[&str] = &["/usr/bin/chromium", "/usr/lib/chromium/chromium"];
const DRIVER: &[&str] = &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];

fn first_existing(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.is_file())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Where the browser tests keep their screenshots: `KELILING_SCREENSHOTS`, else
/// `target/screenshots` of the workspace.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("KELILING_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
                .join("screenshots")
        })
}

pub struct Browser {
    driver: Child,
    pub client: Client,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium session.
    /// `Ok(None)` when Chromium is missing outside CI.
    pub async fn start() -> Result<Option<Browser>> {
        let (Some(chromium), Some(driver)) = (first_existing(CHROMIUM), first_existing(DRIVER))
        else {
            if in_ci() {
                bail!("chromium and chromium-driver are required in CI (apt-get install -y chromium chromium-driver)");
            }
            eprintln!("SKIPPED: chromium or chromedriver is not installed (apt-get install -y chromium chromium-driver)");
            return Ok(None);
        };
        let port = free_port()?;
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", driver.display()))?;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                // No background traffic: CI's network is closed, and Chromium's own
                // connections would be refused many at a time.
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1366,900", "--hide-scrollbars", "--lang=id-ID",
                    "--no-first-run", "--disable-extensions", "--disable-quic",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-default-apps",
                    // A synthetic camera (the bus station's live preview), allowed
                    // without a prompt; pages whose policy forbids the camera still
                    // get none.
                    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"
                ]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if started.elapsed() < Duration::from_secs(20) => {
                    tracing::debug!(error = %e, "chromedriver not ready yet");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(anyhow!("cannot start a Chromium session: {e}")),
            }
        };
        Ok(Some(Browser {
            driver: child,
            client,
        }))
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("opening {url}"))
    }

    /// The visible text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> Result<String> {
        Ok(self
            .client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("finding {css}"))?
            .text()
            .await?)
    }

    /// The whole page's source as the browser holds it.
    pub async fn source(&self) -> Result<String> {
        Ok(self.client.source().await?)
    }

    pub async fn fill(&self, css: &str, value: &str) -> Result<()> {
        let el = self
            .client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("finding {css}"))?;
        el.clear().await?;
        el.send_keys(value).await?;
        Ok(())
    }

    pub async fn click(&self, css: &str) -> Result<()> {
        self.client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("finding {css}"))?
            .click()
            .await?;
        Ok(())
    }

    /// Waits up to 10 s for an element matching `css`. On failure the error says where
    /// the browser is and what the page says.
    pub async fn wait_for(&self, css: &str) -> Result<()> {
        let found = self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await;
        if let Err(e) = found {
            let url = self
                .client
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            let text = match self.client.find(Locator::Css("body")).await {
                Ok(b) => b.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let text: String = text.chars().take(1500).collect();
            bail!("waiting for {css}: {e}; at {url}, the page says:\n{text}");
        }
        Ok(())
    }

    /// Saves a PNG of the viewport as `{screenshot_dir}/{name}.png`.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Like [`Browser::screenshot`], of the whole page: the window grows to the page's
    /// height for the shot, then returns to its size.
    pub async fn screenshot_full(&self, name: &str) -> Result<PathBuf> {
        let (w, h) = self.client.get_window_size().await?;
        let height = self
            .js("return Math.ceil(document.documentElement.scrollHeight)")
            .await?
            .as_u64()
            .unwrap_or(h)
            .clamp(600, 4000);
        // The window's outer height includes its frame; a little more than the page.
        self.client
            .set_window_size(w as u32, height as u32 + 140)
            .await?;
        let shot = self.screenshot(name).await;
        self.client.set_window_size(w as u32, h as u32).await?;
        shot
    }

    /// Runs `script` in the page; its return value as JSON.
    pub async fn js(&self, script: &str) -> Result<serde_json::Value> {
        Ok(self.client.execute(script, Vec::new()).await?)
    }

    pub async fn close(mut self) -> Result<()> {
        let _ = self.client.close().await;
        let _ = self.driver.kill().await;
        Ok(())
    }
}

/// A raw HTTP/1.1 exchange with the console, as a non-browser client would make it (to
/// look at headers, or to send what a browser would not).
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request to `addr` (`host:port`) and reads the whole answer.
pub async fn http(
    addr: &str,
    method: &str,
    path: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in extra_headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    s.write_all(body).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw))
        .await
        .context("the console did not answer in 20 s")??;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .context("no status line")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body)?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size line")?;
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol])?.trim(), 16)?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            bail!("short chunk");
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// `GET path` over TLS 1.3 from a client that trusts only the fleet CA in `ca`, to
/// `addr` as `server_name`: the whole answer, lower-cased (status line, headers, body).
pub async fn https_get(
    ca: &std::path::Path,
    addr: std::net::SocketAddr,
    server_name: &str,
    path: &str,
) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let roots = keliling_shared::tls::root_store(ca)?;
    let client = rustls::ClientConfig::builder_with_provider(keliling_shared::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())?;
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    tls.read_to_end(&mut raw).await.ok();
    Ok(String::from_utf8_lossy(&raw).to_ascii_lowercase())
}
