//! `UpEnvelope::decode`: everything a bus sends, as HQ's ingest decodes it off the broker.
//!
//! Properties: decoding never panics; what decodes re-encodes, decodes to the same value,
//! and that encoding is a fixed point (canonical).
#![no_main]

use keliling_shared::wire::{Up, UpEnvelope, MAX_MESSAGE_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(env) = UpEnvelope::decode(data) else {
        return;
    };
    // What ingest does with a decoded message must not panic either.
    let _ = env.body.kind();
    let _ = format!("{env:?}");
    if let Up::Record(app) = &env.body {
        assert!(app.check_shape().is_ok(), "decode let a bad shape through");
        let _ = app.warnings();
        let _ = app.content_hash();
        let _ = app.id_photo();
        assert_eq!(app.bus_id, env.bus_id);
    }
    let bytes = env.encode().expect("a decoded envelope re-encodes");
    assert!(bytes.len() <= MAX_MESSAGE_BYTES);
    let again = UpEnvelope::decode(&bytes).expect("a re-encoded envelope decodes");
    assert_eq!(again, env, "decode(encode(x)) != x");
    assert_eq!(
        again.encode().expect("encodes"),
        bytes,
        "encoding is not canonical"
    );
});
