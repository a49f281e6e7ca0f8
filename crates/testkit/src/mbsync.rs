//! mbsync (isync) for tests: one channel between a server's account (far)
//! and local Maildirs (near: `inbox/` for INBOX, `maildir/NAME` for the
//! rest), every mailbox, creations and expunges both ways, its sync state
//! kept between runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::clients::{Run, run};

/// `mbsync -v` as (major, minor).
pub fn version(tmp: &Path) -> (u32, u32) {
    let mut cmd = Command::new("mbsync");
    cmd.arg("-v");
    let r = run(cmd, tmp).success();
    let out = r.out();
    let v = out
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no version\n{}", r.dump()));
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

pub struct Mbsync {
    dir: tempfile::TempDir,
    user: String,
    password: String,
    tls_mode: String,
}

impl Mbsync {
    /// A configuration for `user` on 127.0.0.1:`port`; `tls_mode` is "IMAPS"
    /// (implicit TLS) or "STARTTLS"; `cert` the server's certificate.
    pub fn new(port: u16, cert: &Path, user: &str, password: &str, tls_mode: &str) -> Mbsync {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("maildir")).expect("maildir");
        let mb = Mbsync {
            dir,
            user: user.to_string(),
            password: password.to_string(),
            tls_mode: tls_mode.to_string(),
        };
        mb.point_at(port, cert);
        mb
    }

    /// Points the far side at another server (the sync state stays: a moved
    /// account with the same UIDVALIDITY and UIDs is nothing new).
    pub fn point_at(&self, port: u16, cert: &Path) {
        let d = self.dir.path();
        let version = version(d);
        // isync 1.5 renames SSLType to TLSType; 1.4 renamed Master/Slave to Far/Near.
        let tls = if version >= (1, 5) {
            "TLSType"
        } else {
            "SSLType"
        };
        let (far, near) = if version >= (1, 4) {
            ("Far", "Near")
        } else {
            ("Master", "Slave")
        };
        let rc = format!(
            "IMAPAccount acct\n\
             Host 127.0.0.1\n\
             Port {port}\n\
             User {user}\n\
             Pass \"{password}\"\n\
             {tls} {tls_mode}\n\
             CertificateFile \"{cert}\"\n\
             SystemCertificates no\n\
             Timeout 20\n\
             \n\
             IMAPStore far\n\
             Account acct\n\
             \n\
             MaildirStore near\n\
             Path \"{path}/\"\n\
             Inbox \"{inbox}\"\n\
             SubFolders Verbatim\n\
             \n\
             Channel ch\n\
             {far} :far:\n\
             {near} :near:\n\
             Patterns *\n\
             Create Both\n\
             Expunge Both\n\
             Sync All\n\
             SyncState *\n",
            user = self.user,
            password = self.password,
            tls_mode = self.tls_mode,
            cert = cert.display(),
            path = d.join("maildir").display(),
            inbox = d.join("inbox").display(),
        );
        std::fs::write(d.join("mbsyncrc"), rc).expect("mbsyncrc");
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// One `mbsync -a -V` run, which must succeed.
    pub fn sync(&self) -> Run {
        let d = self.dir.path();
        let mut cmd = Command::new("mbsync");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", d)
            .env("LC_ALL", "C")
            .arg("-c")
            .arg(d.join("mbsyncrc"))
            .arg("-a")
            .arg("-V");
        let r = run(cmd, d);
        assert!(r.status.success(), "{}", r.dump());
        r
    }

    /// The local folder of a server mailbox.
    pub fn folder(&self, name: &str) -> PathBuf {
        if name == "INBOX" {
            self.dir.path().join("inbox")
        } else {
            self.dir.path().join("maildir").join(name)
        }
    }
}
