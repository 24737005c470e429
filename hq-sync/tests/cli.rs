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

fn run_ok(dir: &std::path::Path, args: &[&str]) -> String {
    let out = hq_sync()
        .args(args)
        .env("HQ_SYNC__PKI__DIR", dir.join("pki"))
        .env("HQ_SYNC__DATA_DIR", dir.join("hq"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hq-sync {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run_err(dir: &std::path::Path, args: &[&str]) -> String {
    let out = hq_sync()
        .args(args)
        .env("HQ_SYNC__PKI__DIR", dir.join("pki"))
        .env("HQ_SYNC__DATA_DIR", dir.join("hq"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "hq-sync {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_embedded_broker_refuses_a_taken_port_clearly() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(dir.path(), &["pki", "init"]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = run_err(dir.path(), &["broker", "--listen", &addr.to_string()]);
    assert!(err.contains("cannot listen"), "{err}");
}

#[test]
fn the_embedded_broker_needs_a_pki_and_stays_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let err = run_err(dir.path(), &["broker", "--listen", "127.0.0.1:0"]);
    assert!(err.contains("hq-sync pki init"), "{err}");
    run_ok(dir.path(), &["pki", "init"]);
    let err = run_err(dir.path(), &["broker", "--listen", "0.0.0.0:0"]);
    assert!(err.contains("refusing to expose"), "{err}");
    assert!(err.contains("--expose"), "{err}");
}

#[test]
fn provisioning_and_revoking_a_bus() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(
        dir.path(),
        &["pki", "init", "--broker-name", "hq.example.go.id"],
    );
    assert!(out.contains("hq.example.go.id"), "{out}");
    let err = run_err(dir.path(), &["pki", "init"]);
    assert!(err.contains("already exists"), "{err}");

    let out = run_ok(
        dir.path(),
        &[
            "pki",
            "provision-bus",
            "bus-ntt-07",
            "--broker-host",
            "hq.example.go.id",
        ],
    );
    assert!(
        out.contains("bus-node -c /etc/keliling/bus.toml init"),
        "{out}"
    );
    let bundle = dir.path().join("pki/buses/bus-ntt-07");
    for f in ["bus.toml", "tls/ca.pem", "tls/bus.pem", "tls/bus.key"] {
        assert!(bundle.join(f).exists(), "bundle lacks {f}");
    }
    let toml = std::fs::read_to_string(bundle.join("bus.toml")).unwrap();
    assert!(toml.contains("host = \"hq.example.go.id\""), "{toml}");
    // The bundle pins HQ's two signing keys; a rotation promotes the second.
    assert!(
        toml.contains("hq_keys = \"/etc/keliling/hq-keys.pub\""),
        "{toml}"
    );
    let pinned = std::fs::read_to_string(bundle.join("hq-keys.pub")).unwrap();
    let pinned = keliling_shared::sign::VerifyingKeys::parse(&pinned).unwrap();
    assert_eq!(pinned.keys().len(), 2);
    let out = run_ok(dir.path(), &["pki", "rotate-signing"]);
    assert!(out.contains("Signing key rotated"), "{out}");
    let current = hq_sync::signing::load(&dir.path().join("pki/signing/current.key")).unwrap();
    assert!(
        pinned.verify(&current.sign(b"x".to_vec())).is_ok(),
        "a bus provisioned before the rotation believes the new current key"
    );

    let err = run_err(
        dir.path(),
        &["pki", "provision-bus", "Bus 7", "--broker-host", "x"],
    );
    assert!(err.contains("Bus 7"), "a bad bus id is refused: {err}");

    let out = run_ok(
        dir.path(),
        &["pki", "revoke", "bus-ntt-07", "--reason", "stolen"],
    );
    assert!(out.contains("Revoked bus-ntt-07"), "{out}");
    let list = run_ok(dir.path(), &["pki", "list"]);
    let line = list.lines().find(|l| l.contains("bus-ntt-07")).unwrap();
    assert!(line.contains("revoked"), "{list}");
    // HQ's own database knows too, for ingest.
    let db = rusqlite::Connection::open(dir.path().join("hq/hq.sqlite")).unwrap();
    let n: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM revoked_buses WHERE bus_id = 'bus-ntt-07'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
    // A stolen bus's id is never issued again.
    let err = run_err(
        dir.path(),
        &[
            "pki",
            "provision-bus",
            "bus-ntt-07",
            "--broker-host",
            "x",
            "--renew",
        ],
    );
    assert!(err.contains("never issued again"), "{err}");
}

#[test]
fn hq_workers_get_their_own_certificates_and_acl_lines() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(dir.path(), &["pki", "init"]);
    assert!(out.contains("hq/hq-1.pem"), "{out}");
    let out = run_ok(dir.path(), &["pki", "provision-hq", "hq-2"]);
    assert!(out.contains("hq/hq-2.pem"), "{out}");
    assert!(dir.path().join("pki/hq/hq-2.key").exists());
    let err = run_err(dir.path(), &["pki", "provision-hq", "bus-ntt-01"]);
    assert!(err.contains("not an HQ worker name"), "{err}");
    // No bus may be given an HQ name.
    let err = run_err(
        dir.path(),
        &["pki", "provision-bus", "hq-3", "--broker-host", "x"],
    );
    assert!(err.contains("reserved"), "{err}");

    let acl = run_ok(dir.path(), &["pki", "acl"]);
    assert!(
        acl.contains("user hq-1\n") && acl.contains("user hq-2\n"),
        "{acl}"
    );
    let out_file = dir.path().join("keliling.acl");
    run_ok(
        dir.path(),
        &["pki", "acl", "--out", out_file.to_str().unwrap()],
    );
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), acl);

    let out = run_ok(
        dir.path(),
        &["pki", "revoke", "hq-2", "--reason", "retired"],
    );
    assert!(out.contains("Revoked HQ worker hq-2"), "{out}");
    let list = run_ok(dir.path(), &["pki", "list"]);
    let line = list.lines().find(|l| l.contains("hq-2")).unwrap();
    assert!(line.starts_with("hq") && line.contains("revoked"), "{list}");
    let acl = run_ok(dir.path(), &["pki", "acl"]);
    assert!(
        !acl.contains("user hq-2"),
        "a revoked worker keeps its ACL lines: {acl}"
    );
    // A NATS cluster's users: one per valid certificate, by its own name.
    let nats = dir.path().join("nats");
    let out = run_ok(
        dir.path(),
        &["pki", "nats-auth", "--out-dir", nats.to_str().unwrap()],
    );
    assert!(out.contains("0 buses, 1 HQ workers"), "{out}");
    let auth = std::fs::read_to_string(nats.join("auth.conf")).unwrap();
    assert!(
        auth.contains("# HQ worker hq-1\n    { user: \"urn:keliling:cert:hq-1:"),
        "{auth}"
    );
    assert!(
        !auth.contains("hq-2"),
        "a revoked worker is a NATS user: {auth}"
    );
}

/// `hq-sync run` with a worker id that is not its certificate's name stops at start.
#[test]
fn run_refuses_a_worker_id_that_is_not_the_certificate_name() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(dir.path(), &["pki", "init"]);
    let pki = dir.path().join("pki");
    let out = hq_sync()
        .args(["run"])
        .env("HQ_SYNC__PKI__DIR", &pki)
        .env("HQ_SYNC__DATA_DIR", dir.path().join("hq"))
        .env("HQ_SYNC__INGEST__WORKER_ID", "hq-2")
        .env("HQ_SYNC__BROKER__TLS__CERT", pki.join("hq/hq-1.pem"))
        .env("HQ_SYNC__BROKER__TLS__KEY", pki.join("hq/hq-1.key"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("common name is \"hq-1\"") && err.contains("provision-hq hq-2"),
        "{err}"
    );
}
