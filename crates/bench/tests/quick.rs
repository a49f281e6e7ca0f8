//! Runs `casella-bench quick`: every workload for about a second with tiny sizes,
//! against the debug casella binary of this workspace.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `target/debug/casella` of this workspace (or of $CARGO_TARGET_DIR).
fn casella_binary() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
        Some(d) => manifest.join("../..").join(d),
        None => manifest.join("../../target"),
    };
    target.join("debug").join("casella")
}

#[test]
fn quick_mode_runs_every_workload_against_casella() {
    let casella = casella_binary();
    if !casella.exists() {
        eprintln!(
            "SKIPPED: {} does not exist; build it first (cargo build -p casella, or cargo test --workspace)",
            casella.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_casella-bench"))
        .arg("quick")
        .arg("--casella")
        .arg(&casella)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start casella-bench");
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            // SIGTERM first: the bench then stops the casella it started.
            terminate(child.id());
            std::thread::sleep(Duration::from_secs(5));
            let _ = child.kill();
            let _ = child.wait();
            panic!("casella-bench quick did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        status.success(),
        "exit {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for title in [
        "### imap-mixed",
        "### idle-memory",
        "### pop3-retr",
        "### submission",
        "### push-latency",
        "### search",
    ] {
        assert!(stdout.contains(title), "{title} missing:\n{stdout}");
    }
    assert!(
        stdout.contains("quick: every workload ran, 0 protocol errors"),
        "{stdout}\n{stderr}"
    );
    // Figures that must be there with a value.
    for figure in [
        "| commands/s |",
        "| PSS per session KiB |",
        "| MB per server CPU-s |",
        "| submission messages/s |",
        "| APPEND→EXISTS p99 ms |",
        "| SEARCH TEXT p50 ms |",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(figure))
            .unwrap_or_else(|| panic!("{figure} missing:\n{stdout}"));
        assert!(!line.contains("n/a"), "{line}");
    }
}

/// SIGTERM through the `kill` program (no libc in the test).
fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}
