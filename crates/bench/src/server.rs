//! The servers under test: casella started by the bench in a temp dir, Dovecot
//! started the same way with a generated configuration, or a server already
//! running (`--target`). Every process the bench starts is stopped by its PID when
//! its guard is dropped — on success, on error and on panic.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::mail::{self, Shape};
use crate::procfs;
use crate::proto::{Imap, Smtp, dot_stuff};

/// How users are named: `format` with `{}` replaced by 1, 2, 3…
#[derive(Clone, Debug)]
pub struct Users {
    pub format: String,
    pub password: String,
}

impl Users {
    pub fn name(&self, i: usize) -> String {
        self.format.replace("{}", &i.to_string())
    }
}

#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    pub imap: Option<SocketAddr>,
    pub pop3: Option<SocketAddr>,
    pub submission: Option<SocketAddr>,
    pub lmtp: Option<SocketAddr>,
}

impl Endpoints {
    /// `imap=127.0.0.1:143, pop3=…` for the report.
    pub fn describe(&self) -> String {
        [
            ("imap", self.imap),
            ("pop3", self.pop3),
            ("submission", self.submission),
            ("lmtp", self.lmtp),
        ]
        .iter()
        .filter_map(|(p, a)| a.map(|a| format!("{p}={a}")))
        .collect::<Vec<_>>()
        .join(", ")
    }

    /// `imap=HOST:PORT,pop3=HOST:PORT,…`
    pub fn parse(spec: &str) -> Result<Endpoints> {
        let mut ep = Endpoints::default();
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (proto, addr) = part
                .split_once('=')
                .ok_or_else(|| anyhow!("--target: expected PROTO=HOST:PORT, got {part}"))?;
            let addr = std::net::ToSocketAddrs::to_socket_addrs(addr)
                .with_context(|| format!("--target: {addr}"))?
                .next()
                .ok_or_else(|| anyhow!("--target: {addr} has no address"))?;
            match proto {
                "imap" => ep.imap = Some(addr),
                "pop3" => ep.pop3 = Some(addr),
                "submission" => ep.submission = Some(addr),
                "lmtp" => ep.lmtp = Some(addr),
                _ => bail!("--target: unknown protocol {proto} (imap, pop3, submission, lmtp)"),
            }
        }
        Ok(ep)
    }
}

/// How mail gets into a target before a workload.
#[derive(Clone, Debug)]
pub enum Loader {
    /// One or more LMTP sessions (casella).
    Lmtp(SocketAddr),
    /// Maildir files written directly (Dovecot), owned by uid/gid.
    Maildir { root: PathBuf, uid: u32, gid: u32 },
    /// IMAP APPEND as each user (a running server without LMTP).
    Append(SocketAddr),
    /// Mail is already there.
    None,
}

/// One mailbox to fill: `count` messages of `stream` for user number `user`.
#[derive(Clone, Debug)]
pub struct Mailbox {
    pub user: usize,
    pub count: usize,
    pub stream: u64,
    pub shape: Shape,
}

pub struct Target {
    /// Column name in the report.
    pub name: String,
    pub ep: Endpoints,
    /// Root of the server's process tree, for CPU and memory.
    pub pid: Option<u32>,
    pub loader: Loader,
    /// What the column is, for the notes under the table.
    pub description: String,
    /// Where the server writes its log (for error reports).
    pub log: Option<PathBuf>,
    /// casella's binary and data directory, to ask how far its text index is.
    pub index_probe: Option<(PathBuf, PathBuf)>,
    _guard: Option<Guard>,
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    /// Warnings and errors the server logged (the first few), for the report.
    pub fn log_problems(&self) -> Vec<String> {
        let Some(p) = &self.log else {
            return Vec::new();
        };
        let text = std::fs::read_to_string(p).unwrap_or_default();
        let bad: Vec<&str> = text
            .lines()
            .filter(|l| {
                [
                    " WARN ", " ERROR ", "Warning:", "Error:", "Fatal:", "Panic:",
                ]
                .iter()
                .any(|k| l.contains(k))
            })
            .collect();
        let mut out: Vec<String> = bad
            .iter()
            .take(5)
            .map(|l| l.chars().take(300).collect())
            .collect();
        if bad.len() > 5 {
            out.push(format!("… {} such lines in all", bad.len()));
        }
        out
    }

    pub fn log_tail(&self) -> String {
        let Some(p) = &self.log else {
            return String::new();
        };
        let text = std::fs::read_to_string(p).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// A process the bench started. Drop: SIGTERM to it, then SIGKILL to it and to
/// every descendant still alive after a grace period.
struct Guard {
    child: Child,
    label: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let pid = self.child.id();
        let tree = procfs::tree(pid);
        procfs::signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut exited = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !exited {
            eprintln!("{}: no exit 15 s after SIGTERM; killing", self.label);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Children of a server (Dovecot's) that outlived it.
        std::thread::sleep(Duration::from_millis(100));
        for p in tree {
            if p != pid && procfs::alive(p) {
                procfs::signal(p, libc::SIGKILL);
            }
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

// ---------------------------------------------------------------- casella

/// `casella.toml` for benchmarks: cleartext logins allowed (loopback), no pause
/// after a failed login, no hourly submission limit.
pub const CASELLA_CONFIG: &str = r#"hostname = "bench.test"
[pop3]
login-type = "plaintext-login"
auth-failure-delay-ms = 0
[imap]
login-type = "plaintext-login"
auth-failure-delay-ms = 0
[submission]
login-type = "plaintext-login"
auth-failure-delay-ms = 0
max-messages-per-hour = 0
"#;

/// Connection limits lifted for benchmarks (`casella settings imap|pop3 set`).
pub const CASELLA_LIMITS: &[&str] = &[
    "max-connections=unlimited",
    "max-connections-per-user=unlimited",
];

pub fn start_casella(
    bin: &Path,
    users: &Users,
    n_users: usize,
    search_index: bool,
) -> Result<Target> {
    if !bin.exists() {
        bail!(
            "casella binary {} not found (build it: cargo build --release -p casella, or give --casella PATH)",
            bin.display()
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("casella-bench-")
        .tempdir()?;
    // Top-level keys go before the first table.
    let config = format!("search-index = {search_index}\n{CASELLA_CONFIG}");
    std::fs::write(dir.path().join("casella.toml"), config)?;
    // Accounts, one at a time (concurrent CLI writers may find the store locked).
    for i in 1..=n_users {
        let name = users.name(i);
        let mut child = Command::new(bin)
            .arg("--data")
            .arg(dir.path())
            .args(["account", "add", &name, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", bin.display()))?;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{}\n", users.password).as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "casella account add {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    // Room for every benchmark session, as the Dovecot configuration has: the
    // defaults allow 10,000 connections per protocol and 16 per user.
    for protocol in ["imap", "pop3"] {
        let out = Command::new(bin)
            .arg("--data")
            .arg(dir.path())
            .args(["settings", protocol, "set"])
            .args(CASELLA_LIMITS)
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        if !out.status.success() {
            bail!(
                "casella settings {protocol} set: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    let log = dir.path().join("server.log");
    let logf = std::fs::File::create(&log)?;
    let mut child = Command::new(bin)
        .arg("--data")
        .arg(dir.path())
        .arg("serve")
        .args(["--listen", "imap=127.0.0.1:0"])
        .args(["--listen", "pop3=127.0.0.1:0"])
        .args(["--listen", "submission=127.0.0.1:0"])
        .args(["--listen", "lmtp=127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(logf)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().expect("stdout");
    let guard = Guard {
        child,
        label: "casella".into(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Reads every line, also after `ready`, so the pipe never fills.
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut ep = Endpoints::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).map_err(|_| {
            anyhow!(
                "casella did not print `ready`; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })?;
        if line == "ready" {
            break;
        }
        if let Some(rest) = line.strip_prefix("listening ") {
            let mut parts = rest.split(' ');
            if let (Some(p), Some(a)) = (parts.next(), parts.next()) {
                let addr: SocketAddr = a.parse()?;
                match p {
                    "imap" => ep.imap = Some(addr),
                    "pop3" => ep.pop3 = Some(addr),
                    "submission" => ep.submission = Some(addr),
                    "lmtp" => ep.lmtp = Some(addr),
                    _ => {}
                }
            }
        }
    }
    let lmtp = ep
        .lmtp
        .ok_or_else(|| anyhow!("casella: no lmtp listener"))?;
    Ok(Target {
        name: "casella".into(),
        pid: Some(guard.child.id()),
        ep,
        loader: Loader::Lmtp(lmtp),
        description: format!(
            "casella ({}), embedded store in a temp dir, config: plaintext-login, auth-failure-delay-ms = 0, max-messages-per-hour = 0, IMAP and POP3 max-connections(-per-user) = unlimited{}",
            bin.display(),
            if search_index {
                ", search-index = true (the default)"
            } else {
                ", search-index = false"
            }
        ),
        log: Some(log),
        index_probe: Some((bin.to_path_buf(), dir.path().to_path_buf())),
        _guard: Some(guard),
        _dir: Some(dir),
    })
}

/// Waits until casella's background text index has read the loaded mail (at
/// most `limit`), so a run measures the steady state rather than the catch-up.
/// Returns how long it took; `None` for servers without the probe.
pub fn wait_for_index(t: &Target, limit: Duration) -> Result<Option<Duration>> {
    let Some((bin, data)) = &t.index_probe else {
        return Ok(None);
    };
    let t0 = Instant::now();
    loop {
        let out = Command::new(bin)
            .arg("--data")
            .arg(data)
            .args(["search-index", "status"])
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "casella search-index status: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let waiting = text
            .lines()
            .find_map(|l| l.strip_prefix("waiting to be indexed: "))
            .and_then(|n| n.trim().parse::<u64>().ok());
        match waiting {
            None | Some(0) => return Ok(Some(t0.elapsed())),
            Some(n) if t0.elapsed() >= limit => {
                bail!("casella's search index still has {n} messages to read after {limit:?}")
            }
            Some(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

// ---------------------------------------------------------------- Dovecot

pub const DOVECOT: &str = "/usr/sbin/dovecot";
/// Debian's dovecot-lmtpd; the bench uses Dovecot's LMTP when it is installed.
const DOVECOT_LMTP: &str = "/usr/lib/dovecot/lmtp";
/// Mail files and Dovecot's mail processes belong to this uid/gid (nobody).
const MAIL_UID: u32 = 65534;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DovecotMode {
    /// Debian's defaults for the login services (a new login process per connection).
    Default,
    /// High-performance login mode: long-lived login processes.
    Fast,
}

/// Dovecot's password entry: the same argon2id parameters casella uses
/// (m=19456 KiB, t=2, p=1), so a login costs both servers the same hashing work.
pub fn dovecot_password(password: &str, scheme: &str, seed: u64) -> Result<String> {
    match scheme {
        "plain" => Ok(format!("{{PLAIN}}{password}")),
        "argon2id" => {
            use argon2::password_hash::{PasswordHasher, SaltString};
            let mut r = crate::rng::Rng::derive(seed, 77, 0);
            let salt_bytes: Vec<u8> = (0..16).map(|_| r.next_u64() as u8).collect();
            let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| anyhow!("salt: {e}"))?;
            let h = argon2::Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map_err(|e| anyhow!("argon2: {e}"))?;
            Ok(format!("{{ARGON2ID}}{h}"))
        }
        _ => bail!("--dovecot-password-scheme: argon2id or plain"),
    }
}

pub struct DovecotPorts {
    pub imap: u16,
    pub pop3: u16,
    pub lmtp: Option<u16>,
}

/// The generated dovecot.conf (shown in BENCHMARKS.md).
pub fn dovecot_config(dir: &Path, mode: DovecotMode, ports: &DovecotPorts, limit: usize) -> String {
    let d = dir.display();
    let fast = |svc: &str| match mode {
        DovecotMode::Fast => format!(
            "  # high-performance login mode\n  service_count = 0\n  process_min_avail = {}\n",
            std::thread::available_parallelism().map_or(2, |n| n.get())
        ),
        DovecotMode::Default => format!("  # {svc}: Debian defaults (service_count = 1)\n"),
    };
    let (protocols, lmtp) = match ports.lmtp {
        Some(p) => (
            "imap pop3 lmtp",
            format!(
                "service lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {p}\n  }}\n}}\n"
            ),
        ),
        None => ("imap pop3", String::new()),
    };
    let clients = limit * 3 + 1000;
    format!(
        r#"# Generated by casella-bench.
base_dir = {d}/run
state_dir = {d}/state
instance_name = casella-bench-{mode:?}
log_path = {d}/dovecot.log
listen = 127.0.0.1
protocols = {protocols}
ssl = no
# Loopback benchmark: cleartext logins, no penalty after failures.
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
mail_location = maildir:{d}/mail/%u
mail_max_userip_connections = {limit}
first_valid_uid = 1
default_login_user = dovenull
default_internal_user = dovecot
# Room for every benchmark session (one imap process each).
default_process_limit = {limit}
default_client_limit = {clients}
passdb {{
  driver = passwd-file
  args = {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = {d}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
{fast_imap}}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
{fast_pop3}}}
service imap {{
  process_limit = {limit}
}}
service pop3 {{
  process_limit = {limit}
}}
service auth {{
  client_limit = {clients}
}}
service anvil {{
  client_limit = {clients}
}}
service stats {{
  client_limit = {clients}
}}
{lmtp}"#,
        imap = ports.imap,
        pop3 = ports.pop3,
        fast_imap = fast("imap-login"),
        fast_pop3 = fast("pop3-login"),
    )
}

/// Process and connection limits for `sessions` sessions at once.
pub fn dovecot_limit(sessions: usize) -> usize {
    (sessions + 100).max(1000)
}

pub fn dovecot_installed() -> bool {
    Path::new(DOVECOT).exists()
}

pub fn start_dovecot(
    mode: DovecotMode,
    users: &Users,
    n_users: usize,
    password_entry: &str,
    max_sessions: usize,
) -> Result<Target> {
    if !dovecot_installed() {
        bail!("--peer dovecot: {DOVECOT} not found (apt-get install dovecot-imapd dovecot-pop3d)");
    }
    let dir = tempfile::Builder::new()
        .prefix("dovecot-bench-")
        .tempdir()?;
    // Dovecot's unprivileged processes must reach their files in here.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    for sub in ["run", "state", "mail"] {
        std::fs::create_dir_all(dir.path().join(sub))?;
    }
    std::os::unix::fs::chown(dir.path().join("mail"), Some(MAIL_UID), Some(MAIL_UID))?;
    let mut passwd = String::new();
    for i in 1..=n_users {
        let u = users.name(i);
        passwd.push_str(&format!(
            "{u}:{password_entry}:{MAIL_UID}:{MAIL_UID}::{}/mail/{u}::\n",
            dir.path().display()
        ));
    }
    std::fs::write(dir.path().join("passwd"), passwd)?;
    let lmtp_installed = Path::new(DOVECOT_LMTP).exists();
    let ports = DovecotPorts {
        imap: free_port()?,
        pop3: free_port()?,
        lmtp: if lmtp_installed {
            Some(free_port()?)
        } else {
            None
        },
    };
    let limit = dovecot_limit(max_sessions);
    let conf = dir.path().join("dovecot.conf");
    std::fs::write(&conf, dovecot_config(dir.path(), mode, &ports, limit))?;
    let log = dir.path().join("dovecot.log");
    let out = std::fs::File::create(dir.path().join("dovecot.stderr"))?;
    let child = Command::new(DOVECOT)
        .arg("-F")
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {DOVECOT}"))?;
    let mut guard = Guard {
        child,
        label: format!("dovecot ({mode:?})"),
    };
    let imap: SocketAddr = ([127, 0, 0, 1], ports.imap).into();
    let pop3: SocketAddr = ([127, 0, 0, 1], ports.pop3).into();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = guard.child.try_wait() {
            bail!(
                "dovecot exited ({status}): {}{}",
                std::fs::read_to_string(dir.path().join("dovecot.stderr")).unwrap_or_default(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let up = |a: SocketAddr| {
            std::net::TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok()
        };
        if up(imap) && up(pop3) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "dovecot not listening after 30 s: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let name = match mode {
        DovecotMode::Default => "dovecot",
        DovecotMode::Fast => "dovecot-fast",
    };
    Ok(Target {
        name: name.into(),
        pid: Some(guard.child.id()),
        ep: Endpoints {
            imap: Some(imap),
            pop3: Some(pop3),
            submission: None,
            lmtp: ports.lmtp.map(|p| ([127, 0, 0, 1], p).into()),
        },
        loader: Loader::Maildir {
            root: dir.path().join("mail"),
            uid: MAIL_UID,
            gid: MAIL_UID,
        },
        description: format!(
            "Dovecot {} ({}), {}",
            dovecot_version(),
            match mode {
                DovecotMode::Default => "default login mode",
                DovecotMode::Fast => "high-performance login mode",
            },
            if lmtp_installed {
                "with LMTP"
            } else {
                "no LMTP (dovecot-lmtpd not installed)"
            }
        ),
        log: Some(log),
        index_probe: None,
        _guard: Some(guard),
        _dir: Some(dir),
    })
}

pub fn dovecot_version() -> String {
    Command::new(DOVECOT)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

// ---------------------------------------------------------------- external

pub fn external(ep: Endpoints, pid: Option<u32>, load: bool) -> Target {
    let loader = match (load, ep.lmtp, ep.imap) {
        (false, _, _) => Loader::None,
        (true, Some(l), _) => Loader::Lmtp(l),
        (true, None, Some(i)) => Loader::Append(i),
        (true, None, None) => Loader::None,
    };
    Target {
        name: "target".into(),
        description: format!(
            "running server at {}{}",
            ep.describe(),
            pid.map(|p| format!(", PID {p}")).unwrap_or_default()
        ),
        ep,
        pid,
        loader,
        log: None,
        index_probe: None,
        _guard: None,
        _dir: None,
    }
}

// ---------------------------------------------------------------- loading mail

/// Fills the mailboxes (INBOX of each user). Returns the number of messages.
pub async fn load(target: &Target, users: &Users, seed: u64, boxes: &[Mailbox]) -> Result<u64> {
    let total: u64 = boxes.iter().map(|b| b.count as u64).sum();
    if total == 0 {
        return Ok(0);
    }
    let started = Instant::now();
    match &target.loader {
        Loader::None => return Ok(0),
        Loader::Maildir { root, uid, gid } => {
            let root = root.clone();
            let (uid, gid) = (*uid, *gid);
            let users = users.clone();
            let boxes = boxes.to_vec();
            tokio::task::spawn_blocking(move || {
                write_maildirs(&root, uid, gid, &users, seed, &boxes)
            })
            .await??;
        }
        Loader::Lmtp(addr) => {
            // A few sessions at once; messages handed out in order.
            let next = Arc::new(AtomicU64::new(0));
            let jobs: Arc<Vec<(usize, u64, u64, Shape)>> = Arc::new(expand(boxes));
            let mut tasks = Vec::new();
            for _ in 0..4 {
                let (next, jobs, users, addr) = (next.clone(), jobs.clone(), users.clone(), *addr);
                tasks.push(tokio::spawn(async move {
                    let mut s = Smtp::connect(addr, true, Duration::from_secs(120)).await?;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                        let Some((user, stream, index, shape)) = jobs.get(i) else {
                            break;
                        };
                        let to = users.name(*user);
                        let msg = mail::message(seed, *stream, *index, &to, shape);
                        s.send("loader@bench.example", &[to], &dot_stuff(&msg))
                            .await
                            .with_context(|| format!("loading over LMTP, message {i}"))?;
                    }
                    s.quit().await?;
                    anyhow::Ok(())
                }));
            }
            for t in tasks {
                t.await??;
            }
        }
        Loader::Append(addr) => {
            for b in boxes {
                let to = users.name(b.user);
                let mut imap = Imap::connect(*addr, Duration::from_secs(120), 16 * 1024).await?;
                imap.login(&to, &users.password).await?;
                for i in 0..b.count as u64 {
                    let msg = mail::message(seed, b.stream, i, &to, &b.shape);
                    imap.append("INBOX", "", &msg).await?.ok("APPEND")?;
                }
                imap.logout().await?;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "  {}: loaded {total} messages in {secs:.1} s ({:.0}/s)",
        target.name,
        total as f64 / secs.max(1e-9)
    );
    Ok(total)
}

fn expand(boxes: &[Mailbox]) -> Vec<(usize, u64, u64, Shape)> {
    let mut v = Vec::new();
    for b in boxes {
        for i in 0..b.count as u64 {
            v.push((b.user, b.stream, i, b.shape.clone()));
        }
    }
    v
}

/// Writes Maildir files as an MDA would (LF line ends, S= and W= sizes in the name).
fn write_maildirs(
    root: &Path,
    uid: u32,
    gid: u32,
    users: &Users,
    seed: u64,
    boxes: &[Mailbox],
) -> Result<()> {
    let chown = |p: &Path| std::os::unix::fs::chown(p, Some(uid), Some(gid));
    for b in boxes {
        let to = users.name(b.user);
        let home = root.join(&to);
        for sub in ["", "cur", "new", "tmp"] {
            let d = home.join(sub);
            std::fs::create_dir_all(&d)?;
            chown(&d)?;
        }
        for i in 0..b.count as u64 {
            let msg = mail::message(seed, b.stream, i, &to, &b.shape);
            let lf: Vec<u8> = {
                let mut v = Vec::with_capacity(msg.len());
                let mut it = msg.iter().peekable();
                while let Some(&c) = it.next() {
                    if c == b'\r' && it.peek() == Some(&&b'\n') {
                        continue;
                    }
                    v.push(c);
                }
                v
            };
            let name = format!(
                "{}.M{}P{}.bench,S={},W={}:2,",
                1_704_067_200 + i,
                b.stream * 1_000_000 + i,
                std::process::id(),
                lf.len(),
                msg.len()
            );
            let p = home.join("cur").join(name);
            std::fs::write(&p, &lf)?;
            chown(&p)?;
        }
    }
    Ok(())
}
