//! Dovecot's own replication client against casella (issue 18): `doveadm
//! backup -R` and `doveadm sync` over imapc between casella and a local
//! Maildir. The mail comes over with its folders, flags and keywords; a
//! second run transfers nothing (no message body fetched, no flag stored —
//! read from casella's protocol log); flag changes on either side reach the
//! other.
//!
//! dsync syncs with CONDSTORE/QRESYNC when the server offers them, as casella
//! does. Needs `doveadm` (Debian's dovecot-core): skipped with a line saying
//! so when it is missing, unless `CASELLA_REQUIRE_CLIENTS=1`.

use std::path::PathBuf;

use casella_testkit::clients::Run;
use casella_testkit::doveadm::Doveadm;
use casella_testkit::{LineClient, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "alice@example.org";
const PASS: &str = "secret pw 1";

fn doveadm_available() -> bool {
    casella_testkit::doveadm::available()
}

/// A local Dovecot (doveadm only, no server) with a Maildir, replicating to
/// casella over imapc.
struct Local(Doveadm);

impl Local {
    fn new(imap: std::net::SocketAddr) -> Local {
        Local(Doveadm::new(&format!(
            "imapc_host = {host}\nimapc_port = {port}\nimapc_user = {USER}\n\
             imapc_password = {PASS}\nimapc_features = rfc822.size fetch-headers modseq\n",
            host = imap.ip(),
            port = imap.port(),
        )))
    }

    fn home(&self) -> PathBuf {
        self.0.home()
    }

    /// `doveadm ARGS` as the local user.
    fn doveadm(&self, args: &[&str], stdin: Option<&[u8]>) -> Run {
        self.0.run(args, stdin)
    }

    /// The remote as doveadm names it: imapc, its index in memory.
    fn remote(&self) -> String {
        format!("imapc:{}/imapc-index", self.home().display())
    }

    /// `doveadm fetch 'uid flags' mailbox NAME`, as "uid flags" lines.
    fn flags(&self, mailbox: &str) -> Vec<String> {
        let out = self
            .doveadm(
                &["-f", "flow", "fetch", "uid flags", "mailbox", mailbox],
                None,
            )
            .success()
            .out();
        out.lines().map(|l| l.trim().to_string()).collect()
    }
}

fn login(s: &TestServer) -> LineClient {
    s.imap_login(USER, PASS)
}

/// The client commands in casella's IMAP protocol log so far.
fn logged_commands(s: &TestServer) -> Vec<String> {
    let dir = s.data_dir().join("logs").join("imap");
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            // date,protocol,session,seq,local,remote,event,data,context
            let fields: Vec<&str> = line.splitn(9, ',').collect();
            if fields.len() >= 8 && fields[6] == "<" {
                out.push(fields[7].trim_matches('"').replace("\"\"", "\""));
            }
        }
    }
    out
}

/// Commands that write to casella or read message content.
fn transfers(commands: &[String]) -> Vec<&String> {
    commands
        .iter()
        .filter(|c| {
            let u = c.to_ascii_uppercase();
            u.contains(" APPEND ")
                || u.contains(" STORE ")
                || u.contains(" EXPUNGE")
                || u.contains("BODY.PEEK[]")
                || u.contains("BODY[]")
                || u.contains("RFC822 ")
                || u.contains("RFC822)")
        })
        .collect()
}

#[test]
fn doveadm_backup_and_sync_with_a_local_maildir() {
    if !doveadm_available() {
        return;
    }
    let s = TestServer::builder(BIN)
        .protocols(&["imap", "imaps"])
        .config(
            "hostname = \"mail.test\"\n[imap]\nauth-failure-delay-ms = 0\n\
             login-type = \"plaintext-login\"\n",
        )
        .start();
    s.add_account(USER, PASS);
    for i in 1..=3 {
        s.deliver(
            USER,
            format!("From: bob@example.org\r\nSubject: hello {i}\r\nMessage-ID: <h{i}@example.org>\r\n\r\nbody {i}\r\n")
                .as_bytes(),
        );
    }
    let mut c = login(&s);
    c.imap("1", "CREATE Projects/2026");
    c.imap(
        "2",
        "APPEND Projects/2026 (\\Seen $Important) {27+}\r\nSubject: plan\r\n\r\nthe plan\r\n",
    );
    c.imap("3", "SELECT INBOX");
    c.imap("4", "STORE 2 +FLAGS (\\Flagged Custom-Kw)");
    c.imap("5", "LOGOUT");
    s.set_settings("imap", &["protocol-log=on"]);
    s.wait_for_settings();

    let local = Local::new(s.addr("imap"));
    let remote = local.remote();
    // casella → Maildir.
    local.doveadm(&["backup", "-R", &remote], None).success();
    let inbox = local.flags("INBOX");
    assert_eq!(inbox.len(), 3, "{inbox:?}");
    assert!(
        inbox[1].contains("\\Flagged") && inbox[1].contains("Custom-Kw"),
        "{inbox:?}"
    );
    let projects = local.flags("Projects/2026");
    assert_eq!(projects.len(), 1, "{projects:?}");
    assert!(
        projects[0].contains("\\Seen") && projects[0].contains("$Important"),
        "{projects:?}"
    );
    let bodies = local
        .doveadm(
            &["-f", "flow", "fetch", "hdr.subject", "mailbox", "INBOX"],
            None,
        )
        .success()
        .out();
    assert!(bodies.contains("hello 3"), "{bodies}");

    // A second run transfers nothing (the first fetched every body: the
    // log shows transfers when there are some).
    let first = logged_commands(&s);
    assert!(
        transfers(&first).len() >= 4,
        "the first backup fetched the messages: {first:?}"
    );
    let before = first.len();
    local.doveadm(&["backup", "-R", &remote], None).success();
    let second = logged_commands(&s);
    assert_eq!(
        transfers(&second[before..]),
        Vec::<&String>::new(),
        "second backup -R"
    );

    // Flags changed on both sides meet in a two-way sync.
    local
        .doveadm(
            &["flags", "add", "\\Answered", "mailbox", "INBOX", "uid", "1"],
            None,
        )
        .success();
    let mut c = login(&s);
    c.imap("1", "SELECT INBOX");
    c.imap("2", "UID STORE 3 +FLAGS (\\Seen Remote-Kw)");
    c.imap("3", "LOGOUT");
    local.doveadm(&["sync", &remote], None).success();
    let inbox = local.flags("INBOX");
    assert!(inbox[0].contains("\\Answered"), "{inbox:?}");
    assert!(
        inbox[2].contains("\\Seen") && inbox[2].contains("Remote-Kw"),
        "{inbox:?}"
    );
    let mut c = login(&s);
    c.imap("1", "EXAMINE INBOX");
    let r = c.imap("2", "UID FETCH 1 (FLAGS)");
    assert!(r[0].contains("\\Answered"), "{r:?}");
    c.imap("3", "LOGOUT");
    // And a second sync has nothing to do.
    let before = logged_commands(&s).len();
    local.doveadm(&["sync", &remote], None).success();
    let again = logged_commands(&s);
    assert_eq!(
        transfers(&again[before..]),
        Vec::<&String>::new(),
        "second sync"
    );
}
