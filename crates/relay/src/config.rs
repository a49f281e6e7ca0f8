//! What the relay is told: our name, where mail goes next, how often to retry, how
//! long to wait, and which domains we sign for.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use casella_directory::Secret;

/// How the relay uses TLS towards a smarthost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// STARTTLS must be offered and must succeed; the certificate is verified
    /// against `ca_file` when given, else against the system trust store. Without
    /// TLS nothing is sent (the delivery is deferred).
    #[default]
    Required,
    /// STARTTLS when offered, without certificate verification (Postfix's `may`
    /// level, RFC 7435 opportunistic security); cleartext otherwise, and again in
    /// cleartext if the handshake fails.
    Opportunistic,
    /// TLS from the first byte (port 465, RFC 8314 §3.3), verified as `Required`.
    Implicit,
}

/// One host that takes all outbound mail (an ISP's relay, a mail service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smarthost {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// AUTH PLAIN user name and password; sent only over TLS.
    pub auth: Option<(String, Secret<String>)>,
    /// PEM file of the CA certificates to trust for this host instead of the
    /// system trust store.
    pub ca_file: Option<PathBuf>,
}

/// A DKIM key: messages from `domain` are signed as `selector._domainkey.domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimKey {
    /// Lower-case domain.
    pub domain: String,
    pub selector: String,
    /// PEM private key: RSA (PKCS#1 or PKCS#8) or Ed25519 (PKCS#8).
    pub key_file: PathBuf,
}

/// The relay's configuration.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Our name in EHLO, in `Reporting-MTA:` and in bounces' From: and Message-ID.
    pub hostname: String,
    /// When set, every message goes there, whatever the recipient's domain.
    pub smarthost: Option<Smarthost>,
    /// Static next hops per lower-case recipient domain, as `host:port`; they win
    /// over DNS (and tests point them at a sink on 127.0.0.1).
    pub routes: BTreeMap<String, String>,
    /// Waits between attempts: the n-th failed attempt waits the n-th entry; past the
    /// end, the last entry repeats.
    pub retry_schedule: Vec<Duration>,
    /// How long a message may stay queued. The submitter writes `expires` from it
    /// when it enqueues; the runner only reads `expires` (and falls back to this for
    /// an entry without one).
    pub lifetime: Duration,
    /// Bound on the TCP connect to one address.
    pub connect_timeout: Duration,
    /// Bound on each reply (and on each write) once connected.
    pub command_timeout: Duration,
    pub dkim: Vec<DkimKey>,
    /// Name servers for MX and address lookups instead of /etc/resolv.conf's
    /// (empty: resolv.conf). `host:port`, so a test can run its own on loopback.
    pub dns_servers: Vec<std::net::SocketAddr>,
    /// The port of MX hosts (and implicit MX, address literals): 25, as Postfix's
    /// `smtp_tcp_port`. Another port only for tests or unusual networks.
    pub smtp_port: u16,
}

impl Default for RelayConfig {
    fn default() -> Self {
        const MIN: u64 = 60;
        RelayConfig {
            hostname: "localhost".to_string(),
            smarthost: None,
            routes: BTreeMap::new(),
            retry_schedule: [1, 5, 15, 30, 60, 120, 240]
                .iter()
                .map(|m| Duration::from_secs(m * MIN))
                .collect(),
            lifetime: Duration::from_secs(5 * 24 * 3600),
            connect_timeout: Duration::from_secs(30),
            // RFC 5321 §4.5.3.2 suggests 5 minutes for most replies.
            command_timeout: Duration::from_secs(300),
            dkim: Vec::new(),
            dns_servers: Vec::new(),
            smtp_port: crate::route::SMTP_PORT,
        }
    }
}

impl RelayConfig {
    /// The wait after the `attempts`-th failed attempt (1-based).
    pub fn retry_delay(&self, attempts: u32) -> Duration {
        let i = attempts.saturating_sub(1) as usize;
        self.retry_schedule
            .get(i)
            .or(self.retry_schedule.last())
            .copied()
            .unwrap_or(Duration::from_secs(3600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_then_every_four_hours() {
        let c = RelayConfig::default();
        let mins = |n| c.retry_delay(n).as_secs() / 60;
        assert_eq!(
            (1..=9).map(mins).collect::<Vec<_>>(),
            [1, 5, 15, 30, 60, 120, 240, 240, 240]
        );
        assert_eq!(c.lifetime.as_secs(), 5 * 86_400);
        let empty = RelayConfig {
            retry_schedule: vec![],
            ..RelayConfig::default()
        };
        assert_eq!(empty.retry_delay(1).as_secs(), 3600);
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let c = RelayConfig {
            smarthost: Some(Smarthost {
                host: "smtp.example".into(),
                port: 587,
                tls: TlsMode::Required,
                auth: Some(("u".into(), Secret::new("hunter2".into()))),
                ca_file: None,
            }),
            ..RelayConfig::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
