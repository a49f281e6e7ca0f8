//! `casella import mbox` and `casella export mbox` (issue 19) with Python's
//! own `mailbox` module on the other side: an mbox Python wrote comes in with
//! its flags (Status/X-Status) and dates, imaplib sees them; what casella
//! exports Python reads back with the same subjects, flags and bodies (a body
//! line starting with "From " survives the quoting both ways).

use casella_testkit::TestServer;
use casella_testkit::clients::python;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "mbox@example.org";
const PASS: &str = "correct horse battery staple";

fn py(step: &str, file: &std::path::Path) -> Value {
    let tmp = tempfile::tempdir().unwrap();
    let file = file.display().to_string();
    let out = python("mbox_check.py", &[step, &file], tmp.path()).success();
    serde_json::from_slice(&out.stdout).expect("mbox_check.py prints JSON")
}

fn cli_json(s: &TestServer, args: &[&str]) -> Value {
    let out = s.cli(args, b"");
    assert!(out.status.success(), "{args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

#[test]
fn python_mbox_in_and_casella_mbox_out() {
    let s = TestServer::builder(BIN)
        .protocols(&["imaps"])
        .config("hostname = \"mail.test\"\n")
        .start();
    s.add_account(USER, PASS);
    let dir = tempfile::tempdir().unwrap();
    let written = dir.path().join("python.mbox");
    py("write", &written);
    let file = written.display().to_string();
    let imported = cli_json(
        &s,
        &[
            "import",
            "mbox",
            USER,
            &file,
            "--folder",
            "From Python",
            "--json",
        ],
    );
    assert_eq!(imported["imported"], 2, "{imported}");

    let tmp = tempfile::tempdir().unwrap();
    let port = s.port("imaps").to_string();
    let cert = s.cert_path().display().to_string();
    let view = python(
        "mailbox_view.py",
        &["127.0.0.1", &port, &cert, USER, PASS],
        tmp.path(),
    )
    .success();
    let view: Value = serde_json::from_slice(&view.stdout).unwrap();
    let messages = view["From Python"]["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 2, "{view}");
    assert_eq!(
        messages[0][1],
        serde_json::json!(["\\Answered", "\\Seen"]),
        "{view}"
    );
    assert_eq!(messages[1][1], serde_json::json!(["\\Flagged"]), "{view}");
    assert_eq!(messages[0][2], "01-Dec-2026 10:00:00 +0000", "{view}");

    let out = dir.path().join("export");
    let out_arg = out.display().to_string();
    let exported = cli_json(&s, &["export", "mbox", USER, &out_arg, "--json"]);
    assert_eq!(exported["exported"], 2, "{exported}");
    // Python reads casella's export as it reads its own file (subjects,
    // flags, bodies with their quoted "From " line, dates).
    let read = py("read", &out.join("From Python.mbox"));
    let own = py("read", &written);
    let fields = |v: &Value| -> Vec<(Value, Value, Value)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|m| (m["subject"].clone(), m["flags"].clone(), m["body"].clone()))
            .collect()
    };
    assert_eq!(fields(&read), fields(&own), "{read} / {own}");
    assert_eq!(read[0]["flags"], "AR", "{read}");
    assert_eq!(read[1]["flags"], "F", "{read}");
    assert!(
        read[0]["from_line"]
            .as_str()
            .unwrap()
            .contains("Dec  1 10:00:00 2026"),
        "{read}"
    );
    // Back in, to another folder: the same messages again.
    let again = cli_json(
        &s,
        &[
            "import",
            "mbox",
            USER,
            &out.join("From Python.mbox").display().to_string(),
            "--folder",
            "Again",
            "--json",
        ],
    );
    assert_eq!(again["imported"], 2, "{again}");
}
