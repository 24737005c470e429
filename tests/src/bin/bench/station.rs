//! The bus station as a tablet sees it: the real `bus-node run` process with a
//! 10,000-application backlog (HQ down, so it stays), its station driven by headless
//! Chromium.
//!
//! - The capture screen's weight (every byte the page loads: HTML, stylesheet, script,
//!   logo) and its time to interactive on a throttled link (Chromium's network emulation
//!   through the DevTools protocol, cache disabled: a tablet's first visit).
//! - The photo result: a 12 MP camera JPEG chosen on the form until the page with the ID
//!   photo and its advice has loaded (Navigation Timing of the form post), median.
//! - The node's resident memory while the station is used with that backlog.

use crate::brokers::{BenchBroker, Kind, Security};
use crate::bulk::Templates;
use crate::{mib, Plan, Report};
use anyhow::{bail, Context, Result};
use fantoccini::Locator;
use keliling_e2e::browser::Browser;
use keliling_e2e::ports::free_port;
use keliling_e2e::procstat::status_kib;
use keliling_shared::BusId;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const PIN: &str = "2580";

/// A link like a rural 3G/EDGE cell: 400 kbit/s down, 200 kbit/s up, 300 ms latency.
const THROTTLE: (u64, u64, u64) = (50_000, 25_000, 300);

/// A DevTools command through chromedriver (`goog/cdp/execute`).
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = serde_json::json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}

async fn cdp(b: &Browser, cmd: &'static str, params: serde_json::Value) -> Result<()> {
    b.client
        .issue_cmd(Cdp { cmd, params })
        .await
        .with_context(|| format!("DevTools {cmd}"))?;
    Ok(())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| status_kib(&s, "VmRSS"))
        .unwrap_or(0)
}

pub(crate) async fn bench_station(plan: &Plan, scratch: &Path, report: &mut Report) -> Result<()> {
    let Some(browser) = Browser::start().await? else {
        bail!("the station benchmark needs chromium and chromium-driver");
    };
    let bin = keliling_e2e::harness::binary("bus-node").context(
        "the station benchmark runs the real bus-node binary: cargo build --release -p bus-node",
    )?;
    let dir = scratch.join("station");
    let bus = BusId::parse(crate::BUS)?;
    let broker =
        BenchBroker::start(Kind::Embedded, Security::MutualTls, &dir.join("broker")).await?;
    let n = plan.rss_backlog;
    let data = dir.join("bus");
    let db = data.join("bus.sqlite");
    tokio::task::block_in_place(|| -> Result<()> {
        let templates = Templates::capture(20.min(n).max(1), &dir.join("templates"))?;
        templates.fill_store(&db, &bus, 0, n)?;
        let mut store = bus_node::Store::open(&db)?;
        store.add_operator("Petugas Bench", &bus_node::operators::Pin::parse_new(PIN)?)?;
        Ok(())
    })?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}/");
    let mut env = broker.bus_env(&bus, &data, broker.port())?;
    env.push((
        "BUS_NODE__STATION__LISTEN".into(),
        format!("127.0.0.1:{port}"),
    ));
    let log_path = dir.join("bus-node.log");
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.arg("run")
        .current_dir(&dir)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    let pid = child.id().context("bus-node has no pid")?;
    let result = drive(&browser, &base, pid, &dir, n, report).await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    browser.close().await?;
    result.with_context(|| {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    })
}

async fn drive(
    b: &Browser,
    base: &str,
    pid: u32,
    dir: &Path,
    n: usize,
    report: &mut Report,
) -> Result<()> {
    let started = Instant::now();
    while std::net::TcpStream::connect(base.trim_start_matches("http://").trim_end_matches('/'))
        .is_err()
    {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the station did not listen within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut peak = rss_kib(pid);
    b.goto(&format!("{base}login")).await?;
    b.fill("#pin", PIN).await?;
    b.click("#login").await?;
    b.wait_for("#start-new").await?;
    peak = peak.max(rss_kib(pid));
    b.goto(&format!("{base}new")).await?;
    b.click("#svc-SIM_RENEWAL").await?;
    b.wait_for("#app-form").await?;
    let form_url = b.client.current_url().await?.to_string();
    let (nik, dob, sex) = keliling_e2e::sample::nik(3);
    b.fill("#full_name", "Warga Bench").await?;
    b.fill("#nik", &nik).await?;
    b.fill("#date_of_birth", &dob).await?;
    b.click(&format!("input[name=sex][value={sex}]")).await?;
    b.fill("#address", "Jl. Bench 1").await?;
    b.fill("#village", "Oelamasi").await?;
    tokio::time::sleep(Duration::from_millis(800)).await;

    // The capture screen, cold and throttled.
    cdp(b, "Network.enable", serde_json::json!({})).await?;
    cdp(
        b,
        "Network.setCacheDisabled",
        serde_json::json!({ "cacheDisabled": true }),
    )
    .await?;
    let (down, up, latency) = THROTTLE;
    cdp(
        b,
        "Network.emulateNetworkConditions",
        serde_json::json!({ "offline": false, "latency": latency, "downloadThroughput": down, "uploadThroughput": up }),
    )
    .await?;
    let mut weights = Vec::new();
    let mut interactive = Vec::new();
    let mut loaded = Vec::new();
    for _ in 0..5 {
        b.goto(&form_url).await?;
        b.wait_for("#app-form").await?;
        let m = b
            .js("const n = performance.getEntriesByType('navigation')[0]; \
                 const r = performance.getEntriesByType('resource'); \
                 return [n.transferSize + r.reduce((s, e) => s + e.transferSize, 0), \
                         n.domInteractive, n.domContentLoadedEventEnd, n.loadEventEnd, r.length];")
            .await?;
        let v = |i: usize| m.get(i).and_then(|x| x.as_f64()).unwrap_or(0.0);
        weights.push(v(0));
        interactive.push(v(2));
        loaded.push(v(3));
    }
    cdp(
        b,
        "Network.emulateNetworkConditions",
        serde_json::json!({ "offline": false, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1 }),
    )
    .await?;
    cdp(
        b,
        "Network.setCacheDisabled",
        serde_json::json!({ "cacheDisabled": false }),
    )
    .await?;
    let weight = median(&mut weights);
    report.add(
        "station",
        "capture screen: page weight (all bytes, first visit)",
        format!("{:.1} KB", weight / 1000.0),
        "the form of a new licence-renewal draft: HTML, station.css, station.js, logo.svg, headers included (transferSize with the cache disabled); target at most 150 KB",
    );
    report.add(
        "station",
        "capture screen: time to interactive, throttled link (first visit)",
        format!("{:.0} ms", median(&mut interactive)),
        format!(
            "DOMContentLoaded after the deferred script ran (Navigation Timing), median of 5, Chromium emulating {} kbit/s down, {} kbit/s up, {} ms latency, cache disabled; fully loaded (the load event) at {:.0} ms",
            down * 8 / 1000,
            up * 8 / 1000,
            latency,
            median(&mut loaded)
        ),
    );
    peak = peak.max(rss_kib(pid));

    // The photo result: a 12 MP camera JPEG until the page with the ID photo has loaded.
    let portrait = keliling_photo::fixtures::load_portrait()?;
    let camera = keliling_photo::fixtures::camera_jpeg(&portrait, 4000, 3000, 6, true, 90)?;
    let path = dir.join("camera-12mp.jpg");
    std::fs::write(&path, &camera)?;
    let mut results = Vec::new();
    for i in 0..6 {
        if b.client.find(Locator::Css("#retake-photo")).await.is_ok() {
            b.click("#retake-photo").await?;
            b.wait_for("#photo-file").await?;
        }
        b.client
            .find(Locator::Css("#photo-file"))
            .await?
            .send_keys(&path.display().to_string())
            .await?;
        b.wait_for("#id-photo").await?;
        let ms = b
            .js("const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd || n.responseEnd;")
            .await?
            .as_f64()
            .unwrap_or(0.0);
        peak = peak.max(rss_kib(pid));
        if i > 0 {
            results.push(ms);
        }
    }
    let p50 = median(&mut results);
    report.add(
        "station",
        "photo result for a 12 MP camera JPEG",
        format!("{p50:.0} ms"),
        format!(
            "choosing the file on the form until the page showing the ID photo and its advice has loaded (Navigation Timing of the form post and its redirect: upload of {} over loopback, EXIF orientation, crop, resize, advice, sealed draft write, page, photo), median of 5 after a warm-up, max {:.0} ms; target under 1 s",
            mib(camera.len() as u64 / 1024),
            results.iter().cloned().fold(0.0, f64::max)
        ),
    );
    // Approve, save, the receipt, today's list, a NIK search: the rest of a capture.
    b.click("#approve-photo").await?;
    b.wait_for("#photo-approved").await?;
    b.fill("#f-sim_number", "1234-5678-000001").await?;
    b.js("const s = document.getElementById('f-sim_class'); s.value = 'C'; s.dispatchEvent(new Event('change', {bubbles: true})); return 0").await?;
    b.fill("#f-expiry_date", "2026-12-31").await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    b.click("#save").await?;
    b.wait_for("#tracking-number").await?;
    peak = peak.max(rss_kib(pid));
    b.goto(base).await?;
    b.wait_for("#start-new").await?;
    b.goto(&format!("{base}find")).await?;
    b.fill("#find-q", &nik).await?;
    b.click("form.search button").await?;
    b.wait_for("#found").await?;
    b.goto(&format!("{base}summary")).await?;
    b.wait_for("#per-service").await?;
    for _ in 0..20 {
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = rss_kib(pid);
    report.add(
        "station",
        format!("bus-node run with the station in use, {n}-application backlog"),
        mib(now),
        format!(
            "VmRSS of the real `bus-node run` process (sync connected to the broker, HQ down so the backlog stays) after a capture through the station: sign-in, the form, 6 photos of 12 MP, save, receipt, today's list, a NIK search, the end-of-stop summary; highest sampled during it {}; target under 64 MB",
            mib(peak)
        ),
    );
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
