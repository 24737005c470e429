//! HQ ingest's apply path with decoded values, not only the decoders: whatever a bus may
//! send, through HQ's real store, staging and photo store (`hq_sync::ingest::Offline`, a
//! fresh HQ with a fleet PKI of three buses in a temporary directory, kept across runs so
//! the store fills up as in service).
//!
//! Input: a bus, a topic kind, then either a postcard `Up` body (decoded by the domain
//! types, so it holds only valid values, at any point of their ranges) that is wrapped in
//! a well-formed envelope for that bus, or, when it is not one, the raw bytes as payload.
//! Properties: nothing panics (overflow checks are on in the fuzz build); every answer
//! goes to the sending bus or, for a completed application, to its owner; the store stays
//! consistent (a complete application has all its blobs).
#![no_main]

use hq_sync::ingest::Offline;
use keliling_shared::topics::{Topics, UpKind};
use keliling_shared::wire::{Up, UpEnvelope};
use keliling_shared::BusId;
use libfuzzer_sys::fuzz_target;
use std::sync::{Mutex, OnceLock};

struct World {
    hq: Offline,
    buses: Vec<BusId>,
    topics: Topics,
    runs: u64,
    _dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let buses: Vec<BusId> = ["bus-a", "bus-b", "bus-c"]
            .iter()
            .map(|b| BusId::parse(b).expect("a bus id"))
            .collect();
        World {
            hq: Offline::for_fleet(dir.path(), &buses).expect("HQ ingest"),
            buses,
            topics: Topics::default(),
            runs: 0,
            _dir: dir,
        }
    }
}

static WORLD: OnceLock<Mutex<World>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let [b, k, body @ ..] = data else {
        return;
    };
    let world = WORLD.get_or_init(|| Mutex::new(World::new()));
    let mut w = match world.lock() {
        Ok(w) => w,
        Err(poisoned) => poisoned.into_inner(),
    };
    let bus = w.buses[usize::from(*b) % w.buses.len()].clone();
    let kind = UpKind::ALL[usize::from(*k) % UpKind::ALL.len()];
    let payload = match postcard::from_bytes::<Up>(body) {
        Ok(up) => UpEnvelope::new(bus.clone(), up)
            .encode()
            .unwrap_or_else(|_| body.to_vec()),
        Err(_) => body.to_vec(),
    };
    let topic = w.topics.up(&bus, kind);
    let answers = w.hq.apply(&topic, &payload);
    let owners = w.buses.clone();
    for (to, _) in &answers {
        assert!(
            owners.contains(to),
            "an answer to a bus that is not in the fleet: {to}"
        );
    }
    w.runs += 1;
    if w.runs % 512 == 0 {
        let store = w.hq.store();
        for (_, state, shas) in store.application_blobs().expect("applications") {
            if state == "complete" {
                for sha in shas {
                    assert!(
                        store.has_blob(&sha).expect("blobs"),
                        "complete without {sha:?}"
                    );
                }
            }
        }
    }
});
