//! `casella doctor` (issue 20): a sound setup passes and prints each local
//! domain's DNS records; a configuration with an unknown key, an expired
//! certificate (and, in tests/startup_checks.rs, a data directory it cannot
//! write to) fail with the reason.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const CONFIG: &str = "hostname = \"mail.test\"\n[listen]\nimap = [\"127.0.0.1:0\"]\n";

fn casella(data: &Path, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn doctor(data: &Path) -> (bool, String) {
    let out = casella(data, &["doctor"], b"");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A data directory with the test configuration and one account.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("casella.toml"), CONFIG).unwrap();
    let out = casella(
        dir.path(),
        &["account", "add", "alice@example.org", "--password-stdin"],
        b"a good password\n",
    );
    assert!(out.status.success(), "{out:?}");
    dir
}

/// Writes a certificate for mail.test valid from `from` to `until` (years)
/// where serve keeps its own.
fn certificate(data: &Path, from: i32, until: i32) {
    let mut params = rcgen::CertificateParams::new(vec!["mail.test".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(until, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::create_dir_all(data.join("tls")).unwrap();
    std::fs::write(data.join("tls/cert.pem"), cert.pem()).unwrap();
    std::fs::write(data.join("tls/key.pem"), key.serialize_pem()).unwrap();
}

#[test]
fn a_sound_setup_passes_and_gets_its_dns_records() {
    let dir = setup();
    certificate(dir.path(), 2020, 2090);
    let (ok, text) = doctor(dir.path());
    assert!(ok, "{text}");
    for want in [
        "ok    configuration",
        "ok    data directory",
        "ok    certificate:",
        "ok    certificate names: covers mail.test",
        "ok    port imap 127.0.0.1:0: free",
        "example.org. MX 10 mail.test.",
        "_imaps._tcp.example.org. SRV 0 1 993 mail.test.",
        "_submission._tcp.example.org. SRV 0 1 587 mail.test.",
        "autoconfig.example.org. CNAME mail.test.",
        "0 failed",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
}

#[test]
fn an_unknown_configuration_key_fails_naming_it() {
    let dir = setup();
    std::fs::write(
        dir.path().join("casella.toml"),
        format!("{CONFIG}[imap]\nlogin-typo = \"secure-login\"\n"),
    )
    .unwrap();
    let (ok, text) = doctor(dir.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains("FAIL  configuration") && text.contains("login-typo"),
        "{text}"
    );
}

#[test]
fn an_expired_certificate_fails() {
    let dir = setup();
    certificate(dir.path(), 2019, 2021);
    let (ok, text) = doctor(dir.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains("FAIL  certificate") && text.contains("expired on 2021-01-01"),
        "{text}"
    );
}
