//! The binary's side of the web layer: the settings backend over settings.toml,
//! the endpoints users are shown, starting the http/https listeners, and
//! `casella admin token …`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use casella_directory::Directory;
use casella_net::ShutdownSignal;
use casella_web::{Endpoint, Endpoints, SettingsBackend, Web, WebConfig};
use tokio_rustls::TlsAcceptor;

use crate::cli::TokenCommand;
use crate::config::Config;
use crate::listeners::Listeners;
use crate::settings::{self, Overrides, Service};

/// `casella settings` as the admin API and pages see it.
pub struct FileSettings {
    pub data: PathBuf,
    pub config: Config,
    pub listeners: Arc<Listeners>,
}

impl SettingsBackend for FileSettings {
    fn get(&self, protocol: &str) -> Result<Vec<(String, String)>, String> {
        let o = Overrides::load(&self.data).map_err(|e| format!("{e:#}"))?;
        if let Some(section) = settings::section(protocol) {
            return Ok((section.values)(&o)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect());
        }
        let service = Service::parse(protocol).map_err(|e| e.to_string())?;
        Ok(settings::effective(&self.config, &o, service)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect())
    }

    fn set(&self, protocol: &str, pairs: &[(String, String)]) -> Result<(), String> {
        let mut o = Overrides::load(&self.data).map_err(|e| format!("{e:#}"))?;
        if let Some(section) = settings::section(protocol) {
            for (k, v) in pairs {
                (section.set)(&mut o, k, v).map_err(|e| format!("{e:#}"))?;
            }
            return o.save(&self.data).map_err(|e| format!("{e:#}"));
        }
        let service = Service::parse(protocol).map_err(|e| e.to_string())?;
        for (k, v) in pairs {
            o.set(service, k, v).map_err(|e| format!("{e:#}"))?;
        }
        o.save(&self.data).map_err(|e| format!("{e:#}"))
    }

    fn endpoints(&self, internal: bool) -> Endpoints {
        let o = Overrides::load(&self.data).unwrap_or_default();
        let convert = |service: Service| -> Vec<Endpoint> {
            settings::connection_settings(&o, service, !internal)
                .into_iter()
                .map(|c| Endpoint {
                    host: c.host,
                    port: c.port,
                    implicit_tls: c.implicit_tls,
                })
                .collect()
        };
        let mut ends = Endpoints {
            imap: convert(Service::Imap),
            pop: convert(Service::Pop),
            smtp: convert(Service::Submission),
        };
        if internal {
            return ends;
        }
        // Without external connection settings: this server's name with the
        // ports it listens on (implicit TLS first, as Exchange recommends).
        let fallback = |tls_name: &str, plain_name: &str| -> Vec<Endpoint> {
            let host = self.config.hostname.clone();
            let port = |name: &str| self.listeners.bound(name).first().map(SocketAddr::port);
            let mut v = Vec::new();
            if let Some(p) = port(tls_name) {
                v.push(Endpoint {
                    host: host.clone(),
                    port: p,
                    implicit_tls: true,
                });
            }
            if let Some(p) = port(plain_name) {
                v.push(Endpoint {
                    host,
                    port: p,
                    implicit_tls: false,
                });
            }
            v
        };
        if ends.imap.is_empty() {
            ends.imap = fallback("imaps", "imap");
        }
        if ends.pop.is_empty() {
            ends.pop = fallback("pop3s", "pop3");
        }
        if ends.smtp.is_empty() {
            // Submission on 587 with STARTTLS is what mail programs expect first.
            let mut v = fallback("submissions", "submission");
            v.reverse();
            ends.smtp = v;
        }
        ends
    }
}

pub fn web_state(
    data: &Path,
    config: &Config,
    directory: Arc<Directory>,
    listeners: Arc<Listeners>,
) -> anyhow::Result<Arc<Web>> {
    let networks = |key: &str, list: &[String]| -> anyhow::Result<Vec<_>> {
        list.iter()
            .map(|n| {
                casella_web::parse_network(n)
                    .with_context(|| format!("[web] {key}: {n:?} is not a network"))
            })
            .collect()
    };
    Ok(Web::new(
        directory,
        Arc::new(FileSettings {
            data: data.to_path_buf(),
            config: config.clone(),
            listeners,
        }),
        data.to_path_buf(),
        WebConfig {
            hostname: config.hostname.clone(),
            internal_networks: networks("internal-networks", &config.web.internal_networks)?,
            trusted_networks: networks("trusted-networks", &config.web.trusted_networks)?,
            admin_networks: networks("admin-networks", &config.web.admin_networks)?,
        },
    ))
}

/// Binds and serves the http (or, with `tls`, https) listener.
pub fn start(
    web: Arc<Web>,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    signal: ShutdownSignal,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = casella_net::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen for http on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let app = casella_web::router(web);
    Ok((
        bound,
        tokio::spawn(casella_web::serve(listener, tls, app, signal)),
    ))
}

/// `casella admin token create|list|revoke`.
pub fn tokens(data: &Path, command: TokenCommand) -> anyhow::Result<()> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let tokens = casella_web::tokens::AdminTokens::new(data.to_path_buf());
    match command {
        TokenCommand::Create { name } => {
            if name.trim().is_empty() {
                bail!("give the token a name");
            }
            let token = tokens.create(&name).context("saving the token")?;
            println!("{token}");
            eprintln!(
                "Send it as `Authorization: Bearer TOKEN`; it is not shown again. Revoke with `casella admin token revoke {name}`."
            );
        }
        TokenCommand::List => {
            for (name, created) in tokens.list() {
                println!("{name}\t{created}");
            }
        }
        TokenCommand::Revoke { name } => {
            let n = tokens.revoke(&name).context("revoking")?;
            if n == 0 {
                bail!("no token named {name}");
            }
            println!("revoked {n} token(s) named {name}");
        }
    }
    Ok(())
}
