//! The `hq-sync` binary as an operator meets it. (Being an integration test of this
//! package also makes `cargo test --workspace` build the binary, which the end-to-end
//! suite in `tests/` starts as a real process.)

use std::process::Command;

fn hq_sync() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hq-sync"))
}

#[test]
fn status_without_a_database_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = hq_sync()
        .arg("status")
        .env("HQ_SYNC__DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: no HQ database"), "{err}");
    assert!(err.contains("hq-sync run"), "{err}");
}

#[test]
fn a_bad_config_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hq.toml");
    std::fs::write(&cfg, "[ingest]\nbatch = 0\n").unwrap();
    let out = hq_sync()
        .args(["-c", cfg.to_str().unwrap(), "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ingest.batch"));

    std::fs::write(&cfg, "[brokr]\nport = 1\n").unwrap();
    let out = hq_sync()
        .args(["-c", cfg.to_str().unwrap(), "status"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("brokr"),
        "unknown keys are refused"
    );
}

#[test]
fn the_embedded_broker_refuses_a_taken_port_clearly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = hq_sync()
        .args(["broker", "--listen", &addr.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen"), "{err}");
}
