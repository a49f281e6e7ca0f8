//! Where a recipient's mail goes next — RFC 5321 §5.1: the smarthost when one is
//! configured, else a static route for the domain, else the domain's MX hosts by
//! preference, else (no MX) the domain itself as an implicit MX. A null MX (RFC 7505)
//! means the domain takes no mail: a permanent failure, "556 5.1.10".
//!
//! DNS sits behind [`Resolve`], so the ordering and null-MX rules are tested with
//! injected records; [`DnsResolver`] is the real one (hickory: /etc/resolv.conf, or
//! the name servers of `[relay] dns-servers`, which also lets a test run its own
//! DNS server on loopback).

use std::net::{IpAddr, SocketAddr};

use async_trait::async_trait;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

use crate::config::RelayConfig;

/// SMTP's port for relaying between MTAs (the default of `[relay] smtp-port`).
pub const SMTP_PORT: u16 = 25;
/// At most this many addresses are tried per next hop and attempt (Postfix's
/// `smtp_mx_address_limit` is 5 as well).
pub const MAX_ADDRESSES: usize = 5;

/// The next hop of a recipient: recipients with the same hop share a connection.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum NextHop {
    Smarthost,
    /// A static route, `host:port`.
    Static(String),
    /// The recipient domain's MX hosts (lower-case domain).
    Mx(String),
}

/// Picks the next hop for a recipient address.
pub fn next_hop(config: &RelayConfig, recipient: &str) -> NextHop {
    if config.smarthost.is_some() {
        return NextHop::Smarthost;
    }
    let domain = recipient
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("")
        .trim_end_matches('.')
        .to_ascii_lowercase();
    match config.routes.get(&domain) {
        Some(route) => NextHop::Static(route.clone()),
        None => NextHop::Mx(domain),
    }
}

/// One address to connect to, with the host name for SNI and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub addr: SocketAddr,
}

/// Why a next hop has no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Bounce: the text is a reply such as "556 5.1.10 ...".
    #[error("{0}")]
    Permanent(String),
    /// Try again later.
    #[error("{0}")]
    Temporary(String),
}

/// An MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    pub preference: u16,
    /// Host name without the trailing dot; empty for the root (null MX).
    pub exchange: String,
}

/// What a lookup can answer besides records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The name exists but has no record of this type (NOERROR, no answer).
    #[error("no records")]
    NoRecords,
    /// The name does not exist (NXDOMAIN).
    #[error("domain not found")]
    NxDomain,
    /// Server failure, timeout, no resolver: worth a retry.
    #[error("{0}")]
    Failed(String),
}

/// The DNS questions the relay asks.
#[async_trait]
pub trait Resolve: Send + Sync + 'static {
    async fn mx(&self, domain: &str) -> Result<Vec<Mx>, LookupError>;
    /// A and AAAA records of a host.
    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, LookupError>;
}

/// The addresses to try for a next hop, best first.
pub async fn resolve(
    hop: &NextHop,
    config: &RelayConfig,
    dns: &dyn Resolve,
) -> Result<Vec<Target>, RouteError> {
    match hop {
        NextHop::Smarthost => {
            let Some(smarthost) = &config.smarthost else {
                return Err(RouteError::Temporary("no smarthost is configured".into()));
            };
            host_targets(&smarthost.host, smarthost.port, dns).await
        }
        NextHop::Static(route) => {
            let (host, port) = split_host_port(route)
                .ok_or_else(|| RouteError::Temporary(format!("bad static route {route:?}")))?;
            host_targets(&host, port, dns).await
        }
        NextHop::Mx(domain) => mx_targets(domain, config.smtp_port, dns).await,
    }
}

/// `host:port`, `[v6]:port`, or a bare host (port 25).
fn split_host_port(s: &str) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => SMTP_PORT,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host.to_string(), port.parse().ok()?)),
        Some(_) => s.parse::<IpAddr>().ok().map(|_| (s.to_string(), SMTP_PORT)),
        None if !s.is_empty() => Some((s.to_string(), SMTP_PORT)),
        None => None,
    }
}

/// A configured host: an IP literal as it is, a name through DNS. Failures are
/// temporary: a configuration problem must not bounce mail.
async fn host_targets(host: &str, port: u16, dns: &dyn Resolve) -> Result<Vec<Target>, RouteError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![Target {
            host: host.to_string(),
            addr: SocketAddr::new(ip, port),
        }]);
    }
    match dns.ips(host).await {
        Ok(ips) if !ips.is_empty() => Ok(targets(host, &ips, port)),
        Ok(_) | Err(LookupError::NoRecords) | Err(LookupError::NxDomain) => Err(
            RouteError::Temporary(format!("Host not found: {host} has no address")),
        ),
        Err(LookupError::Failed(e)) => Err(RouteError::Temporary(format!(
            "DNS lookup of {host} failed: {e}"
        ))),
    }
}

fn targets(host: &str, ips: &[IpAddr], port: u16) -> Vec<Target> {
    ips.iter()
        .map(|&ip| Target {
            host: host.to_string(),
            addr: SocketAddr::new(ip, port),
        })
        .collect()
}

/// RFC 5321 §5.1 for one recipient domain.
async fn mx_targets(domain: &str, port: u16, dns: &dyn Resolve) -> Result<Vec<Target>, RouteError> {
    if domain.is_empty() {
        return Err(RouteError::Permanent(
            "553 5.1.3 The recipient address has no domain".into(),
        ));
    }
    // An address literal, user@[192.0.2.1] (RFC 5321 §4.1.3): no DNS at all.
    if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        let literal = literal.strip_prefix("IPv6:").unwrap_or(literal);
        return match literal.parse::<IpAddr>() {
            Ok(ip) => Ok(targets(literal, &[ip], port)),
            Err(_) => Err(RouteError::Permanent(format!(
                "553 5.1.3 Bad address literal [{literal}]"
            ))),
        };
    }
    let hosts = match dns.mx(domain).await {
        Ok(records) => order_mx(domain, records)?,
        // §5.1: no MX records: the domain itself is the implicit MX, preference 0.
        Err(LookupError::NoRecords) => {
            return match dns.ips(domain).await {
                Ok(ips) if !ips.is_empty() => Ok(targets(domain, &ips, port)),
                Ok(_) | Err(LookupError::NoRecords) | Err(LookupError::NxDomain) => {
                    Err(RouteError::Permanent(format!(
                        "550 5.1.2 Host or domain name not found: {domain} has no MX and no address"
                    )))
                }
                Err(LookupError::Failed(e)) => Err(RouteError::Temporary(format!(
                    "DNS lookup of {domain} failed: {e}"
                ))),
            };
        }
        Err(LookupError::NxDomain) => {
            return Err(RouteError::Permanent(format!(
                "550 5.1.2 Host or domain name not found: {domain}"
            )));
        }
        Err(LookupError::Failed(e)) => {
            return Err(RouteError::Temporary(format!(
                "DNS lookup of MX for {domain} failed: {e}"
            )));
        }
    };
    let mut out = Vec::new();
    let mut last_error = None;
    for host in hosts {
        if out.len() >= MAX_ADDRESSES {
            break;
        }
        match dns.ips(&host).await {
            Ok(ips) => out.extend(targets(&host, &ips, port)),
            Err(e) => last_error = Some(format!("{host}: {e}")),
        }
    }
    out.truncate(MAX_ADDRESSES);
    if out.is_empty() {
        // Like Postfix: an MX host without an address is a DNS problem of the
        // domain, which its owner may fix; defer rather than bounce.
        return Err(RouteError::Temporary(format!(
            "no address for the MX hosts of {domain}{}",
            last_error.map(|e| format!(" ({e})")).unwrap_or_default()
        )));
    }
    Ok(out)
}

/// The MX host names to try, best first: by preference (stable among equals);
/// duplicates dropped. A lone null MX (RFC 7505 §3: exchange ".", which should be
/// the only record) is a permanent failure; a "." mixed with real hosts is skipped.
pub fn order_mx(domain: &str, mut records: Vec<Mx>) -> Result<Vec<String>, RouteError> {
    let is_null = |m: &Mx| m.exchange.is_empty() || m.exchange == ".";
    if records.is_empty() {
        return Err(RouteError::Temporary(format!(
            "the MX lookup for {domain} answered no records"
        )));
    }
    if records.iter().all(is_null) {
        return Err(RouteError::Permanent(format!(
            "556 5.1.10 Recipient address rejected: Domain {domain} does not accept mail (null MX)"
        )));
    }
    records.retain(|m| !is_null(m));
    records.sort_by_key(|m| m.preference);
    let mut hosts: Vec<String> = Vec::new();
    for m in records {
        let h = m.exchange.trim_end_matches('.').to_ascii_lowercase();
        if !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    Ok(hosts)
}

/// DNS through hickory's tokio resolver, configured on first use from
/// /etc/resolv.conf, or with the given name servers (UDP, then TCP for a
/// truncated answer). When resolv.conf cannot be read every lookup fails
/// temporarily.
pub struct DnsResolver {
    inner: tokio::sync::OnceCell<Result<TokioResolver, String>>,
    servers: Vec<SocketAddr>,
}

impl Default for DnsResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl DnsResolver {
    pub fn new() -> DnsResolver {
        DnsResolver::with_servers(Vec::new())
    }

    /// Asks `servers` (in order) instead of those of /etc/resolv.conf; none:
    /// resolv.conf.
    pub fn with_servers(servers: Vec<SocketAddr>) -> DnsResolver {
        DnsResolver {
            inner: tokio::sync::OnceCell::new(),
            servers,
        }
    }

    async fn resolver(&self) -> Result<&TokioResolver, LookupError> {
        let r = self
            .inner
            .get_or_init(|| async {
                if self.servers.is_empty() {
                    return TokioResolver::builder_tokio()
                        .and_then(|b| b.build())
                        .map_err(|e| format!("no DNS resolver (/etc/resolv.conf): {e}"));
                }
                let servers = self
                    .servers
                    .iter()
                    .map(|a| {
                        let mut s = NameServerConfig::udp_and_tcp(a.ip());
                        for c in &mut s.connections {
                            c.port = a.port();
                        }
                        s
                    })
                    .collect();
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(servers),
                    TokioRuntimeProvider::default(),
                )
                .build()
                .map_err(|e| format!("no DNS resolver ({:?}): {e}", self.servers))
            })
            .await;
        r.as_ref().map_err(|e| LookupError::Failed(e.clone()))
    }
}

/// Queries a fully qualified name, so the resolv.conf search list is never applied.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

fn lookup_error(e: hickory_resolver::net::NetError) -> LookupError {
    if e.is_nx_domain() {
        LookupError::NxDomain
    } else if e.is_no_records_found() {
        LookupError::NoRecords
    } else {
        LookupError::Failed(e.to_string())
    }
}

#[async_trait]
impl Resolve for DnsResolver {
    async fn mx(&self, domain: &str) -> Result<Vec<Mx>, LookupError> {
        let lookup = self
            .resolver()
            .await?
            .mx_lookup(fqdn(domain))
            .await
            .map_err(lookup_error)?;
        let records: Vec<Mx> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some(Mx {
                    preference: mx.preference,
                    exchange: mx.exchange.to_ascii().trim_end_matches('.').to_string(),
                }),
                _ => None,
            })
            .collect();
        if records.is_empty() {
            return Err(LookupError::NoRecords);
        }
        Ok(records)
    }

    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, LookupError> {
        let lookup = self
            .resolver()
            .await?
            .lookup_ip(fqdn(host))
            .await
            .map_err(lookup_error)?;
        let ips: Vec<IpAddr> = lookup.iter().collect();
        if ips.is_empty() {
            return Err(LookupError::NoRecords);
        }
        Ok(ips)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::{Smarthost, TlsMode};

    /// Injected DNS data: MX answers and addresses per name.
    #[derive(Default)]
    pub(crate) struct FakeDns {
        pub mx: HashMap<String, Result<Vec<Mx>, LookupError>>,
        pub ips: HashMap<String, Result<Vec<IpAddr>, LookupError>>,
    }

    #[async_trait]
    impl Resolve for FakeDns {
        async fn mx(&self, domain: &str) -> Result<Vec<Mx>, LookupError> {
            self.mx
                .get(domain)
                .cloned()
                .unwrap_or(Err(LookupError::NxDomain))
        }
        async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, LookupError> {
            self.ips
                .get(host)
                .cloned()
                .unwrap_or(Err(LookupError::NxDomain))
        }
    }

    fn mx(preference: u16, exchange: &str) -> Mx {
        Mx {
            preference,
            exchange: exchange.into(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hops_smarthost_then_static_then_mx() {
        let mut config = RelayConfig::default();
        config
            .routes
            .insert("routed.example".into(), "127.0.0.1:2525".into());
        assert_eq!(
            next_hop(&config, "a@Routed.Example"),
            NextHop::Static("127.0.0.1:2525".into())
        );
        assert_eq!(
            next_hop(&config, "a@other.example"),
            NextHop::Mx("other.example".into())
        );
        config.smarthost = Some(Smarthost {
            host: "smtp.isp.example".into(),
            port: 587,
            tls: TlsMode::Required,
            auth: None,
            ca_file: None,
        });
        assert_eq!(next_hop(&config, "a@routed.example"), NextHop::Smarthost);
    }

    #[test]
    fn host_and_port() {
        assert_eq!(
            split_host_port("127.0.0.1:2525"),
            Some(("127.0.0.1".into(), 2525))
        );
        assert_eq!(
            split_host_port("mx.example"),
            Some(("mx.example".into(), 25))
        );
        assert_eq!(split_host_port("[::1]:26"), Some(("::1".into(), 26)));
        assert_eq!(split_host_port("[::1]"), Some(("::1".into(), 25)));
        assert_eq!(split_host_port("::1"), Some(("::1".into(), 25)));
        assert_eq!(split_host_port("h:x"), None);
        assert_eq!(split_host_port(""), None);
    }

    #[test]
    fn mx_by_preference_and_null_mx() {
        let hosts = order_mx(
            "d.example",
            vec![
                mx(20, "b.example."),
                mx(10, "A.example"),
                mx(20, "c.example"),
                mx(30, "a.example"),
            ],
        )
        .unwrap();
        assert_eq!(hosts, ["a.example", "b.example", "c.example"]);

        let err = order_mx("d.example", vec![mx(0, "")]).unwrap_err();
        assert!(
            matches!(&err, RouteError::Permanent(t) if t.starts_with("556 5.1.10 ")),
            "{err:?}"
        );
        assert!(matches!(
            order_mx("d.example", vec![mx(0, ".")]),
            Err(RouteError::Permanent(_))
        ));
        // A null MX beside real hosts is a misconfiguration; the real hosts win.
        assert_eq!(
            order_mx("d.example", vec![mx(0, ""), mx(10, "mx.d.example")]).unwrap(),
            ["mx.d.example"]
        );
    }

    #[tokio::test]
    async fn mx_resolution_with_injected_records() {
        let config = RelayConfig::default();
        let mut dns = FakeDns::default();
        dns.mx.insert(
            "d.example".into(),
            Ok(vec![mx(20, "backup.d.example"), mx(10, "mx.d.example")]),
        );
        dns.ips.insert(
            "mx.d.example".into(),
            Ok(vec![ip("192.0.2.1"), ip("2001:db8::1")]),
        );
        dns.ips
            .insert("backup.d.example".into(), Ok(vec![ip("192.0.2.2")]));
        let t = resolve(&NextHop::Mx("d.example".into()), &config, &dns)
            .await
            .unwrap();
        let addrs: Vec<String> = t.iter().map(|t| format!("{} {}", t.host, t.addr)).collect();
        assert_eq!(
            addrs,
            [
                "mx.d.example 192.0.2.1:25",
                "mx.d.example [2001:db8::1]:25",
                "backup.d.example 192.0.2.2:25"
            ]
        );

        // No MX: the domain itself (implicit MX).
        dns.mx
            .insert("implicit.example".into(), Err(LookupError::NoRecords));
        dns.ips
            .insert("implicit.example".into(), Ok(vec![ip("192.0.2.9")]));
        let t = resolve(&NextHop::Mx("implicit.example".into()), &config, &dns)
            .await
            .unwrap();
        assert_eq!(t[0].addr.to_string(), "192.0.2.9:25");

        // No MX and no address, or no such domain: bounce.
        dns.mx
            .insert("empty.example".into(), Err(LookupError::NoRecords));
        dns.ips
            .insert("empty.example".into(), Err(LookupError::NoRecords));
        for d in ["empty.example", "nx.example"] {
            let e = resolve(&NextHop::Mx(d.into()), &config, &dns)
                .await
                .unwrap_err();
            assert!(
                matches!(&e, RouteError::Permanent(t) if t.starts_with("550 5.1.2")),
                "{e:?}"
            );
        }

        // Null MX: bounce with 556 5.1.10.
        dns.mx.insert("null.example".into(), Ok(vec![mx(0, "")]));
        let e = resolve(&NextHop::Mx("null.example".into()), &config, &dns)
            .await
            .unwrap_err();
        assert!(matches!(&e, RouteError::Permanent(t) if t.starts_with("556 5.1.10")));

        // A DNS failure, or MX hosts without addresses: try again later.
        dns.mx.insert(
            "servfail.example".into(),
            Err(LookupError::Failed("SERVFAIL".into())),
        );
        dns.mx
            .insert("noaddr.example".into(), Ok(vec![mx(10, "ghost.example")]));
        for d in ["servfail.example", "noaddr.example"] {
            let e = resolve(&NextHop::Mx(d.into()), &config, &dns)
                .await
                .unwrap_err();
            assert!(matches!(e, RouteError::Temporary(_)), "{d}: {e:?}");
        }

        // Address literals need no DNS.
        let t = resolve(&NextHop::Mx("[192.0.2.7]".into()), &config, &dns)
            .await
            .unwrap();
        assert_eq!(t[0].addr.to_string(), "192.0.2.7:25");
        let t = resolve(&NextHop::Mx("[IPv6:2001:db8::7]".into()), &config, &dns)
            .await
            .unwrap();
        assert_eq!(t[0].addr.to_string(), "[2001:db8::7]:25");
    }

    #[tokio::test]
    async fn at_most_five_addresses() {
        let config = RelayConfig::default();
        let mut dns = FakeDns::default();
        dns.mx.insert(
            "big.example".into(),
            Ok((0..4)
                .map(|i| mx(i, &format!("mx{i}.big.example")))
                .collect()),
        );
        for i in 0..4 {
            dns.ips.insert(
                format!("mx{i}.big.example"),
                Ok(vec![
                    ip(&format!("192.0.2.{i}")),
                    ip(&format!("192.0.2.{}", i + 100)),
                ]),
            );
        }
        let t = resolve(&NextHop::Mx("big.example".into()), &config, &dns)
            .await
            .unwrap();
        assert_eq!(t.len(), MAX_ADDRESSES);
        assert_eq!(t[4].host, "mx2.big.example");
    }

    #[tokio::test]
    async fn configured_hosts_never_bounce() {
        let config = RelayConfig {
            smarthost: Some(Smarthost {
                host: "smtp.nowhere.example".into(),
                port: 587,
                tls: TlsMode::Required,
                auth: None,
                ca_file: None,
            }),
            ..RelayConfig::default()
        };
        let dns = FakeDns::default();
        let e = resolve(&NextHop::Smarthost, &config, &dns)
            .await
            .unwrap_err();
        assert!(matches!(e, RouteError::Temporary(_)));
        let t = resolve(&NextHop::Static("127.0.0.1:2525".into()), &config, &dns)
            .await
            .unwrap();
        assert_eq!(t[0].addr.to_string(), "127.0.0.1:2525");
    }
}
