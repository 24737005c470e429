//! `Bitmap`: the chunk set HQ sends in `Progress`/`RecordAck` and the bus stores as bytes
//! (`Bitmap::from_bytes`). Checks every query against a plain model of the bytes, `set`
//! growth, and the serde round trip inside a `Down::Progress` envelope.
//!
//! Input: a little-endian u16 chunk count, then the bitmap bytes.
#![no_main]

use keliling_shared::bitmap::Bitmap;
use keliling_shared::wire::{BlobProgress, Down, DownEnvelope};
use keliling_shared::{BusId, Sha256, UnixMillis};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((len, raw)) = data.split_first_chunk::<2>() else {
        return;
    };
    let len = u32::from(u16::from_le_bytes(*len));
    let model = |i: u32| {
        raw.get((i / 8) as usize)
            .is_some_and(|b| b >> (i % 8) & 1 == 1)
    };

    let mut b = Bitmap::from_bytes(raw.to_vec());
    assert_eq!(b.as_bytes(), raw);
    let ones: u32 = raw.iter().map(|x| x.count_ones()).sum();
    assert_eq!(b.count(), ones);
    let mut set_below = 0;
    for i in 0..len {
        assert_eq!(b.get(i), model(i), "bit {i}");
        set_below += u32::from(model(i));
    }
    assert!(!b.get(u32::MAX) || model(u32::MAX));
    let missing: Vec<u32> = b.missing(len).collect();
    assert_eq!(missing.len() as u32 + set_below, len);
    assert!(missing.windows(2).all(|w| w[0] < w[1]));
    assert!(missing.iter().all(|&i| i < len && !model(i)));
    assert_eq!(b.is_full(len), missing.is_empty());

    let empty = Bitmap::new(len);
    assert_eq!(empty.as_bytes().len(), (len as usize).div_ceil(8));
    assert_eq!(empty.count(), 0);
    assert_eq!(empty.is_full(len), len == 0);

    // Serde round trip as HQ sends it.
    let env = DownEnvelope {
        bus_id: BusId::parse("bus-01").expect("bus id"),
        sent_at: UnixMillis(0),
        body: Down::Progress(BlobProgress {
            blob: Sha256::from_bytes([7; 32]),
            chunk_count: len,
            have: b.clone(),
        }),
    };
    let key = keliling_fuzz::fuzz_key();
    if let Ok(wire) = env.encode_signed(&key) {
        let keys = keliling_fuzz::fuzz_keys();
        assert_eq!(
            DownEnvelope::decode_verified(&wire, &keys).expect("decodes"),
            env
        );
    }

    // Setting every missing index fills the bitmap; setting past the end grows it.
    for i in missing {
        b.set(i);
    }
    assert!(b.is_full(len));
    assert_eq!(b.count(), ones + len - set_below);
    let far = len + 9;
    let had = b.get(far);
    b.set(far);
    assert!(b.get(far));
    assert_eq!(b.count(), ones + len - set_below + u32::from(!had));
});
