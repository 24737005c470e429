//! The bus station in a real headless Chromium (Debian's, through chromedriver), served by
//! a real `bus-node` daemon syncing over a real broker to a running HQ: an operator
//! fails a PIN, signs in, picks a service by searching, types a bad NIK and reads what
//! to fix, fixes it, reloads mid-form and finds the draft, uploads a camera JPEG, sees
//! the ID photo and its advice, has the citizen approve it, saves, prints the receipt
//! to PDF at 80 mm, and watches the application become "confirmed by HQ" and then
//! "decision received" once HQ decides it. Screenshots go to `target/screenshots/`.

use anyhow::{ensure, Context, Result};
use bus_node::operators::Pin;
use bus_node::Store;
use fantoccini::wd::{PrintConfiguration, PrintSize};
use fantoccini::Locator;
use hq_sync::decisions::Action;
use hq_sync::staff::{Lang, NewStaff, Password, Role, Username};
use keliling_e2e::browser::Browser;
use keliling_e2e::harness::*;
use keliling_e2e::sample;
use keliling_shared::{ApplicationId, BusId, UnixMillis};
use std::sync::Arc;
use std::time::Duration;

const PIN: &str = "2580";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_captures_an_application_at_the_station() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(broker) = TestBroker::start(BrokerKind::Embedded, dir.path()).await? else {
        return Ok(());
    };
    let Some(browser) = Browser::start().await? else {
        return Ok(());
    };
    let (bus_dir, hq_dir) = (dir.path().join("bus"), dir.path().join("hq"));
    let vault = init_bus_store(&bus_dir.join("bus.sqlite"))?;
    {
        let mut store = Store::open(&bus_dir.join("bus.sqlite"))?;
        store.add_operator("Maria Ndun", &Pin::parse_new(PIN)?)?;
        store.add_operator("Yosef Lake", &Pin::parse_new("1357")?)?;
    }
    // HQ publishes a city's one-stop service hall (200 services from 13 agencies) to the
    // fleet; the bus has only the starter catalogue of its own.
    let mut env = broker.hq_env(&hq_dir);
    let city =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/services-city.toml");
    env.push(("HQ_SYNC__CATALOGUE".into(), city.display().to_string()));
    let mut hq = Daemon::spawn("hq-sync", &["run"], &env, &dir.path().join("hq.log")).await?;
    let mut cfg = broker.bus_config("bus-ntt-01", &bus_dir)?;
    let port = keliling_e2e::ports::free_port()?;
    cfg.station.enabled = true;
    cfg.station.listen = format!("127.0.0.1:{port}").parse()?;
    let base = format!("http://127.0.0.1:{port}/");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let bus = tokio::spawn(bus_node::daemon::run(
        cfg.clone(),
        vault,
        Arc::default(),
        stopped,
    ));
    let b = &browser;
    eventually("the station listens", Duration::from_secs(20), || {
        Ok(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
    })
    .await?;
    eventually(
        "the bus has HQ's catalogue",
        Duration::from_secs(30),
        || {
            Ok(bus_node::catalogues::Catalogues::for_bus(&cfg)?
                .current()
                .services
                .len()
                == 200)
        },
    )
    .await?;

    // A wrong PIN is refused with what is left; the right one signs in.
    b.goto(&format!("{base}login")).await?;
    b.screenshot("station-login").await?;
    b.click("input[name=operator][value='1']").await?;
    b.fill("#pin", "0000").await?;
    b.click("#login").await?;
    b.wait_for("#login-error").await?;
    let refused = b.text("#login-error").await?;
    ensure!(
        refused.contains("PIN salah") && refused.contains("4"),
        "refusal: {refused}"
    );
    b.click("input[name=operator][value='1']").await?;
    b.fill("#pin", PIN).await?;
    b.click("#login").await?;
    b.wait_for("#start-new").await?;
    ensure!(b.text("#operator").await? == "Maria Ndun");

    // Pick the service by typing part of its name.
    b.click("#start-new").await?;
    b.wait_for("#service-search").await?;
    let all = b
        .js("return document.querySelectorAll('.service:not([hidden])').length")
        .await?;
    ensure!(all == 200, "the hall's 200 services: {all}");
    b.screenshot("station-services-all").await?;
    b.fill("#service-search", "perpanjangan sim").await?;
    let shown = b
        .js("return document.querySelectorAll('.service:not([hidden])').length")
        .await?;
    ensure!(shown == 1, "one service matches: {shown}");
    b.screenshot("station-services").await?;
    b.click("#svc-SIM_RENEWAL").await?;
    b.wait_for("#app-form").await?;

    // A bad NIK: the message says what to fix, as the operator types.
    let (nik, dob, sex) = sample::nik(7);
    b.fill("#full_name", "Maria Goreti Ndun").await?;
    b.fill("#nik", &nik[..11]).await?;
    b.fill("#date_of_birth", &dob).await?;
    let msg = wait_text(b, "[data-for=nik]", |t| t.contains("16 angka")).await?;
    ensure!(msg.contains("11"), "NIK message: {msg}");
    b.screenshot("station-form-bad-nik").await?;
    b.fill("#nik", &nik).await?;
    b.click(&format!("input[name=sex][value={sex}]")).await?;
    b.fill("#address", "Jl. El Tari 12, Oelamasi").await?;
    b.fill("#village", "Oelamasi").await?;
    b.fill("#f-sim_number", "1234-5678-000123").await?;
    b.js("const s = document.getElementById('f-sim_class'); s.value = 'C'; s.dispatchEvent(new Event('change', {bubbles: true})); return 0").await?;
    b.fill("#f-expiry_date", "2026-12-31").await?;
    b.click("input[name='doc.health_certificate']").await?;
    eventually_async(b, "the NIK message clears", |b| async move {
        Ok(b.text("[data-for=nik]").await?.is_empty())
    })
    .await?;

    // Reload mid-form: the draft is on the bus.
    let form_url = b.client.current_url().await?.to_string();
    tokio::time::sleep(Duration::from_millis(800)).await;
    b.goto(&form_url).await?;
    b.wait_for("#app-form").await?;
    let kept = b.js("return document.getElementById('nik').value").await?;
    ensure!(kept == nik.as_str(), "the draft kept the NIK: {kept}");
    let kept = b
        .js("return document.getElementById('f-sim_class').value")
        .await?;
    ensure!(kept == "C", "the draft kept the licence class: {kept}");

    // The photo: a camera JPEG in, the ID photo and its advice out, approved on screen.
    let portrait = keliling_photo::fixtures::load_portrait()?;
    let jpeg = sample::camera_photo(&portrait, 7)?;
    let photo_path = dir.path().join("camera.jpg");
    std::fs::write(&photo_path, &jpeg)?;
    let input = b.client.find(Locator::Css("#photo-file")).await?;
    input
        .send_keys(&photo_path.display().to_string())
        .await
        .context("choosing the photo file")?;
    b.wait_for("#id-photo").await?;
    let width = b
        .js("const i = document.getElementById('id-photo'); return i.complete ? i.naturalWidth : 0")
        .await?;
    ensure!(width == 413, "the ID photo at its size: {width}");
    b.wait_for("#approve-photo").await?;
    b.screenshot_full("station-form-photo").await?;
    b.click("#approve-photo").await?;
    b.wait_for("#photo-approved").await?;

    // Save: the receipt, with its QR code, printable at 80 mm.
    b.click("#save").await?;
    b.wait_for("#tracking-number").await?;
    let tracking = b.text("#tracking-number").await?;
    let id = ApplicationId::parse(&tracking).context("the tracking number")?;
    ensure!(
        b.js("return document.querySelectorAll('.qr svg').length")
            .await?
            == 1
    );
    b.screenshot_full("station-receipt").await?;
    let pdf = b
        .client
        .print(
            PrintConfiguration::builder()
                .size(PrintSize {
                    width: 8.0,
                    height: 20.0,
                })
                .build()
                .map_err(|e| anyhow::anyhow!("print settings: {e:?}"))?,
        )
        .await?;
    ensure!(pdf.starts_with(b"%PDF"), "a PDF");
    std::fs::write(
        keliling_e2e::browser::screenshot_dir().join("station-receipt-80mm.pdf"),
        &pdf,
    )?;

    // HQ confirms it: the state moves on the bus.
    let app_url = format!("{base}applications/{id}");
    wait_state(b, &app_url, "state-confirmed")
        .await
        .with_context(|| format!("hq log:\n{}", hq.log()))?;
    // HQ asks for more (the console's own decision path): a health certificate. The
    // operator completes it from the application's page: the citizen's details come
    // along, the scan is added, the amendment syncs and HQ links it to the original.
    decide(
        &hq_dir,
        &id,
        &Action::RequestInfo {
            message: keliling_shared::Text::parse("Lampirkan surat keterangan sehat")?,
            needs: vec![keliling_shared::decision::Need::Document(
                keliling_shared::application::FieldName::parse("health_certificate")
                    .map_err(anyhow::Error::msg)?,
            )],
        },
    )?;
    wait_state(b, &app_url, "decision-info_requested")
        .await
        .with_context(|| format!("hq log:\n{}", hq.log()))?;
    b.click("#amend-start").await?;
    b.wait_for("#amend").await?;
    let carried = b.js("return document.getElementById('nik').value").await?;
    ensure!(
        carried == nik.as_str(),
        "the citizen's details come along: {carried}"
    );
    // Saving without the asked-for scan is refused with what is missing.
    b.click("#save").await?;
    b.wait_for("#form-error").await?;
    let missing = b.text("#form-error").await?;
    ensure!(
        missing.contains("diminta"),
        "the missing scan is named: {missing}"
    );
    let scan_path = dir.path().join("scan.jpg");
    std::fs::write(&scan_path, sample::document_scan(9, 30_000)?)?;
    b.client
        .find(Locator::Css("#scan-file"))
        .await?
        .send_keys(&scan_path.display().to_string())
        .await
        .context("choosing the scan")?;
    b.wait_for("#documents .pill.ok").await?;
    b.screenshot_full("station-amendment").await?;
    b.click("#save").await?;
    b.wait_for("#tracking-number").await?;
    let amendment = ApplicationId::parse(&b.text("#tracking-number").await?)?;
    ensure!(
        amendment != id,
        "the amendment is an application of its own"
    );
    wait_state(
        b,
        &format!("{base}applications/{amendment}"),
        "state-confirmed",
    )
    .await
    .with_context(|| format!("hq log:\n{}", hq.log()))?;
    let hq_store = keliling_e2e::harness::hq_store(&hq_dir)?;
    let linked = hq_store.amendments(&BusId::parse("bus-ntt-01")?, &id)?;
    ensure!(
        linked == vec![amendment],
        "HQ links the amendment: {linked:?}"
    );
    let notes = hq_store.record_notes(&BusId::parse("bus-ntt-01")?, &id)?;
    ensure!(
        notes.photo_approval.is_some() && notes.documents_seen.len() == 1,
        "the citizen's approval and the documents seen reach HQ: {notes:?}"
    );
    // The original lists it; then HQ approves the original.
    b.goto(&app_url).await?;
    b.wait_for("#amendments").await?;
    decide(&hq_dir, &id, &Action::Approve { note: None })?;
    wait_state(b, &app_url, "decision-approved")
        .await
        .with_context(|| format!("hq log:\n{}", hq.log()))?;
    b.screenshot_full("station-decision").await?;

    // The end of the stop: per service, nothing waiting.
    b.goto(&format!("{base}summary")).await?;
    b.wait_for("#per-service").await?;
    let total = b.text("#per-service tfoot th:nth-child(2)").await?;
    ensure!(total == "2", "two applications today: {total}");
    b.screenshot_full("station-summary").await?;

    // Today's list shows it; a NIK search finds it through the index.
    b.goto(&base).await?;
    b.wait_for("#today").await?;
    b.screenshot_full("station-today").await?;
    b.goto(&format!("{base}find")).await?;
    b.fill("#find-q", &nik).await?;
    b.click("form.search button").await?;
    b.wait_for("#found").await?;
    ensure!(
        !b.client.current_url().await?.as_str().contains(&nik),
        "the NIK stays out of the browser's history"
    );
    let rows = b
        .js("return document.querySelectorAll('#found tbody tr').length")
        .await?;
    ensure!(rows == 2, "the application and its amendment: {rows}");

    // The live camera (the page is on localhost, a secure context): the preview with its
    // face guide, a shot, and the same pipeline as a file.
    b.goto(&format!("{base}new")).await?;
    b.click("#svc-SIM_RENEWAL").await?;
    b.wait_for("#app-form").await?;
    b.fill("#full_name", "Yakobus Tefa").await?;
    b.fill("#date_of_birth", &dob).await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    b.wait_for("#camera-start:not([hidden])").await?;
    b.click("#camera-start").await?;
    b.wait_for("#camera:not([hidden])").await?;
    let start_shown = b
        .js("return document.getElementById('camera-start').offsetParent !== null")
        .await?;
    ensure!(
        start_shown == false,
        "the start button goes once the preview runs"
    );
    b.screenshot("station-live-camera").await?;
    b.click("#camera-shoot").await?;
    b.wait_for("#id-photo").await?;
    ensure!(
        b.js("return document.querySelectorAll('#photo-advice li, #photo-ok').length")
            .await?
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "the shot's ID photo comes with its advice"
    );

    // HQ withdraws the licence renewal (its catalogue version 3 lacks it): the open
    // draft says it cannot be saved, and discarding it goes back to today.
    let draft_url = b
        .js("return location.origin + location.pathname")
        .await?
        .as_str()
        .context("the draft's address")?
        .to_owned();
    hq.kill9().await?;
    let city_text = std::fs::read_to_string(&city)?;
    let start = city_text
        .find("[[service]]\ncode = \"SIM_RENEWAL\"")
        .context("the renewal in the city's catalogue")?;
    let end = start + city_text[start..].find("\n\n").context("its end")?;
    let withdrawn = format!("{}{}", &city_text[..start], &city_text[end..]).replacen(
        "version = 2",
        "version = 3",
        1,
    );
    let v3 = dir.path().join("services-v3.toml");
    std::fs::write(&v3, withdrawn)?;
    let mut env = broker.hq_env(&hq_dir);
    env.push(("HQ_SYNC__CATALOGUE".into(), v3.display().to_string()));
    let mut hq = Daemon::spawn("hq-sync", &["run"], &env, &dir.path().join("hq.log")).await?;
    eventually(
        "the bus has HQ's version 3",
        Duration::from_secs(60),
        || {
            Ok(bus_node::catalogues::Catalogues::for_bus(&cfg)?
                .current()
                .version
                == 3)
        },
    )
    .await?;
    b.goto(&draft_url).await?;
    b.wait_for("#withdrawn").await?;
    ensure!(
        b.text("#withdrawn").await?.contains("SIM_RENEWAL")
            && b.text("#withdrawn").await?.contains("Yakobus Tefa"),
        "the page names the withdrawn service and whose draft it was"
    );
    b.screenshot("station-withdrawn").await?;
    b.js("window.confirm = () => true; return 0").await?;
    b.click("#discard").await?;
    b.wait_for("#start-new").await?;
    b.goto(&draft_url).await?;
    let gone = b.text("h1").await?;
    ensure!(
        gone.contains("tidak ditemukan"),
        "the draft is gone: {gone}"
    );
    b.goto(&base).await?;
    b.wait_for("#start-new").await?;

    // Switching operator locks the screen.
    b.click("#lock").await?;
    b.wait_for("#pin").await?;
    // A disabled operator is signed out at the next request.
    b.click("input[name=operator][value='2']").await?;
    b.fill("#pin", "1357").await?;
    b.click("#login").await?;
    b.wait_for("#start-new").await?;
    Store::open(&bus_dir.join("bus.sqlite"))?.set_operator_disabled("Yosef Lake", true)?;
    b.goto(&base).await?;
    b.wait_for("#pin").await?;

    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(20), bus).await;
    hq.kill9().await?;
    browser.close().await?;
    Ok(())
}

/// The text of `css` once `ok` says so (the page's script updates it as the operator
/// types).
async fn wait_text(b: &Browser, css: &str, ok: impl Fn(&str) -> bool) -> Result<String> {
    let mut last = String::new();
    for _ in 0..50 {
        last = b.text(css).await.unwrap_or_default();
        if ok(&last) {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("{css} stayed {last:?}")
}

async fn eventually_async<'a, F, Fut>(b: &'a Browser, what: &str, check: F) -> Result<()>
where
    F: Fn(&'a Browser) -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    for _ in 0..50 {
        if check(b).await.unwrap_or(false) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("timed out: {what}")
}

/// Reloads the application's page until its state is `state`.
async fn wait_state(b: &Browser, url: &str, state: &str) -> Result<()> {
    let started = std::time::Instant::now();
    loop {
        b.goto(url).await?;
        let now = b
            .js("const e = document.getElementById('app-state'); return e ? e.dataset.state : ''")
            .await?;
        if now == state {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            anyhow::bail!("the application stayed {now}, not {state}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A Polri supervisor decides the application in HQ's store, as the console does.
fn decide(hq_dir: &std::path::Path, id: &ApplicationId, action: &Action) -> Result<()> {
    let mut store = keliling_e2e::harness::hq_store(hq_dir)?;
    let known = vec!["DUKCAPIL".to_owned(), "POLRI".to_owned()];
    let user = Username::parse("agus")?;
    if store.staff(&user)?.is_none() {
        store.add_staff(
            &NewStaff {
                username: user.clone(),
                display_name: "Agus Polri".into(),
                role: Role::Supervisor,
                agencies: vec!["POLRI".into()],
                language: Lang::Id,
                password: Password::new("kata-sandi-panjang".into()),
            },
            &known,
            UnixMillis::now(),
        )?;
    }
    let staff = store.staff(&user)?.context("the staff member")?;
    store.decide(
        &BusId::parse("bus-ntt-01")?,
        id,
        action,
        &staff,
        &keliling_shared::Catalogue::builtin(),
        UnixMillis::now(),
    )?;
    Ok(())
}

/// HTTPS with a station certificate from the fleet PKI: a tablet trusting the fleet CA
/// gets the station over TLS 1.3 with HSTS; the certificate may not take the broker's
/// name (a station key must never pose as the broker to a bus).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_station_serves_https_with_a_fleet_certificate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = hq_sync::pki::Pki::init(
        &dir.path().join("pki"),
        &["hq.example".into(), "127.0.0.1".into()],
    )?;
    let bus = BusId::parse("bus-ntt-01")?;
    ensure!(
        pki.provision_station(&bus, &["127.0.0.1".into()]).is_err(),
        "the broker's address is refused"
    );
    let (cert, key, _) = pki.provision_station(&bus, &["192.168.4.1".into()])?;
    let bus_dir = dir.path().join("bus");
    let vault = init_bus_store(&bus_dir.join("bus.sqlite"))?;
    let mut cfg = bus_node::BusConfig::for_bus(bus, bus_dir, "127.0.0.1", 1);
    cfg.station.enabled = true;
    cfg.station.listen = "127.0.0.1:0".parse()?;
    cfg.station.tls_cert = Some(cert);
    cfg.station.tls_key = Some(key);
    let catalogues = Arc::new(bus_node::catalogues::Catalogues::for_bus(&cfg)?);
    let server = bus_node::station::Server::bind(&cfg, vault, Arc::default(), catalogues).await?;
    ensure!(server.url().starts_with("https://"), "{}", server.url());
    let addr = server.local_addr().context("address")?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(server.run(stopped));

    let text =
        keliling_e2e::browser::https_get(pki.ca_cert().as_path(), addr, "192.168.4.1", "/login")
            .await?;
    ensure!(
        text.starts_with("http/1.1 200"),
        "HTTPS answer: {}",
        &text[..text.len().min(200)]
    );
    ensure!(text.contains("strict-transport-security: max-age="), "HSTS");
    ensure!(
        text.contains("connect-src 'self'") && text.contains("camera=(self)"),
        "the station's CSP and camera policy"
    );
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    Ok(())
}
