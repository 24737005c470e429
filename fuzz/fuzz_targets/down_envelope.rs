//! `DownEnvelope::decode_verified`: everything HQ sends, as the bus's sync pump decodes
//! it. Each input is tried twice: as a whole signed payload (the outer decoder and the
//! signature check, with the fixed fuzz key pinned), and as a body that the fuzz key signs
//! (so the inner decoder sees every input, not only those with a valid signature).
//!
//! Properties: decoding never panics; what decodes re-encodes, decodes to the same value,
//! and that encoding is a fixed point (canonical). The bitmaps inside answer queries
//! without panicking whatever chunk count HQ claims.
#![no_main]

use keliling_fuzz::{fuzz_key, fuzz_keys};
use keliling_shared::sign::{SigningKey, VerifyingKeys};
use keliling_shared::wire::{BlobProgress, Down, DownEnvelope, MAX_MESSAGE_BYTES};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static KEYS: OnceLock<(SigningKey, VerifyingKeys)> = OnceLock::new();

fn exercise(p: &BlobProgress) {
    let _ = p.have.count();
    let _ = p.have.is_full(p.chunk_count);
    let _ = p.have.get(p.chunk_count.saturating_sub(1));
    // The bus walks `missing` lazily and within its window; do the same.
    let _ = p.have.missing(p.chunk_count).take(64).count();
}

fuzz_target!(|data: &[u8]| {
    let (key, keys) = KEYS.get_or_init(|| (fuzz_key(), fuzz_keys()));
    let _ = DownEnvelope::decode_verified(data, keys);
    let Ok(signed) = keliling_shared::wire::encode_signed_body(key, data) else {
        return;
    };
    let Ok(env) = DownEnvelope::decode_verified(&signed, keys) else {
        return;
    };
    let _ = format!("{env:?}");
    match &env.body {
        Down::RecordAck { missing, .. } => missing.iter().for_each(exercise),
        Down::Progress(p) => exercise(p),
        _ => {}
    }
    let bytes = env
        .encode_signed(key)
        .expect("a decoded envelope re-encodes");
    assert!(bytes.len() <= MAX_MESSAGE_BYTES);
    let again = DownEnvelope::decode_verified(&bytes, keys).expect("a re-encoded envelope decodes");
    assert_eq!(again, env, "decode(encode(x)) != x");
    assert_eq!(
        again.encode_signed(key).expect("encodes"),
        bytes,
        "encoding is not canonical"
    );
});
