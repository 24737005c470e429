//! Large bus backlogs, built quickly and honestly.
//!
//! A real `capture()` costs ~40-55 ms (the photo pipeline), so 10,000 applications would take
//! ten minutes. Instead a few applications are captured for real (unique phone photos through
//! the pipeline, catalogue check, sealed save), and the backlog is made of copies of them:
//! each copy is a new application (new UUIDv7 id, the target bus's id, its own capture time)
//! whose ID photo is the captured photo with a JPEG comment segment naming the copy, so every
//! copy has its own photo bytes and SHA-256, a separate sealed blob and its own chunks. Each
//! copy is saved through `Store::save` (sealed to the bus key, one durable transaction), the
//! same call `capture()` ends with. What is not varied: the citizen (copies of one template
//! share its name and NIK) and the pixels (the picture is that template's).

use crate::with_comment;
use anyhow::{Context, Result};
use bus_node::capture::capture;
use bus_node::store::Store;
use bus_node::BusConfig;
use keliling_e2e::harness::init_bus_store;
use keliling_e2e::sample;
use keliling_photo::fixtures;
use keliling_shared::application::MediaType;
use keliling_shared::{
    Application, ApplicationId, Attachment, AttachmentKind, BusId, Catalogue, Sha256, UnixMillis,
};
use std::path::Path;

/// Applications captured for real, with their normalized ID photo bytes.
pub(crate) struct Templates {
    pub(crate) items: Vec<(Application, Vec<u8>)>,
    pub(crate) chunk_size: u32,
}

impl Templates {
    /// Captures `k` SIM renewals with unique phone photos (`crate::unique_phone_photo`) into
    /// a store under `dir`, and reads their photos back.
    pub(crate) fn capture(k: usize, dir: &Path) -> Result<Templates> {
        let cfg = BusConfig::for_bus(BusId::parse(crate::BUS)?, dir.to_owned(), "127.0.0.1", 1883);
        let settings = cfg.capture_settings();
        let catalogue = Catalogue::builtin();
        let portrait = fixtures::load_portrait()?;
        let vault = init_bus_store(&cfg.db_path())?;
        let mut store = Store::open(&cfg.db_path())?;
        let mut items = Vec::with_capacity(k);
        for i in 0..k {
            // Numbered apart from the drain's and capture's citizens.
            let n = 50_000 + i;
            let photo = crate::unique_phone_photo(&portrait, n)?;
            let receipt = capture(
                &mut store,
                &catalogue,
                &settings,
                sample::sim_renewal(n, photo),
            )
            .with_context(|| format!("template capture {i}"))?;
            let app = receipt.application;
            let att = app
                .id_photo()
                .context("a template application has no ID photo")?
                .clone();
            let bytes = store.read_chunk(&att.sha256, 0..att.size, &vault)?;
            items.push((app, bytes));
        }
        Ok(Templates {
            items,
            chunk_size: settings.chunk_size,
        })
    }

    /// Copy number `n` of template `n % k`, for `bus`: a new application with its own photo
    /// bytes (the template's photo with a comment naming `n`).
    pub(crate) fn copy(&self, bus: &BusId, n: usize) -> (Application, Vec<(Attachment, Vec<u8>)>) {
        let (template, photo) = &self.items[n % self.items.len()];
        let bytes = with_comment(photo, n);
        let att = Attachment {
            kind: AttachmentKind::IdPhoto,
            sha256: Sha256::digest(&bytes),
            size: bytes.len() as u64,
            media_type: MediaType::Jpeg,
        };
        let mut app = template.clone();
        app.id = ApplicationId::new_v7();
        app.bus_id = bus.clone();
        app.attachments = vec![att.clone()];
        app.captured_at = UnixMillis::now();
        (app, vec![(att, bytes)])
    }

    /// A fresh store at `db` for `bus` holding copies `first..first + count`, saved one
    /// durable transaction each. Returns the photo bytes saved.
    pub(crate) fn fill_store(
        &self,
        db: &Path,
        bus: &BusId,
        first: usize,
        count: usize,
    ) -> Result<u64> {
        init_bus_store(db)?;
        let mut store = Store::open(db)?;
        let mut bytes = 0;
        for n in first..first + count {
            let (app, blobs) = self.copy(bus, n);
            bytes += blobs.iter().map(|(a, _)| a.size).sum::<u64>();
            store
                .save(&app, &blobs, self.chunk_size)
                .with_context(|| format!("saving copy {n} into {}", db.display()))?;
        }
        let status = store.status()?;
        if status.waiting() != count as u64 {
            anyhow::bail!(
                "{} holds {} waiting applications, expected {count}",
                db.display(),
                status.waiting()
            );
        }
        Ok(bytes)
    }
}
