//! The HQ console in a real headless Chromium (Debian's, through chromedriver), over a real
//! broker with a running bus node: applications captured on the bus reach HQ, and staff
//! log in, filter, open one, see its photo, claim it; forms without the CSRF token, other
//! agencies' applications and hostile names are handled as a reviewer would want.
//! Screenshots of every page go to `target/screenshots/` (copies of them are in `docs/`).

use anyhow::{ensure, Context, Result};
use hq_sync::console::Server;
use hq_sync::staff::{Lang, NewStaff, Password, Role, Username};
use keliling_e2e::browser::{http, Browser};
use keliling_e2e::harness::*;
use keliling_e2e::sample;
use keliling_shared::UnixMillis;
use std::path::Path;
use std::time::Duration;

const PASSWORD: &str = "kata-sandi-panjang";

fn add_staff(hq_dir: &Path, user: &str, name: &str, role: Role, agencies: &[&str]) -> Result<()> {
    let mut store = keliling_e2e::harness::hq_store(hq_dir)?;
    let known = vec!["DUKCAPIL".to_owned(), "POLRI".to_owned()];
    store.add_staff(
        &NewStaff {
            username: Username::parse(user)?,
            display_name: name.into(),
            role,
            agencies: agencies.iter().map(|a| a.to_string()).collect(),
            language: Lang::Id,
            password: Password::new(PASSWORD.into()),
        },
        &known,
        UnixMillis::now(),
    )?;
    Ok(())
}

async fn login(b: &Browser, base: &str, user: &str, password: &str) -> Result<()> {
    b.goto(&format!("{base}login")).await?;
    b.fill("#username", user).await?;
    b.fill("#password", password).await?;
    b.click("#login").await?;
    Ok(())
}

/// The hostile name of the hostile-content check: markup, a right-to-left override and a
/// zero-width space.
const HOSTILE_NAME: &str = "<b>Budi</b>\u{202E}gnp.exe\u{200B}";

async fn review_in_the_browser(kind: BrokerKind) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(broker) = TestBroker::start(kind, dir.path()).await? else {
        return Ok(());
    };
    let Some(browser) = Browser::start().await? else {
        return Ok(());
    };
    let (bus_dir, hq_dir) = (dir.path().join("bus"), dir.path().join("hq"));
    let db = bus_dir.join("bus.sqlite");
    let settings = test_capture_settings("bus-ntt-01")?;
    // Three licence renewals (Polri), a family-card update with a scan (Dukcapil), and a
    // renewal whose name is crafted.
    let renewals = capture_renewals(&db, &settings, 0..3)?;
    let kk = capture_into(
        &db,
        &settings,
        sample::kk_update(3, sample::document_scan(3, 40_000)?),
    )?;
    let portrait = keliling_photo::fixtures::load_portrait()?;
    // Its photo is too dark: the photo station's advice must reach HQ's reviewers.
    let mut dark = portrait.clone();
    for p in dark.pixels_mut() {
        for c in p.0.iter_mut() {
            *c /= 6;
        }
    }
    let mut hostile = sample::sim_renewal(4, sample::camera_photo(&dark, 4)?);
    hostile.full_name = HOSTILE_NAME.into();
    let hostile = capture_into(&db, &settings, hostile)?;

    let mut hq = broker.spawn_hq(&hq_dir, &dir.path().join("hq.log")).await?;
    let mut bus = broker
        .spawn_bus("bus-ntt-01", &bus_dir, &dir.path().join("bus.log"))
        .await?;
    eventually("all 5 delivered", Duration::from_secs(120), || {
        Ok(bus_delivered(&db)? == 5)
    })
    .await
    .with_context(|| format!("bus log:\n{}\nhq log:\n{}", bus.log(), hq.log()))?;

    add_staff(
        &hq_dir,
        "siti",
        "Siti Rahmawati",
        Role::Supervisor,
        &["DUKCAPIL", "POLRI"],
    )?;
    add_staff(
        &hq_dir,
        "yohana",
        "Yohana Bria",
        Role::Reviewer,
        &["DUKCAPIL"],
    )?;
    let mut cfg = broker.hq_config(&hq_dir);
    cfg.console.listen = "127.0.0.1:0".parse()?;
    let server = Server::bind(&cfg).await?;
    let base = server.url();
    let addr = server
        .local_addr()
        .context("the console's address")?
        .to_string();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let console = tokio::spawn(server.run(stopped));

    // Login: a wrong password is refused with a message, in Bahasa Indonesia.
    b_login_page(&browser, &base).await?;
    login(&browser, &base, "siti", "salah-kata-sandi").await?;
    browser.wait_for("#login-error").await?;
    let refused = browser.text("#login-error").await?;
    ensure!(refused.contains("salah"), "refusal: {refused}");
    browser.screenshot("console-login-refused").await?;

    login(&browser, &base, "siti", PASSWORD).await?;
    browser.wait_for("table.queue").await?;
    browser.screenshot("console-queue").await?;
    let all = browser.text(".tab[data-status=''] .count").await?;
    ensure!(
        all == "5",
        "the supervisor of both agencies sees all 5: {all}"
    );

    // The hostile name is text, not markup, and flagged.
    let src = browser.source().await?;
    ensure!(
        src.contains("&lt;b&gt;Budi&lt;/b&gt;⟨U+202E⟩gnp.exe⟨U+200B⟩"),
        "the name is escaped and its hidden characters shown"
    );
    let bold = browser
        .js("return document.querySelectorAll('table.queue b').length")
        .await?;
    ensure!(bold == 0, "no markup from a name reaches the page: {bold}");
    ensure!(
        src.contains("class=\"flag\""),
        "the hostile name is flagged"
    );
    browser
        .goto(&format!("{base}applications/bus-ntt-01/{}", hostile.id))
        .await?;
    let advice = browser.text("#photo-advice").await?;
    ensure!(
        advice.contains("terlalu gelap"),
        "the bus's photo advice at HQ: {advice}"
    );

    // Filter: only the family-card update.
    browser
        .goto(&format!("{base}applications?service=KK_UPDATE"))
        .await?;
    let rows = browser
        .js("return document.querySelectorAll('table.queue tbody tr').length")
        .await?;
    ensure!(rows == 1, "one family-card update: {rows}");
    // A NIK search finds its citizen and is logged.
    let (nik0, _, _) = sample::nik(0);
    browser
        .goto(&format!("{base}applications?q={nik0}"))
        .await?;
    let rows = browser
        .js("return document.querySelectorAll('table.queue tbody tr').length")
        .await?;
    ensure!(rows == 1, "one citizen with NIK {nik0}: {rows}");
    browser.screenshot("console-queue-search").await?;

    // Open it: every field, the photo (a real image the browser decoded), the history.
    browser.click("table.queue tbody tr a.app-link").await?;
    browser.wait_for("#applicant").await?;
    let width = browser
        .js("const i = document.getElementById('id-photo'); return i && i.complete ? i.naturalWidth : 0")
        .await?;
    ensure!(width == 413, "the ID photo is shown at its size: {width}");
    let applicant = browser.text("#applicant").await?;
    ensure!(
        applicant.contains(&nik0),
        "the detail page shows the full NIK"
    );
    browser.click("#claim").await?;
    browser.wait_for("#release").await?;
    browser.screenshot_full("console-detail").await?;
    let detail_url = browser.client.current_url().await?.to_string();

    // A form without its CSRF token is refused.
    browser
        .js(
            "document.querySelector('form[action$=\"/release\"] input[name=csrf]').remove(); \
             document.getElementById('release').click(); return 0",
        )
        .await?;
    browser.wait_for(".error-page").await?;
    let refusal = browser.text(".error-page h1").await?;
    ensure!(refusal.contains("Formulir"), "CSRF refusal page: {refusal}");
    browser.screenshot("console-csrf-refused").await?;

    // Headers, as a plain client sees them.
    let cookie = browser
        .client
        .get_named_cookie("kl_session")
        .await
        .context("the session cookie")?;
    ensure!(cookie.http_only() == Some(true), "HttpOnly session cookie");
    let session = format!("kl_session={}", cookie.value());
    let path = detail_url
        .strip_prefix(base.trim_end_matches('/'))
        .unwrap_or(&detail_url)
        .to_owned();
    let page = http(&addr, "GET", &path, &[("Cookie", &session)], b"").await?;
    ensure!(
        page.status == 200,
        "detail with the cookie: {}",
        page.status
    );
    let csp = page.header("content-security-policy").unwrap_or_default();
    ensure!(
        csp.contains("default-src 'none'")
            && csp.contains("frame-ancestors 'none'")
            && !csp.contains("unsafe-inline"),
        "strict CSP: {csp}"
    );
    ensure!(page.header("x-content-type-options") == Some("nosniff"));
    ensure!(page.header("x-frame-options") == Some("DENY"));
    let html = String::from_utf8_lossy(&page.body).to_string();
    let photo_path = html
        .split("id=\"id-photo\"")
        .next()
        .and_then(|before| before.rsplit("src=\"").next())
        .and_then(|s| s.split('"').next())
        .context("the photo's URL in the page")?
        .to_owned();
    let photo = http(&addr, "GET", &photo_path, &[("Cookie", &session)], b"").await?;
    ensure!(
        photo.status == 200 && photo.body.starts_with(&[0xFF, 0xD8]),
        "the photo: {}",
        photo.status
    );
    ensure!(photo
        .header("content-security-policy")
        .is_some_and(|c| c.starts_with("sandbox")));
    ensure!(photo
        .header("content-disposition")
        .is_some_and(|c| c.starts_with("inline")));
    let anonymous = http(&addr, "GET", &photo_path, &[], b"").await?;
    ensure!(
        anonymous.status == 303 && anonymous.header("location") == Some("/login"),
        "no photo without a session: {}",
        anonymous.status
    );
    // A form posted from another site is refused before it reaches a handler.
    let forged = http(
        &addr,
        "POST",
        &format!("{path}/claim"),
        &[
            ("Cookie", &session),
            ("Origin", "http://evil.example"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"csrf=x",
    )
    .await?;
    ensure!(forged.status == 403, "cross-origin POST: {}", forged.status);

    // The CSV export of the filtered queue: a supervisor's has whole NIKs; formulas in a
    // name are neutralised; the export is audited.
    let csv = http(
        &addr,
        "GET",
        "/applications.csv?service=SIM_RENEWAL",
        &[("Cookie", &session)],
        b"",
    )
    .await?;
    ensure!(csv.status == 200, "CSV export: {}", csv.status);
    ensure!(csv
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/csv")));
    let text = String::from_utf8(csv.body)?;
    ensure!(
        text.lines().count() == 5,
        "a header and 4 renewals:\n{text}"
    );
    ensure!(
        text.contains(&format!("\"{nik0}\"")),
        "the supervisor's export holds whole NIKs"
    );

    // The JSON API for other systems: a token scoped to Polri sees the 4 renewals and
    // not Dukcapil's family-card update; without a token, or once revoked, nothing.
    let token = {
        let mut store = keliling_e2e::harness::hq_store(&hq_dir)?;
        store.add_api_token(
            "sim-polri",
            &["POLRI".to_owned()],
            &["DUKCAPIL".to_owned(), "POLRI".to_owned()],
            "siti",
            UnixMillis::now(),
        )?
    };
    let bearer = format!("Bearer {token}");
    let list = http(
        &addr,
        "GET",
        "/api/v1/applications?limit=3",
        &[("Authorization", &bearer)],
        b"",
    )
    .await?;
    ensure!(list.status == 200, "API list: {}", list.status);
    let v: serde_json::Value = serde_json::from_slice(&list.body)?;
    ensure!(
        v["items"].as_array().map(Vec::len) == Some(3),
        "a page of 3: {v}"
    );
    let cursor = v["next_cursor"]
        .as_str()
        .context("a next cursor")?
        .to_owned();
    let rest = http(
        &addr,
        "GET",
        &format!("/api/v1/applications?limit=3&cursor={cursor}"),
        &[("Authorization", &bearer)],
        b"",
    )
    .await?;
    let rest: serde_json::Value = serde_json::from_slice(&rest.body)?;
    ensure!(
        rest["items"].as_array().map(Vec::len) == Some(1),
        "the fourth renewal: {rest}"
    );
    ensure!(rest["next_cursor"].is_null(), "the last page");
    ensure!(v["counts"]["pending"] == 4, "counts: {}", v["counts"]);
    let one_url = v["items"][0]["url"]
        .as_str()
        .context("an item url")?
        .to_owned();
    let one = http(&addr, "GET", &one_url, &[("Authorization", &bearer)], b"").await?;
    let one: serde_json::Value = serde_json::from_slice(&one.body)?;
    let photo_url = one["attachments"][0]["url"]
        .as_str()
        .context("a photo url")?
        .to_owned();
    let photo = http(&addr, "GET", &photo_url, &[("Authorization", &bearer)], b"").await?;
    ensure!(
        photo.status == 200 && photo.body.starts_with(&[0xFF, 0xD8]),
        "the photo by hash"
    );
    let kk_api = http(
        &addr,
        "GET",
        &format!("/api/v1/applications/bus-ntt-01/{}", kk.id),
        &[("Authorization", &bearer)],
        b"",
    )
    .await?;
    ensure!(
        kk_api.status == 404,
        "another agency's application: {}",
        kk_api.status
    );
    let anonymous = http(&addr, "GET", "/api/v1/applications", &[], b"").await?;
    ensure!(anonymous.status == 401, "no token: {}", anonymous.status);
    keliling_e2e::harness::hq_store(&hq_dir)?.revoke_api_token(
        "sim-polri",
        "siti",
        UnixMillis::now(),
    )?;
    let revoked = http(
        &addr,
        "GET",
        "/api/v1/applications",
        &[("Authorization", &bearer)],
        b"",
    )
    .await?;
    ensure!(revoked.status == 401, "a revoked token: {}", revoked.status);

    // Decisions: approve, reject with a reason, request more information; each reaches
    // the bus, and the console shows it confirmed by the bus.
    let app_url =
        |id: &keliling_shared::ApplicationId| format!("{base}applications/bus-ntt-01/{id}");
    let (a0, a1, a2) = (renewals[0].id, renewals[1].id, renewals[2].id);
    decide(&browser, &app_url(&a0), Decide::Approve).await?;
    decide(
        &browser,
        &app_url(&a1),
        Decide::Reject("HEALTH_CERT_NEEDED"),
    )
    .await?;
    browser.screenshot_full("console-decided").await?;
    decide(
        &browser,
        &app_url(&a2),
        Decide::RequestInfo("Bawa foto baru tanpa kacamata"),
    )
    .await?;
    for id in [a0, a1, a2] {
        confirmed_by_bus(&browser, &app_url(&id), 1).await?;
    }
    browser.goto(&app_url(&a1)).await?;
    browser
        .screenshot_full("console-decision-confirmed")
        .await?;
    // A supervisor changes a decision: version 2 supersedes version 1 on the bus.
    decide(
        &browser,
        &app_url(&a0),
        Decide::RequestInfo("Foto kurang jelas, mohon foto ulang"),
    )
    .await?;
    confirmed_by_bus(&browser, &app_url(&a0), 2).await?;
    let status = bus_status(&broker, &bus_dir).await?;
    for (id, line) in [
        (a0, "PERLU INFO TAMBAHAN"),
        (a1, "DITOLAK"),
        (a2, "PERLU INFO TAMBAHAN"),
    ] {
        ensure!(
            status
                .lines()
                .any(|l| l.starts_with(&id.to_string()) && l.contains(line)),
            "bus-node status shows {id} as {line}:\n{status}"
        );
    }
    ensure!(
        status.contains("versi 2 dari 2"),
        "the changed decision is version 2 on the bus:\n{status}"
    );

    // Logout ends the session: the cookie is worth nothing after.
    browser.goto(&detail_url).await?;
    browser.click("#logout").await?;
    browser.wait_for("#username").await?;
    let after = http(&addr, "GET", &path, &[("Cookie", &session)], b"").await?;
    ensure!(
        after.status == 303,
        "the old session after logout: {}",
        after.status
    );

    // A reviewer of Dukcapil sees only Dukcapil's application, and not the licence
    // renewal even by its address.
    login(&browser, &base, "yohana", PASSWORD).await?;
    browser.wait_for("table.queue").await?;
    let all = browser.text(".tab[data-status=''] .count").await?;
    ensure!(all == "1", "Dukcapil's reviewer sees 1: {all}");
    browser.goto(&detail_url).await?;
    browser.wait_for(".error-page").await?;
    let h1 = browser.text(".error-page h1").await?;
    ensure!(
        h1.contains("tidak ditemukan"),
        "another agency's application: {h1}"
    );
    // Exports are a supervisor's: a reviewer gets no link and no file.
    ensure!(
        browser
            .js("return document.getElementById('export-csv') === null")
            .await?
            == true,
        "no export link for a reviewer"
    );
    let cookie = browser
        .client
        .get_named_cookie("kl_session")
        .await
        .context("the reviewer's session cookie")?;
    let reviewer = format!("kl_session={}", cookie.value());
    let csv = http(
        &addr,
        "GET",
        "/applications.csv",
        &[("Cookie", &reviewer)],
        b"",
    )
    .await?;
    ensure!(csv.status == 403, "a reviewer's export: {}", csv.status);
    // The audit log is for supervisors only.
    browser.goto(&format!("{base}audit")).await?;
    browser.wait_for(".error-page").await?;
    let h1 = browser.text(".error-page h1").await?;
    ensure!(
        h1.contains("tidak berhak"),
        "a reviewer and the audit log: {h1}"
    );

    // Maker-checker, with the bus offline: the family-card update's rejection needs a
    // second person. Yohana rejects; she cannot check her own; Siti confirms; the bus,
    // back online, gets it.
    bus.kill9().await?;
    decide(
        &browser,
        &app_url(&kk.id),
        Decide::Reject("DOCUMENT_MISSING"),
    )
    .await?;
    let notice = browser.text("#notice").await?;
    ensure!(
        notice.contains("pemeriksa kedua"),
        "waits for a second check: {notice}"
    );
    ensure!(
        browser
            .js("return document.getElementById('check-confirm') === null")
            .await?
            == true,
        "the maker is not offered her own check"
    );
    browser.click("#logout").await?;
    browser.wait_for("#username").await?;
    login(&browser, &base, "siti", PASSWORD).await?;
    browser.wait_for("table.queue").await?;
    browser.goto(&app_url(&kk.id)).await?;
    browser.wait_for("#check-confirm").await?;
    browser.screenshot_full("console-check").await?;
    browser.click("#check-confirm").await?;
    browser.wait_for("#notice").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    browser.goto(&app_url(&kk.id)).await?;
    let delivery = browser
        .js("return document.querySelector('tr[data-version=\"1\"] [data-delivery]').dataset.delivery")
        .await?;
    ensure!(
        delivery != "confirmed",
        "not confirmed while the bus is away: {delivery}"
    );
    // The fleet view: the bus is offline (its last will reached HQ) and one decision
    // waits for it.
    let fleet = format!("{base}fleet");
    let card = "[data-bus='bus-ntt-01']";
    let started = std::time::Instant::now();
    loop {
        browser.goto(&fleet).await?;
        browser.wait_for(card).await?;
        let online = browser
            .js(&format!(
                "return document.querySelector(\"{card}\").dataset.online"
            ))
            .await?;
        if online == "false" {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the killed bus still shows online"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let waiting = browser.text(&format!("{card} .decisions-waiting")).await?;
    ensure!(
        waiting == "1",
        "one decision waits for the offline bus: {waiting}"
    );
    browser.screenshot_full("console-fleet").await?;
    let mut bus = broker
        .spawn_bus("bus-ntt-01", &bus_dir, &dir.path().join("bus.log"))
        .await?;
    confirmed_by_bus(&browser, &app_url(&kk.id), 1).await?;
    browser.goto(&fleet).await?;
    let online = browser
        .js(&format!(
            "return document.querySelector(\"{card}\").dataset.online"
        ))
        .await?;
    ensure!(
        online == "true",
        "the bus is back online in the fleet view: {online}"
    );
    // And the quarantine: nothing was set aside in this run.
    browser.goto(&format!("{base}quarantine")).await?;
    browser.wait_for(".empty").await?;
    browser.screenshot("console-quarantine").await?;
    // A supervisor reads the audit log: the chain holds.
    browser.goto(&format!("{base}audit")).await?;
    browser.wait_for("#chain.ok").await?;
    browser.screenshot("console-audit").await?;

    // The audit log holds the views, the photo, the search, the claim, the failed login.
    let store = keliling_e2e::harness::hq_store(&hq_dir)?;
    let log = store.audit_log(&hq_sync::audit::Filter {
        limit: 1000,
        ..Default::default()
    })?;
    for action in [
        "login_refused",
        "login",
        "nik_searched",
        "viewed",
        "blob_viewed",
        "claimed",
        "logout",
        "decided",
        "check_confirmed",
        "decision_confirmed",
        "exported",
        "api_token_added",
        "api_token_revoked",
    ] {
        ensure!(
            log.iter().any(|r| r.entry.action == action),
            "audit log has {action}: {:?}",
            log.iter().map(|r| &r.entry.action).collect::<Vec<_>>()
        );
    }
    ensure!(store.verify_audit()?.is_none(), "the audit chain holds");

    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), console).await;
    browser.close().await?;
    bus.kill9().await?;
    hq.kill9().await?;
    Ok(())
}

enum Decide {
    Approve,
    Reject(&'static str),
    RequestInfo(&'static str),
}

/// Opens an application, claims it if nobody does, and decides.
async fn decide(b: &Browser, url: &str, d: Decide) -> Result<()> {
    b.goto(url).await?;
    b.wait_for("#decision").await?;
    if b.js("return document.getElementById('claim') !== null")
        .await?
        == true
    {
        b.click("#claim").await?;
        b.wait_for("#release").await?;
    }
    match d {
        Decide::Approve => b.click("#approve").await?,
        Decide::Reject(code) => {
            b.client
                .find(fantoccini::Locator::Css("#reason"))
                .await?
                .select_by_value(code)
                .await?;
            b.fill("#reject-note", "Mohon dilengkapi").await?;
            b.click("#reject").await?;
        }
        Decide::RequestInfo(msg) => {
            b.fill("#info-message", msg).await?;
            b.click("form.decide.info input[value=photo]").await?;
            b.click("#request-info").await?;
        }
    }
    b.wait_for("#notice").await?;
    Ok(())
}

/// Reloads an application's page until decision `version` shows as confirmed by the bus.
async fn confirmed_by_bus(b: &Browser, url: &str, version: u32) -> Result<()> {
    let started = std::time::Instant::now();
    loop {
        b.goto(url).await?;
        let state = b
            .js(&format!(
                "const e = document.querySelector('tr[data-version=\"{version}\"] [data-delivery]'); return e ? e.dataset.delivery : ''"
            ))
            .await?;
        if state == "confirmed" {
            return Ok(());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "decision v{version} at {url} not confirmed by the bus in 60 s: {state}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `bus-node status` as the operator runs it.
async fn bus_status(broker: &TestBroker, bus_dir: &Path) -> Result<String> {
    let out = tokio::process::Command::new(binary("bus-node")?)
        .arg("status")
        .envs(broker.bus_env("bus-ntt-01", bus_dir)?)
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "bus-node status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn b_login_page(b: &Browser, base: &str) -> Result<()> {
    b.goto(&format!("{base}login")).await?;
    b.wait_for("#username").await?;
    b.screenshot("console-login").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_review_in_the_browser() -> Result<()> {
    review_in_the_browser(BrokerKind::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mosquitto_review_in_the_browser() -> Result<()> {
    review_in_the_browser(BrokerKind::Mosquitto).await
}

/// HTTPS with a certificate from the fleet PKI: a client trusting the fleet CA gets the
/// console over TLS 1.3, with HSTS and a `Secure` cookie; the console certificate may not
/// take the broker's name (a console key must never pose as the broker to a bus).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_serves_https_with_a_fleet_certificate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = hq_sync::pki::Pki::init(
        &dir.path().join("pki"),
        &["hq.example".into(), "127.0.0.1".into()],
    )?;
    ensure!(
        pki.provision_console(&["hq.example".into()]).is_err(),
        "the broker's name is refused"
    );
    ensure!(
        pki.provision_console(&["127.0.0.1".into()]).is_err(),
        "so is its address"
    );
    let (cert, key, _) = pki.provision_console(&["console.hq.example".into()])?;
    let mut cfg = hq_sync::HqConfig::for_dir(dir.path().join("hq"), 0);
    cfg.pki.dir = pki.dir().to_owned();
    cfg.console.listen = "127.0.0.1:0".parse()?;
    cfg.console.tls_cert = Some(cert);
    cfg.console.tls_key = Some(key);
    let server = Server::bind(&cfg).await?;
    ensure!(server.url().starts_with("https://"), "{}", server.url());
    let addr = server.local_addr().context("address")?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(server.run(stopped));

    let text = keliling_e2e::browser::https_get(
        pki.ca_cert().as_path(),
        addr,
        "console.hq.example",
        "/login",
    )
    .await?;
    ensure!(
        text.starts_with("http/1.1 200"),
        "HTTPS answer: {}",
        &text[..text.len().min(200)]
    );
    ensure!(
        text.contains("strict-transport-security: max-age="),
        "HSTS under TLS"
    );
    ensure!(text.contains("; secure"), "Secure cookies under TLS");
    // A client that does not trust the fleet CA gets nothing.
    let bare = rustls::ClientConfig::builder_with_provider(keliling_shared::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let refused = tokio_rustls::TlsConnector::from(std::sync::Arc::new(bare))
        .connect(
            rustls::pki_types::ServerName::try_from("console.hq.example")?,
            tcp,
        )
        .await;
    ensure!(refused.is_err(), "an untrusted certificate is refused");
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    Ok(())
}
