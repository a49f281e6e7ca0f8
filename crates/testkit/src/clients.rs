//! Running independent client programs (Python scripts in `tests/clients/`, curl,
//! fetchmail, mbsync, swaks) from protocol tests.
//!
//! Each program runs in its own process group with a time limit; when it overruns
//! the group is killed and the test fails with what it printed. Tests ask
//! [`available`] (or [`python_module`]) first: a missing program skips the test
//! with one line naming what to install, unless `CASELLA_REQUIRE_CLIENTS=1`
//! (`.ci/run` installs them all and sets it).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long one client program may run.
pub const CLIENT_LIMIT: Duration = Duration::from_secs(60);

/// What a client program did.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub what: String,
}

impl Run {
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Everything the program printed, for failure messages.
    pub fn dump(&self) -> String {
        format!(
            "{} exited with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what,
            self.status,
            self.out(),
            self.stderr
        )
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    #[track_caller]
    pub fn success(self) -> Run {
        assert!(self.status.success(), "{}", self.dump());
        self
    }
}

/// The Debian package that holds `program`.
fn package_of(program: &str) -> &str {
    match program {
        "mbsync" => "isync",
        other => other,
    }
}

/// Runs `cmd` with stdout/stderr in files under `tmp` (so a child that keeps them
/// open cannot hang the test), in its own process group, for at most
/// [`CLIENT_LIMIT`].
#[track_caller]
pub fn run(cmd: Command, tmp: &Path) -> Run {
    run_with_input(cmd, tmp, Stdio::null())
}

/// [`run`] with `input` as the child's standard input.
#[track_caller]
pub fn run_with_input(mut cmd: Command, tmp: &Path, input: Stdio) -> Run {
    let what = format!("{cmd:?}");
    let program = cmd.get_program().to_string_lossy().into_owned();
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let out_path = tmp.join(format!("run-{n}.stdout"));
    let err_path = tmp.join(format!("run-{n}.stderr"));
    let out_file = std::fs::File::create(&out_path).expect("stdout file");
    let err_file = std::fs::File::create(&err_path).expect("stderr file");
    cmd.stdin(input)
        .stdout(out_file)
        .stderr(err_file)
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{program}` is not installed, and this test needs it \
             (CI installs it: `apt-get install -y {}`; see .ci/run)",
            package_of(&program)
        ),
        Err(e) => panic!("cannot start {what}: {e}"),
    };
    let deadline = Instant::now() + CLIENT_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            // The child leads its own group: this kills it and whatever it started.
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg("--")
                .arg(format!("-{}", child.id()))
                .status();
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {CLIENT_LIMIT:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: std::fs::read(&out_path).expect("read stdout"),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        what,
    }
}

/// `tests/clients/` of the repository.
pub fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients")
}

/// `python3 -I tests/clients/SCRIPT ARGS` (isolated: no user site, no PYTHON* env).
#[track_caller]
pub fn python(script: &str, args: &[&str], tmp: &Path) -> Run {
    let mut cmd = Command::new("python3");
    cmd.arg("-I").arg(scripts().join(script)).args(args);
    run(cmd, tmp)
}

/// `curl` with no ~/.curlrc, no proxy, and its own time limit.
#[track_caller]
pub fn curl(args: &[&str], tmp: &Path) -> Run {
    let mut cmd = Command::new("curl");
    cmd.arg("-q")
        .args([
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "30",
            "--connect-timeout",
            "10",
        ])
        .args(args)
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy");
    run(cmd, tmp)
}

/// Writes `bytes` to `dir/name` and returns the path as a string.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write file");
    p.to_string_lossy().into_owned()
}

/// What Python's poplib (`command` "pop") or imaplib ("imap") sees of `user`'s
/// mailbox over implicit TLS, as the JSON tests/clients/mailbox_dump.py prints.
#[track_caller]
pub fn mailbox_dump(
    s: &crate::TestServer,
    command: &str,
    user: &str,
    password: &str,
    extra: &[&str],
) -> Vec<u8> {
    let tmp = tempfile::tempdir().expect("temp dir");
    let cert = s.cert_path().display().to_string();
    let pop_port = s.port("pop3s").to_string();
    let imap_port = s.port("imaps").to_string();
    let mut args = vec![
        command,
        "--pop-port",
        &pop_port,
        "--imap-port",
        &imap_port,
        "--user",
        user,
        "--password",
        password,
        "--cert",
        &cert,
    ];
    args.extend_from_slice(extra);
    python("mailbox_dump.py", &args, tmp.path())
        .success()
        .stdout
}

/// Runs a SASL login script of tests/clients (`oauth_check.py`,
/// `scram_check.py`): `proto` is imap (implicit TLS), pop (implicit TLS) or smtp
/// (submission with STARTTLS); `secret` is the token or the password. Returns
/// the JSON the script prints.
#[track_caller]
pub fn sasl_login(
    script: &str,
    s: &crate::TestServer,
    proto: &str,
    mechanism: &str,
    user: &str,
    secret: &str,
) -> Vec<u8> {
    let tmp = tempfile::tempdir().expect("temp dir");
    let port = match proto {
        "imap" => s.port("imaps"),
        "pop" => s.port("pop3s"),
        _ => s.port("submission"),
    }
    .to_string();
    let cert = s.cert_path().display().to_string();
    let args = [proto, mechanism, "127.0.0.1", &port, &cert, user, secret];
    python(script, &args, tmp.path()).success().stdout
}

/// Whether the outside program `program` (a name on PATH or a path),
/// from the Debian package `package`, is installed. When it is not, prints one
/// line naming what is missing and returns false, and the test skips — unless
/// `CASELLA_REQUIRE_CLIENTS=1` (`.ci/run` sets it after installing them all),
/// which makes the absence a failure.
#[track_caller]
pub fn available(program: &str, package: &str) -> bool {
    let found = if program.contains('/') {
        Path::new(program).is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
    };
    if !found {
        missing(&format!("{program} (apt-get install {package})"));
    }
    found
}

/// Whether Python 3 can import `module` (`install` says how to get it), with
/// the same skip-or-fail rule as [`available`].
#[track_caller]
pub fn python_module(module: &str, install: &str) -> bool {
    if !available("python3", "python3") {
        return false;
    }
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        missing(&format!("the Python module {module} ({install})"));
    }
    found
}

/// Says that `what` is missing: a failure with `CASELLA_REQUIRE_CLIENTS=1`,
/// otherwise one line, and the caller skips its test.
#[track_caller]
pub(crate) fn missing(what: &str) {
    if std::env::var("CASELLA_REQUIRE_CLIENTS").as_deref() == Ok("1") {
        panic!("{what} is not installed, and CASELLA_REQUIRE_CLIENTS=1 requires it");
    }
    // Straight to standard error, past the test harness's capture: the line
    // shows in `cargo test`'s output although the test passes.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {what} is not installed");
}
