//! A throwaway PostgreSQL 15 cluster for tests: `initdb` in a temporary directory,
//! `pg_ctl start` on a free loopback port, stopped (immediate) and removed when
//! dropped, panics included. The server refuses to run as root, so as root its
//! binaries run as the `postgres` user.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output};

pub struct Cluster {
    bin: PathBuf,
    /// Run the server binaries as `postgres` (they refuse to run as root).
    as_postgres: bool,
    data: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A free port below Linux's ephemeral range (32768–60999): an ephemeral port found
/// free is soon handed to some client socket of a parallel test, and the server
/// then cannot bind it — at its start, or at a restart ([`Cluster::restart`]).
fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let mut seed = h.finish();
    for _ in 0..200 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = 20000 + ((seed >> 33) % 12000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Where the server binaries are: `$CASELLA_PG_BIN` or PostgreSQL 15's Debian path.
fn pg_bin() -> PathBuf {
    std::env::var_os("CASELLA_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

impl Cluster {
    /// Starts a cluster whose superuser is `casella` (trust authentication on
    /// loopback). Fails the test with a clear message when PostgreSQL is missing
    /// (`CASELLA_PG_BIN` overrides /usr/lib/postgresql/15/bin).
    pub fn start() -> Cluster {
        let bin = pg_bin();
        for tool in ["initdb", "pg_ctl", "postgres"] {
            assert!(
                bin.join(tool).exists(),
                "PostgreSQL server binaries not found: {} is missing. Install PostgreSQL 15 \
                 (Debian/Ubuntu: postgresql-15) or point CASELLA_PG_BIN at its bin directory.",
                bin.join(tool).display()
            );
        }
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("casella-pg-")
            .tempdir()
            .expect("temp dir");
        if as_postgres {
            let st = Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status()
                .expect("run chown");
            assert!(st.success(), "chown of the cluster directory failed");
        }
        let cluster = Cluster {
            bin,
            as_postgres,
            data: dir.path().join("data"),
            port: free_port(),
            dir,
        };
        let data = cluster.data.clone();
        let out = cluster.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "casella".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.pg_ctl_start();
        cluster
    }

    /// Starts a cluster as [`Cluster::start`], or returns `None` after printing why
    /// when the PostgreSQL server binaries are missing — unless
    /// `CASELLA_REQUIRE_CLIENTS=1`, which makes their absence a failure.
    pub fn try_start() -> Option<Cluster> {
        let bin = pg_bin();
        if let Some(missing) = ["initdb", "pg_ctl", "postgres"]
            .iter()
            .map(|t| bin.join(t))
            .find(|p| !p.exists())
        {
            crate::clients::missing(&format!(
                "the PostgreSQL 15 server ({}; or set CASELLA_PG_BIN)",
                missing.display()
            ));
            return None;
        }
        Some(Cluster::start())
    }

    /// `pg_ctl start` on this cluster's data directory, port and socket directory.
    fn pg_ctl_start(&self) {
        let data = self.data.clone();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let out = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-o".as_ref(),
                opts.as_ref(),
                "-l".as_ref(),
                log.as_os_str(),
                "start".as_ref(),
                "-w".as_ref(),
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}\n--- server log ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server (`pg_ctl stop -m MODE -w`: `fast` ends every session and
    /// shuts down cleanly, `immediate` as a crash would); the data stays.
    pub fn stop(&self, mode: &str) {
        let data = self.data.clone();
        let out = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "stop".as_ref(),
                "-m".as_ref(),
                mode.as_ref(),
                "-w".as_ref(),
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop -m {mode}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server again after [`Cluster::stop`], on the same port.
    pub fn start_again(&self) {
        self.pg_ctl_start();
    }

    /// A database restart as an operator does it (`pg_ctl restart -m fast`): every
    /// connection is closed, session state (advisory locks included) is gone.
    pub fn restart(&self) {
        self.stop("fast");
        self.pg_ctl_start();
    }

    /// Runs SQL in database `db` with psql (as the `casella` superuser); its output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let out = self.run(
            "psql",
            &[
                "-h".as_ref(),
                "127.0.0.1".as_ref(),
                "-p".as_ref(),
                port.as_ref(),
                "-U".as_ref(),
                "casella".as_ref(),
                "-d".as_ref(),
                db.as_ref(),
                "-v".as_ref(),
                "ON_ERROR_STOP=1".as_ref(),
                "-Atc".as_ref(),
                sql.as_ref(),
            ],
        );
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn run(&self, tool: &str, args: &[&OsStr]) -> Output {
        let program = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://casella@127.0.0.1:{}/{db}", self.port)
    }

    /// The directory holding the server's unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Creates a fresh database and returns its URL.
    pub fn database(&self, name: &str) -> String {
        let port = self.port.to_string();
        let out = self.run(
            "createdb",
            &[
                "-h".as_ref(),
                "127.0.0.1".as_ref(),
                "-p".as_ref(),
                port.as_ref(),
                "-U".as_ref(),
                "casella".as_ref(),
                name.as_ref(),
            ],
        );
        assert!(
            out.status.success(),
            "createdb {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(name)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data.clone();
        let out = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "stop".as_ref(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
            ],
        );
        if !out.status.success() {
            eprintln!(
                "pg_ctl stop: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // The TempDir removes the directory after this.
    }
}
