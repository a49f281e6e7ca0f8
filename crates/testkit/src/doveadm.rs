//! A local Dovecot for tests: `doveadm` (Debian's dovecot-core) over a
//! Maildir in a temporary home, no server. doveadm refuses to touch mail as
//! root, so as root it runs as `nobody`, in directories that user owns.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::clients::{Run, run_with_input};

pub const DOVEADM: &str = "/usr/bin/doveadm";

/// Whether doveadm is here (else the SKIPPED line, or a failure under
/// `CASELLA_REQUIRE_CLIENTS=1`).
pub fn available() -> bool {
    crate::clients::available(DOVEADM, "dovecot-core")
}

pub struct Doveadm {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Doveadm {
    /// A Maildir at `~/Maildir` (INBOX at its root, folders `.Name`, `/` as
    /// the separator clients see), with `extra` configuration lines.
    pub fn new(extra: &str) -> Doveadm {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for d in ["home", "run", "state"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        let config = root.join("dovecot.conf");
        std::fs::write(
            &config,
            format!(
                "base_dir = {r}/run\nstate_dir = {r}/state\nlog_path = {r}/dovecot.log\n\
                 ssl = no\nmail_location = maildir:~/Maildir\n\
                 namespace inbox {{\n  inbox = yes\n  separator = /\n}}\n{extra}",
                r = root.display(),
            ),
        )
        .expect("write dovecot.conf");
        std::fs::write(root.join("dovecot.log"), b"").expect("write log");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "nobody:"])
                .arg(root)
                .status()
                .expect("chown");
            assert!(status.success());
        }
        Doveadm { dir, config }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The Maildir's root.
    pub fn maildir(&self) -> PathBuf {
        self.home().join("Maildir")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `doveadm ARGS` as the local user, `stdin` fed to it.
    pub fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Run {
        // runuser sets HOME and USER from the password file: `env` puts ours back.
        let home = format!("HOME={}", self.home().display());
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--", "env", &home, "USER=local", DOVEADM]);
            c
        } else {
            let mut c = Command::new("env");
            c.args([&home, "USER=local", DOVEADM]);
            c
        };
        cmd.arg("-c").arg(&self.config).args(args);
        let input = match stdin {
            Some(bytes) => {
                let file = self.dir.path().join("stdin.eml");
                std::fs::write(&file, bytes).expect("write stdin");
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
                    .expect("chmod");
                std::process::Stdio::from(std::fs::File::open(&file).expect("open stdin"))
            }
            None => std::process::Stdio::null(),
        };
        run_with_input(cmd, self.dir.path(), input)
    }

    /// Gives a directory made by the test to doveadm's user.
    pub fn hand_over(&self, path: &Path) {
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "nobody:"])
                .arg(path)
                .status()
                .expect("chown");
            assert!(status.success());
        }
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe extern "C" {
        fn geteuid() -> u32;
    }
    unsafe { geteuid() == 0 }
}
