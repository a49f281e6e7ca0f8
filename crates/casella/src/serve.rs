//! `casella serve`: open the store, bind the listeners, run until SIGTERM/SIGINT,
//! then drain.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use casella_directory::Directory;
use casella_imap::ImapService;
use casella_net::{Handler, ListenerSpec, Live, Shutdown, ShutdownSignal, load_or_create_tls};
use casella_pop3::Pop3Service;
use casella_relay::Relay;
use casella_smtp::{Mode, RateLimiter, SmtpService};
use tokio::signal::unix::{SignalKind, signal};

use crate::listeners::Listeners;
use crate::{cluster, config, settings};

/// Every protocol name `--listen` accepts.
pub const PROTOCOLS: &[&str] = &[
    "imap",
    "imaps",
    "pop3",
    "pop3s",
    "submission",
    "submissions",
    "smtp",
    "lmtp",
    "http",
    "https",
    // Back ends: sessions handed over by front ends (README, "Front ends and back
    // ends"). Bind internal addresses only.
    "imap-internal",
    "pop3-internal",
    "submission-internal",
];

/// How long shutdown waits for sessions to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn implicit_tls(protocol: &str) -> bool {
    matches!(protocol, "imaps" | "pop3s" | "submissions")
}

/// Parses `PROTO=ADDR`.
pub fn parse_listen(arg: &str) -> anyhow::Result<ListenerSpec> {
    let Some((proto, addr)) = arg.split_once('=') else {
        bail!("--listen {arg}: expected PROTO=ADDR, e.g. pop3=127.0.0.1:110");
    };
    let proto = proto.trim().to_ascii_lowercase();
    if !PROTOCOLS.contains(&proto.as_str()) {
        bail!(
            "--listen {arg}: unknown protocol {proto:?} (one of {})",
            PROTOCOLS.join(" ")
        );
    }
    let addr: SocketAddr = addr
        .trim()
        .parse()
        .with_context(|| format!("--listen {arg}: {addr:?} is not an address:port"))?;
    Ok(ListenerSpec {
        implicit_tls: implicit_tls(&proto),
        protocol: proto,
        addr,
    })
}

/// Refuses a data directory the server cannot write to (a read-only mount,
/// another user's directory), with the reason, before anything starts:
/// otherwise it would print `ready` and then fail every login and delivery.
pub fn check_writable(data: &Path) -> anyhow::Result<()> {
    let store = data.join("store");
    for dir in [data, store.as_path()] {
        if dir != data && !dir.exists() {
            continue;
        }
        let probe = dir.join(format!(".write-check-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .with_context(|| format!("the data directory {} is not writable", dir.display()))?;
    }
    // The embedded store's database may be read-only on its own.
    let db = store.join("store.db");
    if db.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(&db)
            .with_context(|| format!("the store {} is not writable", db.display()))?;
    }
    Ok(())
}

pub async fn run(data: &Path, listen: &[String]) -> anyhow::Result<()> {
    let config = config::load_or_create(data)?;
    check_writable(data)?;
    let from_command_line = !listen.is_empty();
    let specs: Vec<ListenerSpec> = if from_command_line {
        listen
            .iter()
            .map(|l| parse_listen(l))
            .collect::<anyhow::Result<_>>()?
    } else {
        let mut v = Vec::new();
        for (proto, addrs) in &config.listen {
            for a in addrs {
                v.push(
                    parse_listen(&format!("{proto}={a}")).context("in [listen] of casella.toml")?,
                );
            }
        }
        v
    };
    let store = config::open_store_with(data, Some(config.search_index)).await?;
    let tls = load_or_create_tls(
        data,
        &config.hostname,
        config.tls.cert.as_deref(),
        config.tls.key.as_deref(),
    )
    .context("setting up TLS")?;
    let directory = Arc::new(Directory::new(store.clone()));
    directory.set_quota_defaults(config.quota.limits()?);
    apply_security(
        &directory,
        crate::security::config(&settings::Overrides::load(data)?),
    );
    let cluster = cluster::setup(&config, data, &specs)?;
    if cluster.role != config::Role::Standalone {
        tracing::info!(role = ?cluster.role, "front end / back end role");
    }

    // Live settings: casella.toml, overridden by `casella settings` (settings.toml).
    let overrides = settings::Overrides::load(data)?;
    let live = LiveSettings {
        pop3: Live::new(settings::pop3(&config, &overrides)),
        imap: Live::new(settings::imap(&config, &overrides)),
        submission: Live::new(settings::submission(&config, &overrides)),
        retention: Live::new(crate::retention::config(&overrides)),
    };
    // A front end's client services hand each session over to its back end after
    // the login.
    let (pop3, imap) = match cluster.proxy.clone() {
        None => (
            Pop3Service::new(
                live.pop3.clone(),
                directory.clone(),
                Some(tls.acceptor.clone()),
            ),
            ImapService::new(
                live.imap.clone(),
                directory.clone(),
                Some(tls.acceptor.clone()),
            ),
        ),
        Some(proxy) => (
            Pop3Service::with_proxy(
                live.pop3.clone(),
                directory.clone(),
                Some(tls.acceptor.clone()),
                proxy.clone(),
            ),
            ImapService::with_proxy(
                live.imap.clone(),
                directory.clone(),
                Some(tls.acceptor.clone()),
                proxy,
            ),
        ),
    };
    let (pop3, imap) = (Arc::new(pop3), Arc::new(imap));
    let smtp: Arc<dyn Handler> = Arc::new(SmtpService::new(
        Mode::Smtp,
        Live::new(config.smtp()),
        directory.clone(),
        Some(tls.acceptor.clone()),
    ));
    let lmtp: Arc<dyn Handler> = Arc::new(SmtpService::new(
        Mode::Lmtp,
        Live::new(config.smtp()),
        directory.clone(),
        Some(tls.acceptor.clone()),
    ));

    let relay = Relay::new(directory.store().clone(), config.relay()?);
    let outbound = relay.waker();
    let mut submission = SmtpService::with_outbound(
        Mode::Submission,
        live.submission.clone(),
        directory.clone(),
        Some(tls.acceptor.clone()),
        Some(outbound.clone()),
        Arc::new(RateLimiter::default()),
    );
    if let Some(proxy) = cluster.proxy.clone() {
        submission = submission.with_proxy(proxy);
    }
    let submission = Arc::new(submission);

    let shutdown = Shutdown::new();
    let mut tasks = Vec::new();
    let mut handlers: HashMap<String, Arc<dyn Handler>> = HashMap::new();
    for spec in &specs {
        let handler: Arc<dyn Handler> = match spec.protocol.as_str() {
            "pop3" | "pop3s" => pop3.clone(),
            "imap" | "imaps" => imap.clone(),
            "smtp" => smtp.clone(),
            "lmtp" => lmtp.clone(),
            "submission" | "submissions" => submission.clone(),
            "imap-internal" => cluster.internal(&spec.protocol, imap.clone())?,
            "pop3-internal" => cluster.internal(&spec.protocol, pop3.clone())?,
            "submission-internal" => cluster.internal(&spec.protocol, submission.clone())?,
            // Served by the web layer (below).
            "http" | "https" => continue,
            other => {
                tracing::warn!(protocol = other, addr = %spec.addr, "this build does not provide {other} yet; listener not started");
                continue;
            }
        };
        handlers.insert(spec.protocol.clone(), handler);
    }
    // Services whose bindings may be set live even if they started with none.
    let (pop3_h, imap_h, submission_h): (Arc<dyn Handler>, Arc<dyn Handler>, Arc<dyn Handler>) =
        (pop3.clone(), imap.clone(), submission.clone());
    for (name, handler) in [
        ("pop3", &pop3_h),
        ("pop3s", &pop3_h),
        ("imap", &imap_h),
        ("imaps", &imap_h),
        ("submission", &submission_h),
        ("submissions", &submission_h),
    ] {
        handlers
            .entry(name.to_string())
            .or_insert_with(|| handler.clone());
    }
    let listeners = Arc::new(Listeners::new(
        shutdown.clone(),
        tls.acceptor.clone(),
        handlers,
    ));
    let web = crate::web::web_state(data, &config, directory.clone(), listeners.clone())?;
    // Listeners `Listeners` does not manage, for `listening.toml`.
    let mut web_bound: Vec<(String, SocketAddr)> = Vec::new();
    for spec in specs {
        if spec.protocol == "http" || spec.protocol == "https" {
            let tls = (spec.protocol == "https").then(|| tls.acceptor.clone());
            let (local, task) = match crate::web::start(
                web.clone(),
                spec.addr,
                tls,
                shutdown.signal(),
            ) {
                Ok(x) => x,
                Err(e) if !from_command_line && spec.addr.is_ipv6() => {
                    tracing::warn!(protocol = %spec.protocol, addr = %spec.addr, error = %e, "skipping IPv6 listener");
                    continue;
                }
                Err(e) => return Err(e),
            };
            tasks.push(task);
            if spec.protocol == "https" {
                web.set_https_port(local.port());
            }
            web_bound.push((spec.protocol.clone(), local));
            println!("listening {} {}", spec.protocol, local);
            continue;
        }
        if !listeners.has_handler(&spec.protocol) {
            continue;
        }
        listeners.remember_initial(&spec.protocol, spec.addr);
        let local = match listeners.start(&spec.protocol, spec.addr) {
            Ok(l) => l,
            // The config's IPv6 default on a host without IPv6 is not fatal.
            Err(e) if !from_command_line && spec.addr.is_ipv6() => {
                tracing::warn!(protocol = %spec.protocol, addr = %spec.addr, error = %e, "skipping IPv6 listener");
                continue;
            }
            Err(e) => return Err(e),
        };
        // One line per listener on stdout, so scripts (and tests using port 0)
        // learn the bound addresses.
        println!("listening {} {}", spec.protocol, local);
    }
    // Bindings set with `casella settings` win over the starting ones.
    apply_bindings(&listeners, &overrides);
    listeners.publish(data, &web_bound);
    tasks.push(tokio::spawn(relay.run(shutdown.signal())));
    if let Some(task) =
        crate::oauth::setup(&config.oauth, directory.clone(), shutdown.signal()).await?
    {
        tasks.push(task);
    }
    tasks.push(tokio::spawn(sync_blocks(
        directory.clone(),
        shutdown.signal(),
    )));
    tasks.push(tokio::spawn(watch_signouts(web.clone(), shutdown.signal())));
    // Front ends hold no mailboxes: their back ends (or standalone nodes) run it.
    if cluster.role != config::Role::Frontend {
        tasks.push(tokio::spawn(crate::retention::run_job(
            store.clone(),
            live.retention.clone(),
            config.hostname.clone(),
            shutdown.signal(),
        )));
    }
    tasks.push(tokio::spawn(watch_settings(
        data.to_path_buf(),
        config.clone(),
        live,
        directory.clone(),
        listeners.clone(),
        web_bound,
        shutdown.signal(),
    )));
    println!("ready");
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    let left = shutdown.shutdown(SHUTDOWN_GRACE).await;
    crate::listeners::forget_listening(data);
    tasks.extend(listeners.take_tasks());
    for t in tasks {
        let _ = t.await;
    }
    if left > 0 {
        tracing::warn!(
            sessions = left,
            "closing sessions that did not finish in time"
        );
    } else {
        tracing::info!("all sessions finished");
    }
    Ok(())
}

/// Moves the listeners to the `bindings` / `bindings-tls` settings (back to the
/// starting addresses where a setting is not set).
fn apply_bindings(listeners: &Listeners, o: &settings::Overrides) {
    for service in [
        settings::Service::Pop,
        settings::Service::Imap,
        settings::Service::Submission,
    ] {
        let (plain, tls_name) = settings::listener_names(service);
        for (name, is_tls) in [(plain, false), (tls_name, true)] {
            listeners.rebind(name, settings::bindings(o, service, is_tls).as_deref());
        }
    }
}

/// The services' live settings.
struct LiveSettings {
    pop3: Live<casella_pop3::Pop3Config>,
    imap: Live<casella_imap::ImapConfig>,
    submission: Live<casella_smtp::SmtpConfig>,
    retention: Live<crate::retention::RetentionPolicy>,
}

/// Keeps the throttle's blocks in step with the store's, shared by every node:
/// blocks made elsewhere apply here, `casella security unblock` lifts them.
async fn sync_blocks(directory: Arc<Directory>, mut signal: ShutdownSignal) {
    loop {
        tokio::select! {
            _ = signal.wait() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        match directory.store().blocks(now).await {
            Ok(stored) => {
                let blocks: Vec<casella_directory::throttle::Block> = stored
                    .into_iter()
                    .filter_map(|b| {
                        Some(casella_directory::throttle::Block {
                            key: casella_directory::throttle::BlockKey::from_key(&b.key)?,
                            until: b.until,
                            reason: b.reason,
                        })
                    })
                    .collect();
                directory.throttle().sync(&blocks);
            }
            Err(e) => tracing::warn!(error = %e, "reading the login blocks failed"),
        }
    }
}

/// Acts on "sign out of all devices" recorded by `casella account signout` (a
/// separate process) and by the other nodes: their accounts' open sessions
/// here end within a second. The same small poll of the store as the login
/// blocks'.
async fn watch_signouts(web: Arc<casella_web::Web>, mut signal: ShutdownSignal) {
    loop {
        tokio::select! {
            _ = signal.wait() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        web.poll_signouts().await;
    }
}

/// How often the settings file is looked at.
const SETTINGS_POLL: Duration = Duration::from_millis(500);

/// Applies `casella settings` changes (settings.toml) while the server runs: new
/// connections get the new values.
async fn watch_settings(
    data: PathBuf,
    config: config::Config,
    live: LiveSettings,
    directory: Arc<Directory>,
    listeners: Arc<Listeners>,
    web_bound: Vec<(String, SocketAddr)>,
    mut signal: ShutdownSignal,
) {
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let file = settings::path(&data);
    let mut last = stamp(&file);
    loop {
        tokio::select! {
            _ = signal.wait() => return,
            _ = tokio::time::sleep(SETTINGS_POLL) => {}
        }
        let now = stamp(&file);
        if now == last {
            continue;
        }
        last = now;
        match settings::Overrides::load(&data) {
            Ok(o) => {
                live.pop3.set(settings::pop3(&config, &o));
                live.imap.set(settings::imap(&config, &o));
                live.submission.set(settings::submission(&config, &o));
                live.retention.set(crate::retention::config(&o));
                apply_security(&directory, crate::security::config(&o));
                apply_bindings(&listeners, &o);
                listeners.publish(&data, &web_bound);
                tracing::info!("settings changed; new connections use them");
            }
            Err(e) => {
                tracing::error!(error = %e, "settings.toml is not valid; keeping the current settings")
            }
        }
    }
}

/// Puts the security section's settings in force (at start and when they change).
fn apply_security(directory: &Directory, security: crate::security::SecurityConfig) {
    directory.throttle().configure(security.throttle);
    directory.set_password_cache(security.password_cache);
    directory.set_default_domain(security.default_domain);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_arguments() {
        let s = parse_listen("pop3s=127.0.0.1:995").unwrap();
        assert_eq!(s.protocol, "pop3s");
        assert!(s.implicit_tls);
        let s = parse_listen("SMTP=[::1]:2525").unwrap();
        assert_eq!(s.protocol, "smtp");
        assert!(!s.implicit_tls);
        assert!(parse_listen("gopher=127.0.0.1:70").is_err());
        assert!(parse_listen("pop3").is_err());
        assert!(parse_listen("pop3=localhost").is_err());
    }
}
