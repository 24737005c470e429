//! `Chunk::check`, `chunk_count` and `chunk_range`: the header checks of `up/chunk`, against
//! a plain model of what a valid chunk is, plus the round trip of a valid chunk through an
//! `UpEnvelope`.
//!
//! Input layout (little-endian): total_size u64, chunk_size u32, index u32, data_len u32;
//! the rest seeds the data bytes.
#![no_main]

use keliling_shared::application::MAX_ATTACHMENT_BYTES;
use keliling_shared::wire::{
    chunk_count, chunk_range, Chunk, Up, UpEnvelope, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES,
};
use keliling_shared::{BusId, Sha256, UnixMillis};
use libfuzzer_sys::fuzz_target;

fn take<const N: usize>(d: &mut &[u8]) -> Option<[u8; N]> {
    let (h, t) = d.split_first_chunk::<N>()?;
    *d = t;
    Some(*h)
}

fuzz_target!(|data: &[u8]| {
    let mut d = data;
    let (Some(t), Some(c), Some(i), Some(l)) = (
        take::<8>(&mut d),
        take::<4>(&mut d),
        take::<4>(&mut d),
        take::<4>(&mut d),
    ) else {
        return;
    };
    let total_size = u64::from_le_bytes(t);
    let chunk_size = u32::from_le_bytes(c);
    let index = u32::from_le_bytes(i);
    // At most a little over the largest chunk: longer data is refused the same way.
    let data_len = (u32::from_le_bytes(l) % (MAX_CHUNK_BYTES + 2)) as usize;

    // chunk_count / chunk_range for any values.
    let count = chunk_count(total_size, chunk_size);
    let r = chunk_range(total_size, chunk_size, index);
    assert!(
        r.start <= r.end && r.end <= total_size,
        "{r:?} outside 0..{total_size}"
    );
    assert!(r.end - r.start <= u64::from(chunk_size));
    if chunk_size > 0 {
        let exact = total_size.div_ceil(u64::from(chunk_size));
        assert_eq!(u64::from(count), exact.min(u64::from(u32::MAX)));
        if u64::from(index) < exact {
            assert!(r.end > r.start, "chunk {index} of {count} is empty");
            // All but the last chunk are full.
            if u64::from(index) + 1 < exact {
                assert_eq!(r.end - r.start, u64::from(chunk_size));
            } else {
                assert_eq!(r.end, total_size, "the last chunk does not reach the end");
            }
        } else {
            assert!(r.is_empty());
        }
    } else {
        assert_eq!(count, 0);
    }

    let bytes: Vec<u8> = (0..data_len)
        .map(|k| d.get(k % d.len().max(1)).copied().unwrap_or(k as u8))
        .collect();
    let chunk = Chunk {
        blob: Sha256::digest(d),
        total_size,
        chunk_size,
        index,
        data: bytes,
    };
    let model = (MIN_CHUNK_BYTES..=MAX_CHUNK_BYTES).contains(&chunk_size)
        && (1..=MAX_ATTACHMENT_BYTES).contains(&total_size)
        && u64::from(index) * u64::from(chunk_size) < total_size
        && data_len as u64
            == u64::from(chunk_size).min(total_size - u64::from(index) * u64::from(chunk_size));
    let checked = chunk.check();
    assert_eq!(
        checked.is_ok(),
        model,
        "check said {checked:?} for {chunk:?}"
    );
    if model {
        let env = UpEnvelope {
            bus_id: BusId::parse("bus-01").expect("bus id"),
            sent_at: UnixMillis(1),
            body: Up::Chunk(chunk),
        };
        let wire = env.encode().expect("a valid chunk fits an envelope");
        assert_eq!(
            UpEnvelope::decode(&wire).expect("a valid chunk decodes"),
            env
        );
    }
});
