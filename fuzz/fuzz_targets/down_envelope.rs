//! `DownEnvelope::decode`: everything HQ sends, as the bus's sync pump decodes it.
//!
//! Properties: decoding never panics; what decodes re-encodes, decodes to the same value,
//! and that encoding is a fixed point (canonical). The bitmaps inside answer queries
//! without panicking whatever chunk count HQ claims.
#![no_main]

use keliling_shared::wire::{BlobProgress, Down, DownEnvelope, MAX_MESSAGE_BYTES};
use libfuzzer_sys::fuzz_target;

fn exercise(p: &BlobProgress) {
    let _ = p.have.count();
    let _ = p.have.is_full(p.chunk_count);
    let _ = p.have.get(p.chunk_count.saturating_sub(1));
    // The bus walks `missing` lazily and within its window; do the same.
    let _ = p.have.missing(p.chunk_count).take(64).count();
}

fuzz_target!(|data: &[u8]| {
    let Ok(env) = DownEnvelope::decode(data) else {
        return;
    };
    let _ = format!("{env:?}");
    match &env.body {
        Down::RecordAck { missing, .. } => missing.iter().for_each(exercise),
        Down::Progress(p) => exercise(p),
        _ => {}
    }
    let bytes = env.encode().expect("a decoded envelope re-encodes");
    assert!(bytes.len() <= MAX_MESSAGE_BYTES);
    let again = DownEnvelope::decode(&bytes).expect("a re-encoded envelope decodes");
    assert_eq!(again, env, "decode(encode(x)) != x");
    assert_eq!(
        again.encode().expect("encodes"),
        bytes,
        "encoding is not canonical"
    );
});
