//! The users' pages in a real headless Chromium (Debian's chromium and
//! chromium-driver; `.ci/run` installs them), driven over WebDriver by
//! tests/clients/browser_check.py: sign in, read the settings table, change the
//! POP options, create an app password, sign out. The screenshot of the settings
//! page is saved as target/screenshots/settings.png. A second test
//! (tests/clients/browser_session_check.py) checks that a signed-in session is
//! refused once its account is disabled or removed.
//!
//! Without chromium and chromedriver on the machine the tests say so and
//! pass, unless CASELLA_REQUIRE_CLIENTS=1 (CI sets it).

use casella_testkit::TestServer;
use casella_testkit::clients::python;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "alice@example.org";
const PASS: &str = "alice-pw";

fn have_browser() -> bool {
    casella_testkit::clients::available("/usr/bin/chromium", "chromium")
        && casella_testkit::clients::available("/usr/bin/chromedriver", "chromium-driver")
}

#[test]
fn settings_pop_options_and_app_password_in_a_real_browser() {
    if !have_browser() {
        return;
    }
    let s = TestServer::builder(BIN)
        .protocols(&["http", "imaps", "pop3s", "submission"])
        .start();
    s.add_account(USER, PASS);
    for (proto, value) in [
        ("imap", "mail.example.org:993:ssl"),
        ("pop", "mail.example.org:995:ssl"),
        ("submission", "mail.example.org:587:tls"),
    ] {
        let out = s.cli(
            &[
                "settings",
                proto,
                "set",
                &format!("external-connection-settings={value}"),
            ],
            b"",
        );
        assert!(out.status.success());
    }
    // The page is opened from 127.0.0.1, an internal network: with no internal
    // settings the external ones are shown.
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("settings.png");
    let tmp = tempfile::tempdir().unwrap();
    let base = format!("http://{}", s.addr("http"));
    let run = python(
        "browser_check.py",
        &[&base, USER, PASS, &shot.display().to_string()],
        tmp.path(),
    )
    .success();
    let v: Value =
        serde_json::from_slice(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.dump()));
    assert!(v["start"].as_str().unwrap().ends_with("/login"), "{v}");
    assert!(
        v["after_login"].as_str().unwrap().ends_with("/settings"),
        "{v}"
    );
    assert_eq!(v["username"], USER);
    assert_eq!(v["settings"]["imap"]["server"], "mail.example.org");
    assert_eq!(v["settings"]["imap"]["port"], "993");
    assert_eq!(v["settings"]["imap"]["encryption"], "SSL/TLS");
    assert_eq!(v["settings"]["pop"]["port"], "995");
    assert_eq!(v["settings"]["smtp"]["port"], "587");
    assert_eq!(v["settings"]["smtp"]["encryption"], "STARTTLS");
    assert!(v["screenshot_bytes"].as_u64().unwrap() > 10_000);
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    assert!(v["pop_saved"].as_str().unwrap().starts_with("Saved."));
    assert_eq!(
        v["pop_after"],
        serde_json::json!({"junk": true, "inbox": true, "mark_read": true, "move": true})
    );
    let app = v["app_password"].as_str().unwrap();
    assert_eq!(app.len(), 19, "{app}");
    assert!(v["after_logout"].as_str().unwrap().ends_with("/login"));
    assert!(
        v["settings_after_logout"]
            .as_str()
            .unwrap()
            .ends_with("/login")
    );

    // What the browser saved is what POP3 does now.
    let out = s.cli(&["account", "show", USER], b"");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("pop-folders: INBOX, Junk Email"), "{shown}");
    assert!(shown.contains("pop-mark-read: on"), "{shown}");
    assert!(shown.contains("pop-dele: move-to-deleted-items"), "{shown}");
}

/// Issue 16, finding 4: a session in the browser is refused at its next
/// request once its account is disabled (and stays refused when it is switched
/// on again) or removed — an administrator's too.
#[test]
fn a_disabled_or_removed_accounts_session_is_refused_in_a_real_browser() {
    if !have_browser() {
        return;
    }
    let s = TestServer::builder(BIN)
        .protocols(&["http", "imaps", "pop3s", "submission"])
        .start();
    s.add_account(USER, PASS);
    let out = s.cli(
        &[
            "account",
            "add",
            "admin@example.org",
            "--admin",
            "--password-stdin",
        ],
        b"admin-pw-1\n",
    );
    assert!(out.status.success());
    let tmp = tempfile::tempdir().unwrap();
    let base = format!("http://{}", s.addr("http"));
    let data = s.data_dir().display().to_string();
    let run = python(
        "browser_session_check.py",
        &[
            &base,
            USER,
            PASS,
            "admin@example.org",
            "admin-pw-1",
            BIN,
            &data,
        ],
        tmp.path(),
    )
    .success();
    let v: Value =
        serde_json::from_slice(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.dump()));
    let at = |k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("{k}: {v}"))
            .to_string()
    };
    assert!(at("signed_in").ends_with("/settings"), "{v}");
    assert!(at("after_disable").ends_with("/login"), "{v}");
    assert!(at("after_enable").ends_with("/login"), "{v}");
    assert!(at("signed_in_again").ends_with("/settings"), "{v}");
    assert!(at("after_remove").ends_with("/login"), "{v}");
    assert!(at("admin").ends_with("/admin"), "{v}");
    assert!(at("admin_after_remove").ends_with("/login"), "{v}");
}
