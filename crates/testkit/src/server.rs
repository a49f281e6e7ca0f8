//! A real `casella serve` process for one test.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a server may take to print `ready`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ServerBuilder {
    bin: PathBuf,
    protocols: Vec<String>,
    config: String,
}

impl ServerBuilder {
    /// Listeners to start, one per protocol name, each on 127.0.0.1:0.
    pub fn protocols(mut self, protocols: &[&str]) -> Self {
        self.protocols = protocols.iter().map(|s| s.to_string()).collect();
        self
    }

    /// TOML written as `casella.toml` before the first start.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = toml.to_string();
        self
    }

    pub fn start(self) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("casella.toml"), &self.config).expect("write config");
        let mut server = TestServer {
            bin: self.bin,
            dir,
            protocols: self.protocols,
            child: None,
            addrs: HashMap::new(),
        };
        server.launch();
        server
    }
}

pub struct TestServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    protocols: Vec<String>,
    child: Option<Child>,
    addrs: HashMap<String, Vec<SocketAddr>>,
}

impl TestServer {
    /// What the IMAP protocol tests start from: `imap` and `imaps` listeners,
    /// host name mail.test, no delay after a failed login, and one account.
    pub fn imap_with_account(bin: impl Into<PathBuf>, user: &str, password: &str) -> TestServer {
        let s = TestServer::builder(bin)
            .protocols(&["imap", "imaps"])
            .config("hostname = \"mail.test\"\n[imap]\nauth-failure-delay-ms = 0\n")
            .start();
        s.add_account(user, password);
        s
    }

    /// An IMAP session over implicit TLS (the `imaps` listener), logged in.
    pub fn imap_login(&self, user: &str, password: &str) -> crate::LineClient {
        let mut c = crate::LineClient::connect_tls(self.addr("imaps"), &self.cert_path());
        c.expect("* OK");
        c.send_line(&format!("l LOGIN {user} \"{password}\""));
        c.expect_tagged("l OK");
        c
    }

    /// `bin` is the casella binary (`env!("CARGO_BIN_EXE_casella")` in tests).
    /// By default: pop3, pop3s, smtp and lmtp listeners; logins without delay after
    /// a failure (tests that check the delay configure it).
    pub fn builder(bin: impl Into<PathBuf>) -> ServerBuilder {
        ServerBuilder {
            bin: bin.into(),
            protocols: ["pop3", "pop3s", "smtp", "lmtp"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            config: "hostname = \"mail.test\"\n[pop3]\nauth-failure-delay-ms = 0\n".into(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The self-signed certificate the server made; clients trust it as their CA.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("tls").join("cert.pem")
    }

    /// The first listener of `protocol`.
    pub fn addr(&self, protocol: &str) -> SocketAddr {
        self.addrs_of(protocol)[0]
    }

    /// Every listener of `protocol`, in the order they were given.
    pub fn addrs_of(&self, protocol: &str) -> Vec<SocketAddr> {
        match self.addrs.get(protocol) {
            Some(v) if !v.is_empty() => v.clone(),
            _ => panic!("no {protocol} listener"),
        }
    }

    pub fn port(&self, protocol: &str) -> u16 {
        self.addr(protocol).port()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    fn launch(&mut self) {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--data").arg(self.dir.path()).arg("serve");
        for p in &self.protocols {
            cmd.arg("--listen").arg(format!("{p}=127.0.0.1:0"));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("server log");
        cmd.stdout(Stdio::piped()).stderr(log).stdin(Stdio::null());
        let mut child = cmd.spawn().expect("start casella");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.addrs.clear();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    panic!("casella did not become ready; log:\n{}", self.log());
                }
            };
            if line == "ready" {
                break;
            }
            if let Some(rest) = line.strip_prefix("listening ") {
                let mut parts = rest.split(' ');
                if let (Some(p), Some(a)) = (parts.next(), parts.next()) {
                    let addr: SocketAddr = a.parse().expect("address");
                    self.addrs.entry(p.to_string()).or_default().push(addr);
                }
            }
        }
        self.child = Some(child);
    }

    /// The server's log so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `casella settings SECTION set PAIRS…` (a protocol or `security`); panics
    /// unless it succeeds. A running server applies it within a second: see
    /// [`TestServer::wait_for_settings`].
    #[track_caller]
    pub fn set_settings(&self, section: &str, pairs: &[&str]) {
        let mut args = vec!["settings", section, "set"];
        args.extend_from_slice(pairs);
        let out = self.cli(&args, b"");
        assert!(
            out.status.success(),
            "settings {section} set: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits until the running server has read changed settings (it looks for
    /// changes every second).
    pub fn wait_for_settings(&self) {
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }

    /// Runs `casella --data DIR ARGS` with `stdin`, returning its output.
    pub fn cli(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new(&self.bin)
            .arg("--data")
            .arg(self.dir.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run casella");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin)
            .expect("write stdin");
        child.wait_with_output().expect("casella output")
    }

    pub fn add_account(&self, address: &str, password: &str) {
        let out = self.cli(
            &["account", "add", address, "--password-stdin"],
            format!("{password}\n").as_bytes(),
        );
        assert!(
            out.status.success(),
            "account add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `casella deliver --to ADDRESS`; panics unless it succeeds.
    pub fn deliver(&self, to: &str, message: &[u8]) {
        let out = self.cli(&["deliver", "--to", to], message);
        assert!(
            out.status.success(),
            "deliver: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIGTERM, then waits for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        signal(child.id(), "TERM");
        wait_bounded(&mut child, Duration::from_secs(20))
    }

    /// SIGKILL: the process dies at once, with no chance to flush anything.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("server running");
        signal(child.id(), "KILL");
        let _ = child.wait();
    }

    /// Starts the server again on the same data directory (new ports).
    pub fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.stop();
            assert!(status.success(), "clean stop: {status:?}");
        }
        self.launch();
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("casella did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
