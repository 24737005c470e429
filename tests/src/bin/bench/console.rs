//! The HQ console with a province's worth of applications: server time of the queue and
//! detail pages (the console's `Server-Timing` header, measured around the handler) and
//! their weight, over real HTTP on loopback against the real store.

use crate::{kib, Plan, Report};
use anyhow::{ensure, Context, Result};
use hq_sync::staff::{Lang, NewStaff, Password, Role, Username};
use hq_sync::store::HqStore;
use hq_sync::HqConfig;
use keliling_e2e::browser::http;
use keliling_shared::application::{Attachment, AttachmentKind, FieldName, MediaType};
use keliling_shared::{
    Applicant, Application, ApplicationId, BusId, Nik, ServiceCode, Sex, Sha256, Stop, Text,
    UnixMillis,
};
use std::path::Path;
use std::time::{Duration, Instant};

const BUSES: usize = 50;
const VILLAGES: usize = 40;

fn text(s: &str) -> Result<Text> {
    Ok(Text::parse(s)?)
}

/// Application `i`: a licence renewal or a family-card update, of one of 50 buses, from
/// one of 40 villages, a few with a NIK that disagrees with the stated birth date, all
/// with the same verified photo (one file at HQ).
fn application(i: usize, photo: (Sha256, u64), t0: UnixMillis) -> Result<Application> {
    let (nik, dob, sex) = keliling_e2e::sample::nik(i);
    let warned = i.is_multiple_of(10);
    let date = time::Date::parse(
        &dob,
        time::macros::format_description!("[year]-[month]-[day]"),
    )?;
    let date = if warned {
        date.next_day().unwrap_or(date)
    } else {
        date
    };
    let renewal = !i.is_multiple_of(3);
    let (service, fields) = if renewal {
        (
            "SIM_RENEWAL",
            vec![
                ("sim_number", format!("1234-5678-{i:06}")),
                ("sim_class", "C".to_owned()),
                ("expiry_date", "2026-12-31".to_owned()),
            ],
        )
    } else {
        (
            "KK_UPDATE",
            vec![
                ("kk_number", format!("53710100{:08}", i % 99_999_999)),
                ("change_reason", "kelahiran".to_owned()),
            ],
        )
    };
    let kind = if renewal {
        AttachmentKind::IdPhoto
    } else {
        AttachmentKind::Document(FieldName::parse("old_kk").map_err(anyhow::Error::msg)?)
    };
    Ok(Application {
        id: ApplicationId::new_v7(),
        bus_id: BusId::parse(&format!("bus-ntt-{:02}", i % BUSES + 1))?,
        operator: text("Petugas Yohanes")?,
        stop: Stop {
            village: text(&format!("Desa {}", i % VILLAGES + 1))?,
            gps: None,
        },
        service: ServiceCode::parse(service)?,
        applicant: Applicant {
            full_name: text(&format!("Warga Nomor {i}"))?,
            nik: Nik::parse(&nik)?,
            date_of_birth: date,
            sex: if sex == "P" { Sex::Female } else { Sex::Male },
            address: text("RT 01 RW 03, Kupang")?,
            phone: None,
        },
        fields: fields
            .into_iter()
            .map(|(k, v)| Ok((FieldName::parse(k).map_err(anyhow::Error::msg)?, text(&v)?)))
            .collect::<Result<_>>()?,
        attachments: vec![Attachment {
            kind,
            media_type: MediaType::Jpeg,
            sha256: photo.0,
            size: photo.1,
        }],
        // Spread over the last 30 days.
        captured_at: UnixMillis(t0.0 - (i as i64 % 30) * 86_400_000 - i as i64),
    })
}

struct Timing {
    server_ms: Vec<f64>,
    bytes: Vec<usize>,
}

impl Timing {
    fn new() -> Timing {
        Timing {
            server_ms: Vec::new(),
            bytes: Vec::new(),
        }
    }

    fn pct(&self, p: f64) -> f64 {
        let mut v = self.server_ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i.min(v.len() - 1)]
    }

    fn median_bytes(&self) -> usize {
        let mut v = self.bytes.clone();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    }
}

/// GETs `path` with the session; the server's own time for it and the body's size.
async fn get(addr: &str, path: &str, cookie: &str) -> Result<(f64, Vec<u8>)> {
    let r = http(addr, "GET", path, &[("Cookie", cookie)], b"").await?;
    ensure!(r.status == 200, "GET {path}: {}", r.status);
    let dur = r
        .header("server-timing")
        .and_then(|v| v.split("dur=").nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .context("no Server-Timing header")?;
    Ok((dur, r.body))
}

pub async fn bench_console(plan: &Plan, scratch: &Path, report: &mut Report) -> Result<()> {
    let n = plan.console_apps;
    let dir = scratch.join("console");
    let mut cfg = HqConfig::for_dir(dir.join("hq"), 0);
    cfg.console.listen = "127.0.0.1:0".parse()?;

    // The store: n applications, all complete with one photo file.
    let fill = Instant::now();
    let photo = keliling_photo::fixtures::load_portrait()?;
    let jpeg = keliling_photo::fixtures::camera_jpeg(&photo, 413, 531, 1, false, 85)?;
    let sha = Sha256::digest(&jpeg);
    let photos = hq_sync::photos::PhotoStore::open(&cfg.photos_dir())?;
    let path = photos.put(&sha, jpeg.len() as u64, std::iter::once(jpeg.as_slice()))?;
    let mut store = HqStore::open(&cfg.db_path())?;
    store.relax_durability_for_bulk_load()?;
    let t0 = UnixMillis::now();
    let mut sample_ids = Vec::new();
    for i in 0..n {
        let app = application(i, (sha, jpeg.len() as u64), t0)?;
        store.ingest_record(
            &app,
            UnixMillis(t0.0 - (n - i) as i64 * 1000),
            "hq-1",
            u32::MAX,
        )?;
        if i % (n / 200).max(1) == 0 {
            sample_ids.push((app.bus_id.clone(), app.id));
        }
    }
    for b in 0..BUSES {
        let bus = BusId::parse(&format!("bus-ntt-{:02}", b + 1))?;
        store.commit_blob(
            &sha,
            jpeg.len() as u64,
            hq_sync::photos::BlobAt::File(&path),
            &bus,
            t0,
        )?;
    }
    let fill_secs = fill.elapsed().as_secs_f64();
    let staff = store.add_staff(
        &NewStaff {
            username: Username::parse("bench")?,
            display_name: "Bench".into(),
            role: Role::Supervisor,
            agencies: vec!["DUKCAPIL".into(), "POLRI".into()],
            language: Lang::Id,
            password: Password::new("kata-sandi-panjang".into()),
        },
        &["DUKCAPIL".to_owned(), "POLRI".to_owned()],
        t0,
    )?;
    let session = store.create_session(&staff, "bench", UnixMillis::now())?;
    drop(store);
    let cookie = format!("kl_session={}", session.token);

    let server = hq_sync::console::Server::bind(&cfg).await?;
    let addr = server.local_addr().context("console address")?.to_string();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(server.run(stopped));

    // Warm up (the first request opens the pool's connections).
    for _ in 0..5 {
        get(&addr, "/applications", &cookie).await?;
    }
    let css = http(&addr, "GET", "/assets/console.css", &[], b"")
        .await?
        .body;
    let js = http(&addr, "GET", "/assets/console.js", &[], b"")
        .await?
        .body;
    let logo = http(&addr, "GET", "/assets/logo.svg", &[], b"").await?.body;
    let assets = css.len() + js.len() + logo.len();

    // The queue, as staff use it: the newest first, filters, a search, deep pages.
    let queries = [
        "/applications",
        "/applications?status=pending",
        "/applications?service=KK_UPDATE&order=oldest",
        "/applications?bus=bus-ntt-07",
        "/applications?village=Desa%2012&warnings=1",
        "/applications?agency=POLRI&status=pending&order=oldest",
        "/applications?q=Warga%20Nomor%2042",
    ];
    let rounds = plan.console_requests / queries.len();
    let mut queue = Timing::new();
    for _ in 0..rounds.max(1) {
        for q in queries {
            let (ms, body) = get(&addr, q, &cookie).await?;
            queue.server_ms.push(ms);
            queue.bytes.push(body.len());
        }
    }
    // Page after page, by the `next` link (keyset).
    let mut deep = Timing::new();
    let mut path = "/applications".to_owned();
    for _ in 0..20 {
        let (ms, body) = get(&addr, &path, &cookie).await?;
        deep.server_ms.push(ms);
        let html = String::from_utf8_lossy(&body);
        let Some(next) = html
            .split("id=\"next-page\"")
            .next()
            .and_then(|b| b.rsplit("href=\"").next())
            .and_then(|s| s.split('"').next())
        else {
            break;
        };
        path = next.replace("&amp;", "&");
    }
    // Detail pages of applications spread over the whole store.
    let mut detail = Timing::new();
    for k in 0..plan.console_requests {
        let (bus, id) = &sample_ids[k % sample_ids.len()];
        let (ms, body) = get(&addr, &format!("/applications/{bus}/{id}"), &cookie).await?;
        detail.server_ms.push(ms);
        detail.bytes.push(body.len());
    }
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;

    let notes = format!(
        "{n} applications (50 buses, 40 villages, 2 services, 10% with NIK warnings) in HQ's SQLite store (filled in {fill_secs:.0} s); \
         server time from the console's Server-Timing header, handler start to response, over HTTP on loopback"
    );
    report.add(
        "console",
        "queue page: server time p50 / p95 / max",
        format!(
            "{:.1} / {:.1} / {:.1} ms",
            queue.pct(0.5),
            queue.pct(0.95),
            queue.pct(1.0)
        ),
        format!(
            "{} requests over 7 queries (newest, by status, by service oldest first, by bus, village + warnings, agency + status, name search); target p95 < 200 ms; {notes}",
            queue.server_ms.len()
        ),
    );
    report.add(
        "console",
        "queue page: deep pages (keyset) p95",
        format!("{:.1} ms", deep.pct(0.95)),
        format!(
            "{} pages of 50 followed by their next link",
            deep.server_ms.len()
        ),
    );
    report.add(
        "console",
        "queue page: weight",
        kib(queue.median_bytes() as f64),
        format!(
            "HTML of 50 rows (median); plus {} of CSS, JS and logo, compiled in and cached",
            kib(assets as f64)
        ),
    );
    report.add(
        "console",
        "detail page: server time p50 / p95 / max",
        format!(
            "{:.1} / {:.1} / {:.1} ms",
            detail.pct(0.5),
            detail.pct(0.95),
            detail.pct(1.0)
        ),
        format!(
            "{} requests over {} applications across the store; each view is also written to the audit log (a durable transaction); target p95 < 100 ms",
            detail.server_ms.len(),
            sample_ids.len()
        ),
    );
    report.add(
        "console",
        "detail page: weight",
        kib(detail.median_bytes() as f64),
        format!(
            "HTML (median); plus the ID photo {}",
            kib(jpeg.len() as f64)
        ),
    );
    Ok(())
}
