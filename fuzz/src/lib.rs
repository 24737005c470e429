//! Helpers shared by the fuzz targets and the seed generator.
//!
//! The targets check round-trip properties; the seed generator needs valid values of every
//! message so that libFuzzer starts from real encodings instead of from nothing.

use keliling_shared::application::{FieldName, MediaType, Phone};
use keliling_shared::bitmap::Bitmap;
use keliling_shared::wire::{
    BlobProgress, BlobQuery, BusStatus, Chunk, Down, DownEnvelope, Heartbeat, Up, UpEnvelope,
};
use keliling_shared::{
    Applicant, Application, ApplicationId, Attachment, AttachmentKind, BusId, GeoPoint, Nik,
    ServiceCode, Sex, Sha256, Stop, Text, UnixMillis,
};

/// HQ's signing key for fuzzing: fixed, so seeds signed with it verify in the targets.
pub fn fuzz_key() -> keliling_shared::sign::SigningKey {
    keliling_shared::sign::SigningKey::parse(&"4b".repeat(32)).expect("a fixed key")
}

/// The verifying keys a bus would pin for [`fuzz_key`].
pub fn fuzz_keys() -> keliling_shared::sign::VerifyingKeys {
    keliling_shared::sign::VerifyingKeys::new(vec![fuzz_key().verifying_key()]).expect("one key")
}

/// A fixed UUIDv7 so that seeds are reproducible.
pub fn app_id(n: u8) -> ApplicationId {
    let mut b = [
        0x01, 0x93, 0x5c, 0x2a, 0x7b, 0x10, 0x70, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 0,
    ];
    b[15] = n;
    ApplicationId::try_from(b).expect("a v7 uuid")
}

pub fn bus() -> BusId {
    BusId::parse("bus-ntt-01").expect("bus id")
}

/// A complete, valid application with every optional part present.
pub fn application(n: u8) -> Application {
    let text = |s: &str| Text::parse(s).expect("text");
    let photo = Sha256::digest(&[n, 1]);
    let scan = Sha256::digest(&[n, 2]);
    Application {
        id: app_id(n),
        bus_id: bus(),
        operator: text("Petugas Yohanes"),
        stop: Stop {
            village: text("Desa Oelnasi"),
            gps: GeoPoint::new(-10.17, 123.6),
        },
        service: ServiceCode::parse("SIM_RENEWAL").expect("service"),
        applicant: Applicant {
            full_name: text("Siti Aminah"),
            nik: Nik::parse("5371014303850001").expect("nik"),
            date_of_birth: time::Date::from_calendar_date(1985, time::Month::March, 3)
                .expect("date"),
            sex: Sex::Female,
            address: text("RT 02 RW 03, Kupang"),
            phone: Some(Phone::parse("+62 812-3456-7890").expect("phone")),
        },
        fields: [
            ("sim_number", "1234-5678-000001"),
            ("sim_class", "C"),
            ("expiry_date", "2026-12-31"),
        ]
        .into_iter()
        .map(|(k, v)| (FieldName::parse(k).expect("field"), text(v)))
        .collect(),
        attachments: vec![
            Attachment {
                kind: AttachmentKind::IdPhoto,
                sha256: photo,
                size: 41_234,
                media_type: MediaType::Jpeg,
            },
            Attachment {
                kind: AttachmentKind::Document(FieldName::parse("old_kk").expect("field")),
                sha256: scan,
                size: 1_500_000,
                media_type: MediaType::Pdf,
            },
        ],
        captured_at: UnixMillis(1_733_000_000_000),
    }
}

/// One valid value of every `Up` body.
pub fn up_samples() -> Vec<UpEnvelope> {
    let blob = Sha256::digest(b"photo");
    let env = |body| UpEnvelope {
        bus_id: bus(),
        sent_at: UnixMillis(1_733_000_000_123),
        body,
    };
    vec![
        env(Up::Record(Box::new(application(1)))),
        env(Up::Chunk(Chunk {
            blob,
            total_size: 5_000,
            chunk_size: 2_048,
            index: 2,
            data: (0..5_000 - 2 * 2_048).map(|i| i as u8).collect(),
        })),
        env(Up::Chunk(Chunk {
            blob,
            total_size: 1_500,
            chunk_size: 1_024,
            index: 0,
            data: vec![0xAB; 1_024],
        })),
        env(Up::Query(BlobQuery {
            blobs: vec![blob, Sha256::digest(b"scan")],
        })),
        env(Up::Heartbeat(Heartbeat {
            queue_depth: 3,
            bytes_waiting: 120_000,
            oldest_unsynced: Some(UnixMillis(1_732_999_000_000)),
            last_sync: None,
            position: GeoPoint::new(-8.65, 115.2),
            software: "bus-node 0.1.0".into(),
            bus_clock: UnixMillis(1_733_000_000_100),
        })),
        env(Up::Status(BusStatus::Online)),
        env(Up::Status(BusStatus::Offline)),
    ]
}

/// One valid value of every `Down` body.
pub fn down_samples() -> Vec<DownEnvelope> {
    let blob = Sha256::digest(b"photo");
    let mut have = Bitmap::new(10);
    for i in [0, 1, 2, 7] {
        have.set(i);
    }
    let env = |body| DownEnvelope {
        bus_id: bus(),
        sent_at: UnixMillis(1_733_000_000_456),
        body,
    };
    vec![
        env(Down::RecordAck {
            application: app_id(1),
            missing: vec![
                BlobProgress {
                    blob,
                    chunk_count: 10,
                    have: have.clone(),
                },
                BlobProgress {
                    blob: Sha256::digest(b"scan"),
                    chunk_count: 3,
                    have: Bitmap::new(3),
                },
            ],
        }),
        env(Down::Progress(BlobProgress {
            blob,
            chunk_count: 10,
            have,
        })),
        env(Down::BlobStored { blob }),
        env(Down::Delivered {
            application: app_id(1),
            hq_received_at: UnixMillis(1_733_000_001_000),
            content_hash: application(1).content_hash(),
            blobs: {
                let mut b: Vec<Sha256> = application(1)
                    .attachments
                    .iter()
                    .map(|a| a.sha256)
                    .collect();
                b.sort();
                b.dedup();
                b
            },
        }),
        env(Down::Rejected {
            application: Some(app_id(2)),
            blob: None,
            reason: "NIK tidak sah (invalid NIK)".into(),
        }),
    ]
}
