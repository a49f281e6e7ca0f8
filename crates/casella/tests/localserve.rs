//! `casella localserve` (issue 20): every service on 127.0.0.1 high ports in a
//! data directory, an account ready to use with its password printed, the
//! same password on the next run. Logged into with Python's own imaplib,
//! poplib and smtplib (tests/clients/login_names_check.py).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use casella_testkit::clients::python;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const OFFSETS: [u16; 10] = [143, 993, 110, 995, 587, 465, 25, 24, 80, 443];

/// A base port whose ten ports are free now.
fn free_base() -> u16 {
    let seed = std::process::id() as u16;
    for attempt in 0..50u16 {
        let base = 20_000 + (seed.wrapping_mul(7).wrapping_add(attempt * 1_013)) % 40_000;
        let all_free = OFFSETS
            .iter()
            .all(|o| TcpListener::bind(("127.0.0.1", base + o)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no free base port found");
}

/// Starts localserve and returns it with what it printed up to "ready".
fn start(data: &std::path::Path, base: u16) -> (Child, String) {
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(["localserve", "--base-port", &base.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start casella localserve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut printed = String::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let ready = line.trim() == "ready";
            printed.push_str(&line);
            printed.push('\n');
            if ready {
                let _ = tx.send(printed.clone());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(90)) {
        Ok(printed) => (child, printed),
        Err(_) => {
            let _ = child.kill();
            panic!("localserve did not print ready");
        }
    }
}

fn password_of(printed: &str) -> String {
    printed
        .lines()
        .find_map(|l| l.strip_prefix("password"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no password in {printed}"))
        .to_string()
}

fn logins(data: &std::path::Path, base: u16, user: &str, password: &str) -> Value {
    let tmp = tempfile::tempdir().unwrap();
    let cert = data.join("tls/cert.pem").display().to_string();
    let (imaps, pop3s, submission) = (
        (base + 993).to_string(),
        (base + 995).to_string(),
        (base + 587).to_string(),
    );
    let args = [
        "127.0.0.1",
        &imaps,
        &pop3s,
        &submission,
        &cert,
        user,
        password,
    ];
    let out = python("login_names_check.py", &args, tmp.path()).success();
    serde_json::from_slice(&out.stdout).expect("login_names_check.py prints JSON")
}

#[test]
fn localserve_is_ready_to_use_on_loopback_high_ports() {
    let data = tempfile::tempdir().unwrap();
    let base = free_base();
    let (mut child, printed) = start(data.path(), base);
    let password = password_of(&printed);
    assert!(printed.contains("me@localhost"), "{printed}");
    assert!(
        printed.contains(&format!("127.0.0.1 port {} with SSL/TLS", base + 993)),
        "{printed}"
    );
    let r = logins(data.path(), base, "me@localhost", &password);
    let ok = |r: &Value| {
        r.as_object()
            .is_some_and(|m| m.len() == 5 && m.values().all(|v| v == true))
    };
    assert!(ok(&r), "{r}");
    let r = logins(data.path(), base, "me@localhost", "not the password");
    assert!(r.as_object().unwrap().values().all(|v| v == false), "{r}");
    child.kill().unwrap();
    child.wait().unwrap();

    // The next run keeps the account and its password.
    let (mut child, again) = start(data.path(), base);
    assert_eq!(password_of(&again), password);
    let r = logins(data.path(), base, "me@localhost", &password);
    assert!(ok(&r), "after a restart: {r}");
    child.kill().unwrap();
    child.wait().unwrap();
}
