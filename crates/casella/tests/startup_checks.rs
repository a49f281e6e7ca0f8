//! What `serve` refuses at start, with the reason, instead of printing
//! `ready` and failing every login later (issue 20): a data directory it
//! cannot write to. As root (who may write anywhere) the server runs as
//! `nobody` over a directory root owns; otherwise the directory is made
//! read-only.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_casella");

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn a_data_directory_it_cannot_write_to_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // A data directory as a first run leaves it: configuration and store.
    let made = Command::new(BIN)
        .arg("--data")
        .arg(&data)
        .args(["account", "list"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    assert!(data.join("store/store.db").exists());

    let root = is_root();
    // Readable by all (nobody must reach the files), writable by root alone.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for dir in [data.as_path(), data.join("store").as_path()] {
        let mode = if root { 0o755 } else { 0o555 };
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    for f in ["casella.toml", "store/store.db"] {
        std::fs::set_permissions(data.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut cmd = if root {
        if !casella_testkit::clients::available("runuser", "util-linux") {
            return;
        }
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    cmd.arg("--data")
        .arg(&data)
        .args(["serve", "--listen", "imap=127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("serve kept running over a data directory it cannot write to");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    // `casella doctor` says the same, as a failed check.
    let mut doctor = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    let checked = doctor
        .arg("--data")
        .arg(&data)
        .arg("doctor")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&checked.stdout);
    assert!(!checked.status.success(), "{report}");
    assert!(
        report.contains("FAIL  data directory") && report.contains("is not writable"),
        "{report}"
    );
    if !root {
        // Let the temp dir go.
        for dir in [data.as_path(), data.join("store").as_path()] {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
        }
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(!stdout.contains("ready"), "{stdout}");
    assert!(
        stderr.contains("is not writable") && stderr.contains("Permission denied"),
        "{stderr}"
    );
}
