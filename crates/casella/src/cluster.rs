//! Front ends and back ends at start-up: checks `role` against the listeners,
//! reads the cluster secret, and builds what a front end hands sessions over with
//! and what a back end's `*-internal` listeners prove front ends with.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use casella_net::{Handler, ListenerSpec};
use casella_proxy::{Backend, ClusterSecret, Connector, InternalListener, LoginProxy, Site};

use crate::config::{Config, Role};

/// The protocol a `*-internal` listener serves.
pub fn internal_protocol(listener: &str) -> Option<&'static str> {
    match listener {
        "imap-internal" => Some("imap"),
        "pop3-internal" => Some("pop3"),
        "submission-internal" => Some("submission"),
        _ => None,
    }
}

pub struct ClusterSetup {
    pub role: Role,
    secret: Option<Arc<ClusterSecret>>,
    /// A front end's hook: set on its IMAP, POP3 and submission services.
    pub proxy: Option<Arc<dyn LoginProxy>>,
}

impl ClusterSetup {
    /// The handler of a `*-internal` listener in front of `backend`.
    pub fn internal(
        &self,
        listener: &str,
        backend: Arc<dyn Backend>,
    ) -> anyhow::Result<Arc<dyn Handler>> {
        let (Some(protocol), Some(secret)) = (internal_protocol(listener), &self.secret) else {
            bail!("{listener} needs role = \"backend\" and [cluster] secret-file");
        };
        Ok(Arc::new(InternalListener::new(
            protocol,
            secret.clone(),
            backend,
        )))
    }
}

pub fn setup(config: &Config, data: &Path, specs: &[ListenerSpec]) -> anyhow::Result<ClusterSetup> {
    let role = config.role;
    let internal: Vec<&str> = specs
        .iter()
        .map(|s| s.protocol.as_str())
        .filter(|p| internal_protocol(p).is_some())
        .collect();
    if role != Role::Backend
        && let Some(first) = internal.first()
    {
        bail!(
            "{first} listeners are for back ends: set role = \"backend\" (and [cluster] secret-file) in casella.toml"
        );
    }
    if role == Role::Standalone {
        return Ok(ClusterSetup {
            role,
            secret: None,
            proxy: None,
        });
    }
    let Some(file) = &config.cluster.secret_file else {
        let name = if role == Role::Frontend {
            "frontend"
        } else {
            "backend"
        };
        bail!(
            "role = \"{name}\" needs [cluster] secret-file: the secret front ends and back ends share"
        );
    };
    let file = data.join(file);
    let secret = Arc::new(ClusterSecret::load(&file)?);
    if role == Role::Backend {
        if internal.is_empty() {
            tracing::warn!(
                "role = \"backend\" without imap-internal, pop3-internal or submission-internal listeners: no front end can reach this node"
            );
        }
        return Ok(ClusterSetup {
            role,
            secret: Some(secret),
            proxy: None,
        });
    }
    let sites = sites(config)?;
    if let Some(d) = &config.cluster.default_backend
        && !sites.contains_key(d)
    {
        bail!("[cluster] default-backend = {d:?} is not a site of [sites]");
    }
    if sites.is_empty() {
        tracing::warn!("role = \"frontend\" with no [sites]: every login will fail");
    }
    let connector = Connector::new(
        secret,
        sites,
        config.cluster.default_backend.clone(),
        Duration::from_secs(config.cluster.connect_timeout.max(1)),
    );
    Ok(ClusterSetup {
        role,
        secret: None,
        proxy: Some(Arc::new(connector)),
    })
}

/// `[sites]`, each address checked for the `host:port` form.
fn sites(config: &Config) -> anyhow::Result<BTreeMap<String, Site>> {
    let mut sites = BTreeMap::new();
    for (name, section) in &config.sites {
        let mut site = Site::default();
        for (protocol, addresses) in [
            ("imap", &section.imap),
            ("pop3", &section.pop3),
            ("submission", &section.submission),
        ] {
            for a in addresses {
                let port = a.rsplit_once(':').and_then(|(h, p)| {
                    (!h.is_empty()).then_some(())?;
                    p.parse::<u16>().ok()
                });
                port.filter(|p| *p != 0).with_context(|| {
                    format!("[sites.{name}] {protocol} = {a:?}: expected host:port")
                })?;
            }
            site.addresses
                .insert(protocol.to_string(), addresses.clone());
        }
        sites.insert(name.clone(), site);
    }
    Ok(sites)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::parse_listen;

    fn config(text: &str) -> Config {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn roles_listeners_and_sites_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "0123456789abcdef0123\n").unwrap();
        let internal = vec![parse_listen("imap-internal=127.0.0.1:1143").unwrap()];
        let plain = vec![parse_listen("imaps=127.0.0.1:993").unwrap()];

        // Standalone (the default) has no internal listeners and needs no secret.
        let standalone = config("");
        assert!(
            setup(&standalone, dir.path(), &plain)
                .unwrap()
                .proxy
                .is_none()
        );
        let e = setup(&standalone, dir.path(), &internal).err().unwrap();
        assert!(e.to_string().contains("role = \"backend\""), "{e}");

        // A back end needs the secret.
        let e = setup(&config("role = \"backend\""), dir.path(), &internal)
            .err()
            .unwrap();
        assert!(e.to_string().contains("secret-file"), "{e}");
        let backend = config("role = \"backend\"\n[cluster]\nsecret-file = \"s\"\n");
        let b = setup(&backend, dir.path(), &internal).unwrap();
        assert_eq!(b.role, Role::Backend);
        assert!(b.secret.is_some() && b.proxy.is_none());

        // A front end: sites, default-backend among them, host:port addresses.
        let front = "role = \"frontend\"\n[cluster]\nsecret-file = \"s\"\n\
                     default-backend = \"one\"\n[sites.one]\nimap = [\"127.0.0.1:1143\"]\n\
                     pop3 = [\"mb1.internal:1110\", \"[::1]:1110\"]\n";
        let f = setup(&config(front), dir.path(), &plain).unwrap();
        assert!(f.proxy.is_some());
        assert!(setup(&config(front), dir.path(), &internal).is_err());
        let e = setup(
            &config(&front.replace("default-backend = \"one\"", "default-backend = \"two\"")),
            dir.path(),
            &plain,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("default-backend"), "{e}");
        let e = setup(
            &config(&front.replace("127.0.0.1:1143", "127.0.0.1")),
            dir.path(),
            &plain,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("host:port"), "{e}");
        assert!(toml::from_str::<Config>("[sites.x]\nsmtp = [\"a:1\"]").is_err());
        assert!(toml::from_str::<Config>("role = \"proxy\"").is_err());
    }
}
