//! `--log-format json` (or `CASELLA_LOG_FORMAT=json`, issue 20): every log
//! line on standard error is one JSON object a log collector can read, with
//! its time, level and message.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_casella");

#[test]
fn json_logs_are_one_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    // A first run writes the configuration and says so in the log.
    let out = Command::new(BIN)
        .arg("--data")
        .arg(tmp.path().join("data"))
        .args(["--log-format", "json", "account", "list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log lines");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("wrote the default configuration")),
        "{stderr}"
    );

    // The environment variable does the same; text is the default.
    let out = Command::new(BIN)
        .arg("--data")
        .arg(tmp.path().join("other"))
        .args(["account", "list"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("wrote the default configuration"));
    assert!(serde_json::from_str::<serde_json::Value>(text.lines().next().unwrap()).is_err());
    let out = Command::new(BIN)
        .env("CASELLA_LOG_FORMAT", "json")
        .arg("--data")
        .arg(tmp.path().join("third"))
        .args(["account", "list"])
        .output()
        .unwrap();
    let first = String::from_utf8_lossy(&out.stderr);
    let first = first.lines().next().expect("a log line");
    assert!(
        serde_json::from_str::<serde_json::Value>(first).is_ok(),
        "{first}"
    );
}
