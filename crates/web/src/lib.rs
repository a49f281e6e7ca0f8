//! casella-web: everything casella serves over HTTP(S) on the `http` and `https`
//! listeners.
//!
//! Owns: the HTTP server loop (hyper, one task per connection), the admin API
//! under `/api/admin/` (JSON, admin tokens), the users' pages (login, "POP and
//! IMAP" settings, POP options, security), and client autoconfiguration
//! (Thunderbird autoconfig, Outlook autodiscover, Apple .mobileconfig).
//! Must not: speak a mail protocol or touch storage below the `MailStore` API;
//! protocol settings are read and written through [`SettingsBackend`], which the
//! binary implements over its settings file.

mod admin_api;
mod admin_ops;
mod admin_pages;
mod autoconfig;
mod health;
mod html;
mod pages;
mod recover;
mod server;
mod session;
pub mod signout;
pub mod tokens;
mod urls;

/// What the fuzz targets reach that the API does not offer (feature `fuzzing`):
/// the request parsers the handlers use, one by one.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use crate::autoconfig::pox_email;
    pub use crate::html::esc;
    pub use crate::pages::{field, refuse_form};
    pub use crate::session::{cookie, from_cookie_header, same_token};
    pub use crate::urls::component;
    pub use axum::http::HeaderMap;

    /// A form body as the handlers get it (axum's `Form` extractor on a
    /// POST of `application/x-www-form-urlencoded`); `None` when refused.
    pub async fn decode_form(body: &[u8]) -> Option<Vec<(String, String)>> {
        use axum::extract::{Form, FromRequest};
        let request = axum::http::Request::builder()
            .method("POST")
            .uri("/")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(body.to_vec()))
            .ok()?;
        let Form(form) = Form::<Vec<(String, String)>>::from_request(request, &())
            .await
            .ok()?;
        Some(form)
    }
}

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use axum::Router;
use casella_directory::Directory;
use serde::Serialize;

pub use server::serve;

/// One place users point their mail program at: Exchange's
/// `{host:port:SSL}` / `{host:port:TLS}` entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// Implicit TLS ("SSL/TLS"); false: STARTTLS.
    pub implicit_tls: bool,
}

/// The endpoints of each service, best first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Endpoints {
    pub imap: Vec<Endpoint>,
    pub pop: Vec<Endpoint>,
    pub smtp: Vec<Endpoint>,
}

/// The protocol settings, as `casella settings` reads and writes them.
pub trait SettingsBackend: Send + Sync + 'static {
    /// Every key of `protocol` (`pop`, `imap`, `submission`) with its value.
    fn get(&self, protocol: &str) -> Result<Vec<(String, String)>, String>;
    /// Validates and stores all pairs, or none; running services apply them live.
    fn set(&self, protocol: &str, pairs: &[(String, String)]) -> Result<(), String>;
    /// What users type into their mail program: the internal connection settings
    /// when `internal` (the request came from an internal network), else the
    /// external ones.
    fn endpoints(&self, internal: bool) -> Endpoints;
}

/// The `[web]` settings the handlers need.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// This server's host name (`hostname` in casella.toml): the only name
    /// URLs are built with.
    pub hostname: String,
    /// Networks whose clients are shown the internal connection settings.
    pub internal_networks: Vec<(IpAddr, u8)>,
    /// Networks whose clients may send passwords over plain HTTP:
    /// `[web] trusted-networks` (the binary's default: loopback).
    pub trusted_networks: Vec<(IpAddr, u8)>,
    /// Networks the admin pages and the admin API answer: `[web] admin-networks`.
    pub admin_networks: Vec<(IpAddr, u8)>,
}

/// Everything the HTTP handlers share.
pub struct Web {
    pub directory: Arc<Directory>,
    pub settings: Arc<dyn SettingsBackend>,
    pub tokens: tokens::AdminTokens,
    pub hostname: String,
    /// Networks whose clients are shown the internal connection settings.
    pub internal_networks: Vec<(IpAddr, u8)>,
    trusted_networks: Vec<(IpAddr, u8)>,
    admin_networks: Vec<(IpAddr, u8)>,
    /// The port of the https listener, 0 while there is none.
    https_port: AtomicU16,
    sessions: session::WebSessions,
    signouts: signout::SignoutFeed,
}

impl Web {
    pub fn new(
        directory: Arc<Directory>,
        settings: Arc<dyn SettingsBackend>,
        data: PathBuf,
        config: WebConfig,
    ) -> Arc<Web> {
        Arc::new(Web {
            directory,
            settings,
            tokens: tokens::AdminTokens::new(data),
            hostname: config.hostname,
            internal_networks: config.internal_networks,
            trusted_networks: config.trusted_networks,
            admin_networks: config.admin_networks,
            https_port: AtomicU16::new(0),
            sessions: session::WebSessions::default(),
            signouts: signout::SignoutFeed::default(),
        })
    }

    /// Tells the pages where the https listener is, for the address they send
    /// people to from plain HTTP.
    pub fn set_https_port(&self, port: u16) {
        self.https_port.store(port, Ordering::Relaxed);
    }

    /// `https://HOSTNAME[:PORT]` — built from the configured host name only,
    /// never from a request's Host header; `None` without an https listener.
    pub fn https_base(&self) -> Option<String> {
        match self.https_port.load(Ordering::Relaxed) {
            0 => None,
            443 => Some(format!("https://{}", self.hostname)),
            port => Some(format!("https://{}:{port}", self.hostname)),
        }
    }

    /// Whether a client address is in one of the internal networks.
    pub fn is_internal(&self, ip: IpAddr) -> bool {
        in_any(&self.internal_networks, ip)
    }

    /// May a password (or a session cookie) travel on this connection: over
    /// TLS, or from a `trusted-networks` address (by default loopback: a
    /// reverse proxy on this host, the administrator's own browser).
    pub fn passwords_allowed(&self, tls: bool, ip: IpAddr) -> bool {
        tls || in_any(&self.trusted_networks, ip)
    }

    /// Whether the admin pages and the admin API answer a client at `ip`.
    pub fn admin_allowed(&self, ip: IpAddr) -> bool {
        in_any(&self.admin_networks, ip)
    }

    /// [`Web::admin_allowed`] for the client of a request.
    pub(crate) fn admin_request_allowed(&self, parts: &axum::http::request::Parts) -> bool {
        remote_of(parts).is_some_and(|ip| self.admin_allowed(ip))
    }

    /// The endpoints to show a client at `ip`: the internal ones from an internal
    /// network when there are any, otherwise the external ones.
    pub fn endpoints_for(&self, ip: IpAddr) -> Endpoints {
        if self.is_internal(ip) {
            let internal = self.settings.endpoints(true);
            if internal != Endpoints::default() {
                return internal;
            }
        }
        self.settings.endpoints(false)
    }

    /// Acts on "sign out of all devices" recorded by other processes and nodes
    /// (`casella account signout`, another node's admin API); the server calls
    /// it every second. Returns how many sessions it ended.
    pub async fn poll_signouts(&self) -> usize {
        self.signouts.poll(&self.directory).await
    }
}

/// The client address of a request.
pub(crate) fn remote_of(parts: &axum::http::request::Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

fn in_any(networks: &[(IpAddr, u8)], ip: IpAddr) -> bool {
    networks
        .iter()
        .any(|(net, bits)| in_network(ip, *net, *bits))
}

use casella_net::in_network;
pub use casella_net::parse_network;

/// The private and loopback networks: the default internal networks and
/// admin networks.
pub const PRIVATE_NETWORKS: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "::1/128",
    "fc00::/7",
];

/// [`PRIVATE_NETWORKS`], parsed.
pub fn default_internal_networks() -> Vec<(IpAddr, u8)> {
    PRIVATE_NETWORKS
        .iter()
        .filter_map(|n| parse_network(n))
        .collect()
}

/// All routes.
pub fn router(web: Arc<Web>) -> Router {
    Router::new()
        .merge(admin_api::routes())
        .merge(autoconfig::routes())
        .merge(health::routes())
        .merge(pages::routes())
        .with_state(web)
        .layer(axum::middleware::from_fn(security_headers))
}

/// Headers every response carries: no framing by other sites (clickjacking),
/// no content-type guessing, no full URLs in Referer, nothing cached that a
/// signed-in page showed; over HTTPS, HSTS (RFC 6797), so a browser that once
/// came over HTTPS never sends a cookie or a password over plain HTTP again.
async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let tls = request
        .extensions()
        .get::<server::Transport>()
        .is_some_and(|t| t.tls);
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    if tls {
        // RFC 6797 §6.1: sent over secure transport only (ignored otherwise).
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_and_admin_networks() {
        struct NoSettings;
        impl SettingsBackend for NoSettings {
            fn get(&self, _: &str) -> Result<Vec<(String, String)>, String> {
                Ok(Vec::new())
            }
            fn set(&self, _: &str, _: &[(String, String)]) -> Result<(), String> {
                Ok(())
            }
            fn endpoints(&self, _: bool) -> Endpoints {
                Endpoints::default()
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = casella_store::sqlite::SqliteStore::open(dir.path().join("store")).unwrap();
        let web = Web::new(
            Arc::new(Directory::new(Arc::new(store))),
            Arc::new(NoSettings),
            dir.path().to_path_buf(),
            WebConfig {
                hostname: "mail.example.org".into(),
                internal_networks: default_internal_networks(),
                trusted_networks: ["192.0.2.0/24", "127.0.0.0/8", "::1"]
                    .iter()
                    .filter_map(|n| parse_network(n))
                    .collect(),
                admin_networks: vec![parse_network("10.0.0.0/8").unwrap()],
            },
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(web.passwords_allowed(true, ip("203.0.113.9")));
        assert!(!web.passwords_allowed(false, ip("203.0.113.9")));
        assert!(web.passwords_allowed(false, ip("127.0.0.2")));
        assert!(web.passwords_allowed(false, ip("::1")));
        assert!(web.passwords_allowed(false, ip("::ffff:127.0.0.1")));
        assert!(web.passwords_allowed(false, ip("192.0.2.7")));
        assert!(!web.passwords_allowed(false, ip("10.1.1.1")));
        assert!(web.admin_allowed(ip("10.1.1.1")));
        assert!(!web.admin_allowed(ip("127.0.0.1")));
        assert_eq!(web.https_base(), None);
        web.set_https_port(443);
        assert_eq!(
            web.https_base().as_deref(),
            Some("https://mail.example.org")
        );
        web.set_https_port(8443);
        assert_eq!(
            web.https_base().as_deref(),
            Some("https://mail.example.org:8443")
        );
    }

    #[test]
    fn networks() {
        let nets = default_internal_networks();
        let web_ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let inside = |ip: &str| nets.iter().any(|(n, b)| in_network(web_ip(ip), *n, *b));
        assert!(inside("10.1.2.3"));
        assert!(inside("172.31.255.1"));
        assert!(!inside("172.32.0.1"));
        assert!(inside("::1"));
        assert!(!inside("8.8.8.8"));
        assert!(!inside("2001:db8::1"));
        assert_eq!(parse_network("10.0.0.0/33"), None);
        assert_eq!(parse_network("192.0.2.1"), Some((web_ip("192.0.2.1"), 32)));
    }
}
