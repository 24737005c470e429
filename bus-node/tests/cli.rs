//! The `bus-node` binary as an operator meets it at the start of a shift: `init` once,
//! capture without the passphrase, `run` refusing a wrong one clearly, names shown only
//! when unlocked. (Being an integration test of this package also makes `cargo test
//! --workspace` build the binary, which the end-to-end suite starts as a real process.)

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const PASS: &str = "kata sandi shift pagi";

fn bus_node(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bus-node"));
    c.env("BUS_NODE__BUS_ID", "bus-cli-01")
        .env("BUS_NODE__DATA_DIR", dir)
        .env_remove("BUS_NODE_PASSPHRASE")
        .env_remove("BUS_NODE_NEW_PASSPHRASE")
        .env("RUST_LOG", "warn");
    c
}

/// Runs with `stdin` fed to the process.
fn run(mut cmd: Command, args: &[&str], stdin: &str) -> Output {
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The process may exit before it reads (a refusal): a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn capture_args(photo: &Path) -> Vec<String> {
    [
        "capture",
        "--operator",
        "Yohanes",
        "--village",
        "Desa Oelnasi",
        "--service",
        "SIM_RENEWAL",
        "--name",
        "Siti Aminah",
        "--nik",
        "5371015203900001",
        "--dob",
        "1990-03-12",
        "--sex",
        "P",
        "--address",
        "RT 01 RW 03",
        "--field",
        "sim_number=1234-5678-000001",
        "--field",
        "sim_class=C",
        "--field",
        "expiry_date=2026-12-31",
        "--quiet",
        "--photo",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(std::iter::once(photo.display().to_string()))
    .collect()
}

#[test]
fn a_shift_from_init_to_a_wrong_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("camera.jpg");
    let p = keliling_photo::fixtures::load_portrait().unwrap();
    std::fs::write(
        &photo,
        keliling_photo::fixtures::camera_jpeg(&p, 800, 600, 1, false, 90).unwrap(),
    )
    .unwrap();
    let data = dir.path().join("data");
    let capture: Vec<String> = capture_args(&photo);
    let capture: Vec<&str> = capture.iter().map(String::as_str).collect();

    // Before init: capture and run both say what to do.
    for args in [&capture[..], &["run"][..]] {
        let out = run(bus_node(&data), args, "");
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains("bus-node init"), "{args:?}: {err}");
    }

    // init: a short passphrase is refused; a good one sets the bus up, once.
    let out = run(bus_node(&data), &["init", "--passphrase-stdin"], "pendek\n");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("terlalu pendek"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        bus_node(&data),
        &["init", "--passphrase-stdin"],
        &format!("{PASS}\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Siap"), "{}", text(&out.stdout));
    let out = run(
        bus_node(&data),
        &["init", "--passphrase-stdin"],
        &format!("{PASS}\n"),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("sudah disiapkan"),
        "{}",
        text(&out.stderr)
    );

    // Capture needs no passphrase.
    let out = run(bus_node(&data), &capture, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tracking = text(&out.stdout).trim().to_owned();
    assert_eq!(tracking.len(), 36, "{tracking}");

    // run with a wrong passphrase, from the environment or stdin: a clear refusal.
    let mut cmd = bus_node(&data);
    cmd.env("BUS_NODE_PASSPHRASE", "bukan kata sandinya");
    let out = run(cmd, &["run"], "");
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr).trim(),
        "error: kata sandi salah (wrong passphrase)"
    );
    let out = run(
        bus_node(&data),
        &["run", "--passphrase-stdin"],
        "salah lagi ya\n",
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("kata sandi salah"));
    // No terminal and nothing given: says how to give it.
    let out = run(bus_node(&data), &["run"], "");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--passphrase-stdin"),
        "{}",
        text(&out.stderr)
    );

    // The list shows no names without the passphrase, and the name with it.
    let out = run(bus_node(&data), &["status"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plain = text(&out.stdout);
    assert!(
        plain.contains(&tracking) && !plain.contains("Siti"),
        "{plain}"
    );
    let out = run(
        bus_node(&data),
        &["status", "--names", "--passphrase-stdin"],
        &format!("{PASS}\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Siti Aminah"),
        "{}",
        text(&out.stdout)
    );

    // passwd: the old passphrase, then the new; afterwards only the new one unlocks.
    let new = "kata sandi shift sore";
    let out = run(
        bus_node(&data),
        &["passwd", "--passphrase-stdin"],
        &format!("{PASS}\n{new}\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(
        bus_node(&data),
        &["status", "--names", "--passphrase-stdin"],
        &format!("{PASS}\n"),
    );
    assert!(
        text(&out.stderr).contains("kata sandi salah"),
        "{}",
        text(&out.stderr)
    );
    let mut cmd = bus_node(&data);
    cmd.env("BUS_NODE_PASSPHRASE", new);
    let out = run(cmd, &["status", "--names"], "");
    assert!(
        text(&out.stdout).contains("Siti Aminah"),
        "{}",
        text(&out.stderr)
    );
}
