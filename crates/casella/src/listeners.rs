//! The running listeners, by protocol, so `bindings` / `bindings-tls` settings can
//! move them while the server runs: new addresses are bound before old ones close,
//! and sessions already open stay open.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::bail;
use casella_net::{Handler, Shutdown, bind, serve};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Where a running server says what it listens on, in its data directory, for
/// `casella settings … get` (which runs in another process).
pub const LISTENING_FILE: &str = "listening.toml";

/// The content of [`LISTENING_FILE`].
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Listening {
    pid: u32,
    /// Protocol → bound addresses.
    bound: BTreeMap<String, Vec<String>>,
}

/// What the server running over `data` listens on, by protocol; `None` when
/// none runs (no file, or its process is gone).
pub fn read_listening(data: &Path) -> Option<BTreeMap<String, Vec<String>>> {
    let text = std::fs::read_to_string(data.join(LISTENING_FILE)).ok()?;
    let listening: Listening = toml::from_str(&text).ok()?;
    let alive = Path::new(&format!("/proc/{}", listening.pid)).exists();
    alive.then_some(listening.bound)
}

/// Removes [`LISTENING_FILE`] at shutdown, if it is this process's.
pub fn forget_listening(data: &Path) {
    let path = data.join(LISTENING_FILE);
    let ours = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| toml::from_str::<Listening>(&t).ok())
        .is_some_and(|l| l.pid == std::process::id());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

/// Most sessions one listener runs at once.
pub const MAX_CONNECTIONS_PER_LISTENER: usize = 10_000;

struct Running {
    requested: SocketAddr,
    bound: SocketAddr,
    task: JoinHandle<()>,
}

pub struct Listeners {
    shutdown: Shutdown,
    tls: TlsAcceptor,
    handlers: HashMap<String, Arc<dyn Handler>>,
    running: Mutex<HashMap<String, Vec<Running>>>,
    /// What each protocol started with (`--listen` or casella.toml), for when a
    /// binding setting is removed again.
    initial: Mutex<HashMap<String, Vec<SocketAddr>>>,
}

fn implicit_tls(protocol: &str) -> bool {
    matches!(protocol, "imaps" | "pop3s" | "submissions")
}

impl Listeners {
    pub fn new(
        shutdown: Shutdown,
        tls: TlsAcceptor,
        handlers: HashMap<String, Arc<dyn Handler>>,
    ) -> Listeners {
        Listeners {
            shutdown,
            tls,
            handlers,
            running: Mutex::new(HashMap::new()),
            initial: Mutex::new(HashMap::new()),
        }
    }

    pub fn has_handler(&self, protocol: &str) -> bool {
        self.handlers.contains_key(protocol)
    }

    /// Binds and serves `protocol` on `addr`; returns the bound address.
    pub fn start(&self, protocol: &str, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
        let Some(handler) = self.handlers.get(protocol).cloned() else {
            bail!("no service for {protocol}");
        };
        let listener = bind(addr)
            .map_err(|e| anyhow::anyhow!("cannot listen for {protocol} on {addr}: {e}"))?;
        let bound = listener.local_addr()?;
        let tls = implicit_tls(protocol).then(|| self.tls.clone());
        let task = tokio::spawn(serve(
            protocol.to_string(),
            listener,
            tls,
            handler,
            self.shutdown.clone(),
            MAX_CONNECTIONS_PER_LISTENER,
        ));
        tracing::info!(protocol, addr = %bound, "listening");
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(protocol.to_string())
            .or_default()
            .push(Running {
                requested: addr,
                bound,
                task,
            });
        Ok(bound)
    }

    /// Records what a protocol started with.
    pub fn remember_initial(&self, protocol: &str, addr: SocketAddr) {
        self.initial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(protocol.to_string())
            .or_default()
            .push(addr);
    }

    /// Moves `protocol` to `wanted` (its starting addresses when `None`): binds
    /// what is new, then closes what is no longer wanted. If nothing new could be
    /// bound, the old listeners stay, so the service never goes dark by mistake.
    pub fn rebind(&self, protocol: &str, wanted: Option<&[SocketAddr]>) {
        if !self.has_handler(protocol) {
            return;
        }
        let wanted: Vec<SocketAddr> = match wanted {
            Some(w) => w.to_vec(),
            None => self
                .initial
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(protocol)
                .cloned()
                .unwrap_or_default(),
        };
        let current: Vec<SocketAddr> = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(protocol)
            .map(|v| v.iter().map(|r| r.requested).collect())
            .unwrap_or_default();
        if current == wanted {
            return;
        }
        let mut started = 0;
        for addr in wanted.iter().filter(|a| !current.contains(a)) {
            match self.start(protocol, *addr) {
                Ok(bound) => {
                    started += 1;
                    // Nobody may be reading stdout any more: never fail on it.
                    use std::io::Write;
                    let _ = writeln!(std::io::stdout(), "listening {protocol} {bound}");
                }
                Err(e) => tracing::error!(error = %e, "binding moved listener failed"),
            }
        }
        if started == 0 && wanted.iter().any(|a| !current.contains(a)) {
            tracing::error!(
                protocol,
                "no new binding could be made; keeping the old listeners"
            );
            return;
        }
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = running.get_mut(protocol) {
            list.retain(|r| {
                let keep = wanted.contains(&r.requested);
                if !keep {
                    tracing::info!(protocol, addr = %r.bound, "listener closed (bindings changed)");
                    r.task.abort();
                }
                keep
            });
        }
    }

    /// The addresses `protocol` is listening on now.
    pub fn bound(&self, protocol: &str) -> Vec<SocketAddr> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(protocol)
            .map(|v| v.iter().map(|r| r.bound).collect())
            .unwrap_or_default()
    }

    /// Writes what every protocol listens on now to [`LISTENING_FILE`] in
    /// `data` (replaced whole, never half-written), with `extra` — listeners
    /// this type does not manage (smtp, lmtp, http…). A failure is logged:
    /// the file only informs.
    pub fn publish(&self, data: &Path, extra: &[(String, SocketAddr)]) {
        let mut bound: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (protocol, list) in self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            bound
                .entry(protocol.clone())
                .or_default()
                .extend(list.iter().map(|r| r.bound.to_string()));
        }
        for (protocol, addr) in extra {
            bound
                .entry(protocol.clone())
                .or_default()
                .push(addr.to_string());
        }
        let listening = Listening {
            pid: std::process::id(),
            bound,
        };
        let write = || -> std::io::Result<()> {
            let text = toml::to_string(&listening).map_err(std::io::Error::other)?;
            let tmp = data.join(format!("{LISTENING_FILE}.{}", std::process::id()));
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, data.join(LISTENING_FILE))
        };
        if let Err(e) = write() {
            tracing::warn!(error = %e, "could not write {LISTENING_FILE}");
        }
    }

    /// Every accept loop, for the final wait.
    pub fn take_tasks(&self) -> Vec<JoinHandle<()>> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running
            .drain()
            .flat_map(|(_, v)| v.into_iter().map(|r| r.task))
            .collect()
    }
}
