//! Shell completions and manual pages generated from the command line's own
//! definition (issue 20), so they never disagree with it.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_casella");

#[test]
fn completions_know_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        for command in ["serve", "localserve", "doctor", "account", "settings"] {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
    }
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "an unknown shell is refused");
}

#[test]
fn manpages_cover_the_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man1");
    let out = Command::new(BIN)
        .arg("manpages")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let main = std::fs::read_to_string(dir.join("casella.1")).unwrap();
    assert!(main.contains(".TH casella"), "{main}");
    assert!(
        main.contains("localserve") && main.contains("doctor"),
        "{main}"
    );
    for page in [
        "casella-serve.1",
        "casella-doctor.1",
        "casella-account-add.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
    // man(1) itself can render one, where it is installed.
    if std::process::Command::new("man")
        .arg("--version")
        .output()
        .is_ok()
    {
        let rendered = Command::new("man")
            .arg("-l")
            .arg(dir.join("casella-localserve.1"))
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&rendered.stdout);
        if rendered.status.success() && !text.trim().is_empty() {
            assert!(text.to_lowercase().contains("base"), "{text}");
        }
    }
}
