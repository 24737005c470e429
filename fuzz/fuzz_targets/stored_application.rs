//! `Application::from_stored_bytes`: the record bytes the bus's and HQ's stores keep (the
//! wire's envelope format around one `Application`).
//!
//! Properties: decoding never panics; the decoded value round-trips through
//! `to_stored_bytes` to an equal value with an equal content hash, and the encoding is a
//! fixed point. `check_shape` and `warnings` run on whatever decoded without panicking.
#![no_main]

use keliling_shared::Application;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(app) = Application::from_stored_bytes(data) else {
        return;
    };
    let _ = app.check_shape();
    let _ = app.warnings();
    let _ = app.id_photo();
    let _ = format!("{app:?}");
    let _ = app.applicant.nik.masked();
    let _ = app.applicant.nik.serial();
    let bytes = app.to_stored_bytes().expect("a decoded record re-encodes");
    let again = Application::from_stored_bytes(&bytes).expect("a re-encoded record decodes");
    assert_eq!(again, app, "decode(encode(x)) != x");
    assert_eq!(again.content_hash(), app.content_hash());
    assert_eq!(
        again.to_stored_bytes().expect("encodes"),
        bytes,
        "encoding is not canonical"
    );
});
