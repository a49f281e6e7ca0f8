//! The configuration file `DIR/casella.toml`: written with comments on first run,
//! read at start. Every key has a default, so an empty file is a valid config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use casella_directory::LoginType;
use casella_store::Store;
use casella_store::postgres::{PgOptions, PgStore};
use casella_store::sqlite::SqliteStore;
use serde::Deserialize;

pub const CONFIG_FILE: &str = "casella.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    pub hostname: String,
    pub store: String,
    /// The embedded store's SEARCH text index: fast text searches of large
    /// mailboxes, built in the background at the lowest CPU priority.
    pub search_index: bool,
    /// This node's name among several sharing one PostgreSQL store (default: the
    /// hostname).
    pub node_id: Option<String>,
    /// With PostgreSQL: how long a POP3 maildrop lock lasts without renewal
    /// (default 30 s); see `casella_store::postgres::PgOptions::maildrop_lease`.
    pub maildrop_lease_secs: Option<u64>,
    pub tls: TlsConfig,
    /// Protocol name → addresses.
    pub listen: BTreeMap<String, Vec<String>>,
    pub pop3: Pop3Section,
    pub imap: ImapSection,
    pub smtp: SmtpSection,
    pub submission: SubmissionSection,
    pub relay: RelaySection,
    /// standalone (default), frontend or backend — see README "Front ends and back
    /// ends".
    pub role: Role,
    pub cluster: ClusterSection,
    /// Site name → its back ends' internal listeners (read by front ends).
    pub sites: BTreeMap<String, SiteSection>,
    pub web: WebSection,
    /// OAuth 2.0 ("modern authentication"): XOAUTH2 and OAUTHBEARER are offered
    /// when an issuer is set.
    pub oauth: OAuthSection,
    /// Storage quotas for every account (each may have its own).
    pub quota: QuotaSection,
}

/// `[quota]`: Exchange's three levels and a message limit for every account
/// (`casella account set ADDRESS quota-send=…` overrides one). Sizes such as
/// "1.9GB" or "500MB"; empty or "unlimited": none (the default).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct QuotaSection {
    /// IssueWarningQuota: a warning message to the INBOX, once a week.
    pub warning: String,
    /// ProhibitSendQuota: submission refused with 552 5.2.2.
    pub prohibit_send: String,
    /// ProhibitSendReceiveQuota: delivery, APPEND and COPY refused too.
    pub prohibit_send_receive: String,
    /// The most messages an account may hold (0: no limit).
    pub messages: u64,
}

impl QuotaSection {
    /// The levels, or an error naming the key with a bad size.
    pub fn limits(&self) -> anyhow::Result<casella_store::QuotaLimits> {
        let size = |key: &str, v: &str| -> anyhow::Result<Option<u64>> {
            if v.trim().is_empty() {
                return Ok(None);
            }
            casella_directory::quota::parse_size(v)
                .map(|n| (n > 0).then_some(n))
                .with_context(|| format!("[quota] {key} = {v:?}: a size such as 2GB or 500MB"))
        };
        Ok(casella_store::QuotaLimits {
            warning: size("warning", &self.warning)?,
            send: size("prohibit-send", &self.prohibit_send)?,
            receive: size("prohibit-send-receive", &self.prohibit_send_receive)?,
            messages: (self.messages > 0).then_some(self.messages),
        })
    }
}

/// `[oauth]`: the token issuer whose access tokens log users in.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct OAuthSection {
    /// The `iss` claim tokens must carry; empty: OAuth off.
    pub issuer: String,
    /// One of the `aud` values tokens must carry.
    pub audience: String,
    /// The issuer's keys: a JWKS file (re-read when it changes) …
    pub jwks_file: Option<std::path::PathBuf>,
    /// … or URL (fetched at start and every `jwks-refresh` seconds).
    pub jwks_url: Option<String>,
    pub jwks_refresh: u64,
    pub scope_imap: String,
    pub scope_pop: String,
    pub scope_submission: String,
    /// Claims naming the user, tried in order.
    pub user_claims: Vec<String>,
    /// Clock skew allowed, in seconds.
    pub leeway: i64,
}

impl Default for OAuthSection {
    fn default() -> Self {
        OAuthSection {
            issuer: String::new(),
            audience: String::new(),
            jwks_file: None,
            jwks_url: None,
            jwks_refresh: 3600,
            scope_imap: "IMAP.AccessAsUser.All".into(),
            scope_pop: "POP.AccessAsUser.All".into(),
            scope_submission: "SMTP.Send".into(),
            user_claims: vec![
                "email".into(),
                "upn".into(),
                "preferred_username".into(),
                "sub".into(),
            ],
            leeway: 60,
        }
    }
}

/// `[web]`: the http/https listeners' pages.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct WebSection {
    /// Networks whose users are shown the internal connection settings
    /// (CIDR; default: the private and loopback ranges).
    pub internal_networks: Vec<String>,
    /// Networks whose clients may sign in over plain HTTP (CIDR; default:
    /// loopback, for a TLS proxy on this host). Everyone else is sent to the
    /// https address: the mail protocols refuse cleartext passwords by default,
    /// so does the web.
    pub trusted_networks: Vec<String>,
    /// Networks the admin pages and the admin API answer (CIDR; default: the
    /// private and loopback ranges, as `internal-networks`). Administration
    /// from anywhere: `["0.0.0.0/0", "::/0"]`.
    pub admin_networks: Vec<String>,
}

/// The private and loopback ranges.
fn private_networks() -> Vec<String> {
    casella_web::PRIVATE_NETWORKS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

impl Default for WebSection {
    fn default() -> Self {
        WebSection {
            internal_networks: private_networks(),
            trusted_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            admin_networks: private_networks(),
        }
    }
}

/// What a node does among front ends and back ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Serves its mailboxes itself (one node, or N nodes on one PostgreSQL).
    #[default]
    Standalone,
    /// Logs clients in and hands each session over to the account's back end.
    Frontend,
    /// Serves sessions front ends hand over on `*-internal` listeners (and, if
    /// given, its own client listeners as a standalone node does).
    Backend,
}

/// Front ends and back ends share a secret; front ends find back ends by site.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClusterSection {
    /// A file holding the shared secret (at least 16 bytes; surrounding whitespace
    /// ignored). Relative paths are relative to the data directory.
    pub secret_file: Option<PathBuf>,
    /// The site for accounts without a `backend` attribute (front ends).
    pub default_backend: Option<String>,
    /// Seconds a front end waits for a back end to accept and greet.
    pub connect_timeout: u64,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            secret_file: None,
            default_backend: None,
            connect_timeout: 5,
        }
    }
}

/// One site: `host:port` of its back ends' internal listeners, per protocol, tried
/// in turn.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SiteSection {
    pub imap: Vec<String>,
    pub pop3: Vec<String>,
    pub submission: Vec<String>,
}

/// How mail for remote recipients leaves: DNS MX by default, or a smarthost.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RelaySection {
    /// `host:port` of a smarthost that takes all outbound mail.
    pub smarthost: Option<String>,
    /// required (STARTTLS, verified), opportunistic, or implicit (TLS on connect).
    pub smarthost_tls: Option<String>,
    pub smarthost_user: Option<String>,
    /// A file holding the smarthost password (kept out of this file).
    pub smarthost_password_file: Option<PathBuf>,
    /// CA certificates (PEM) to verify the smarthost with.
    pub smarthost_ca_file: Option<PathBuf>,
    /// Fixed next hops per recipient domain, `domain = "host:port"`.
    pub routes: BTreeMap<String, String>,
    /// Name servers (`ip:port`) for MX and address lookups instead of those of
    /// /etc/resolv.conf.
    pub dns_servers: Vec<std::net::SocketAddr>,
    /// The port of MX hosts; 25 unless set (Postfix's smtp_tcp_port).
    pub smtp_port: Option<u16>,
    /// DKIM keys: `[[relay.dkim]] domain = "…" selector = "…" key-file = "…"`.
    pub dkim: Vec<DkimSection>,
    /// Seconds to wait before each retry; the last one repeats. Default:
    /// 60, 300, 900, 1800, 3600, 7200, 14400.
    pub retry_schedule: Vec<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DkimSection {
    pub domain: String,
    pub selector: String,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SubmissionSection {
    pub login_type: LoginType,
    pub auth_failure_delay_ms: u64,
    /// Messages one user may submit per hour (0: no limit).
    pub max_messages_per_hour: u32,
    /// Hours the outbound queue keeps trying a remote recipient.
    pub queue_lifetime_hours: u64,
}

impl Default for SubmissionSection {
    fn default() -> Self {
        SubmissionSection {
            login_type: LoginType::SecureLogin,
            auth_failure_delay_ms: 1000,
            max_messages_per_hour: 1000,
            queue_lifetime_hours: 120,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImapSection {
    pub login_type: LoginType,
    pub max_command_size: usize,
    pub append_limit: u32,
    pub preauth_timeout: u64,
    pub auth_timeout: u64,
    pub auth_failure_delay_ms: u64,
    /// SEARCH consults the text index in mailboxes of at least this many
    /// messages (default: 1,000 for TEXT/BODY, 5,000 for header fields).
    pub search_index_min_messages: Option<usize>,
}

impl Default for ImapSection {
    fn default() -> Self {
        ImapSection {
            login_type: LoginType::SecureLogin,
            max_command_size: casella_imap::DEFAULT_MAX_COMMAND_SIZE,
            append_limit: 36_700_160,
            preauth_timeout: 60,
            auth_timeout: 1800,
            auth_failure_delay_ms: 1000,
            search_index_min_messages: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Pop3Section {
    pub login_type: LoginType,
    pub max_command_size: usize,
    pub preauth_timeout: u64,
    pub auth_timeout: u64,
    pub auth_failure_delay_ms: u64,
}

impl Default for Pop3Section {
    fn default() -> Self {
        Pop3Section {
            login_type: LoginType::SecureLogin,
            max_command_size: 512,
            preauth_timeout: 60,
            auth_timeout: 600,
            auth_failure_delay_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SmtpSection {
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub timeout: u64,
}

impl Default for SmtpSection {
    fn default() -> Self {
        SmtpSection {
            max_message_size: 36_700_160,
            max_recipients: 100,
            timeout: 300,
        }
    }
}

/// Exchange's default bindings: every IPv4 and IPv6 address on the standard ports.
pub fn default_listeners() -> BTreeMap<String, Vec<String>> {
    let both = |port: u16| vec![format!("0.0.0.0:{port}"), format!("[::]:{port}")];
    let mut m = BTreeMap::new();
    m.insert("pop3".into(), both(110));
    m.insert("pop3s".into(), both(995));
    m.insert("imap".into(), both(143));
    m.insert("imaps".into(), both(993));
    m.insert("submission".into(), both(587));
    m.insert("submissions".into(), both(465));
    m.insert("smtp".into(), both(25));
    m.insert("lmtp".into(), vec!["127.0.0.1:24".into()]);
    m.insert("http".into(), both(8080));
    // Passwords are taken over HTTPS only (or from loopback and [web]
    // trusted-networks), so the pages need an https listener to be usable.
    m.insert("https".into(), both(8443));
    m
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: system_hostname(),
            store: "embedded".into(),
            search_index: true,
            node_id: None,
            maildrop_lease_secs: None,
            tls: TlsConfig::default(),
            listen: default_listeners(),
            pop3: Pop3Section::default(),
            imap: ImapSection::default(),
            smtp: SmtpSection::default(),
            submission: SubmissionSection::default(),
            relay: RelaySection::default(),
            role: Role::Standalone,
            cluster: ClusterSection::default(),
            sites: BTreeMap::new(),
            web: WebSection::default(),
            oauth: OAuthSection::default(),
            quota: QuotaSection::default(),
        }
    }
}

impl Config {
    pub fn pop3(&self) -> casella_pop3::Pop3Config {
        casella_pop3::Pop3Config {
            hostname: self.hostname.clone(),
            login_type: self.pop3.login_type,
            max_command_size: self.pop3.max_command_size.max(16),
            preauth_timeout: Duration::from_secs(self.pop3.preauth_timeout.max(1)),
            auth_timeout: Duration::from_secs(self.pop3.auth_timeout.max(1)),
            auth_failure_delay: Duration::from_millis(self.pop3.auth_failure_delay_ms),
            ..casella_pop3::Pop3Config::default()
        }
    }

    pub fn imap(&self) -> casella_imap::ImapConfig {
        casella_imap::ImapConfig {
            hostname: self.hostname.clone(),
            login_type: self.imap.login_type,
            max_command_size: self.imap.max_command_size.max(64),
            append_limit: self.imap.append_limit.max(1024),
            preauth_timeout: Duration::from_secs(self.imap.preauth_timeout.max(1)),
            auth_timeout: Duration::from_secs(self.imap.auth_timeout.max(1)),
            auth_failure_delay: Duration::from_millis(self.imap.auth_failure_delay_ms),
            search_index_min_messages: self.imap.search_index_min_messages,
            ..casella_imap::ImapConfig::default()
        }
    }

    pub fn smtp(&self) -> casella_smtp::SmtpConfig {
        casella_smtp::SmtpConfig {
            hostname: self.hostname.clone(),
            max_message_size: self.smtp.max_message_size,
            max_recipients: self.smtp.max_recipients.max(1),
            max_command_size: 4096,
            timeout: Duration::from_secs(self.smtp.timeout.max(1)),
            preauth_timeout: Duration::from_secs(self.smtp.timeout.max(1)),
            ..casella_smtp::SmtpConfig::default()
        }
    }

    pub fn submission(&self) -> casella_smtp::SmtpConfig {
        casella_smtp::SmtpConfig {
            login_type: self.submission.login_type,
            auth_failure_delay: Duration::from_millis(self.submission.auth_failure_delay_ms),
            max_messages_per_hour: self.submission.max_messages_per_hour,
            queue_lifetime: Duration::from_secs(self.submission.queue_lifetime_hours.max(1) * 3600),
            // Exchange's client connector: a minute to log in.
            preauth_timeout: Duration::from_secs(60),
            ..self.smtp()
        }
    }
}

impl Config {
    /// The outbound relay's settings.
    pub fn relay(&self) -> anyhow::Result<casella_relay::RelayConfig> {
        use casella_relay::{DkimKey, RelayConfig, Smarthost, TlsMode};
        let r = &self.relay;
        let smarthost = match &r.smarthost {
            None => None,
            Some(hp) => {
                let (host, port) = hp
                    .rsplit_once(':')
                    .and_then(|(h, p)| {
                        p.parse::<u16>()
                            .ok()
                            .map(|p| (h.trim_matches(['[', ']']).to_string(), p))
                    })
                    .with_context(|| format!("[relay] smarthost = {hp:?}: expected host:port"))?;
                let tls = match r.smarthost_tls.as_deref().unwrap_or("required") {
                    "required" => TlsMode::Required,
                    "opportunistic" => TlsMode::Opportunistic,
                    "implicit" => TlsMode::Implicit,
                    other => anyhow::bail!(
                        "[relay] smarthost-tls = {other:?}: use required, opportunistic or implicit"
                    ),
                };
                let auth = match (&r.smarthost_user, &r.smarthost_password_file) {
                    (Some(user), Some(file)) => {
                        let pw = std::fs::read_to_string(file)
                            .with_context(|| format!("reading {}", file.display()))?;
                        Some((
                            user.clone(),
                            casella_directory::Secret::new(pw.trim_end().to_string()),
                        ))
                    }
                    (None, None) => None,
                    _ => anyhow::bail!(
                        "[relay] smarthost-user and smarthost-password-file go together"
                    ),
                };
                Some(Smarthost {
                    host,
                    port,
                    tls,
                    auth,
                    ca_file: r.smarthost_ca_file.clone(),
                })
            }
        };
        Ok(RelayConfig {
            hostname: self.hostname.clone(),
            smarthost,
            routes: r
                .routes
                .iter()
                .map(|(d, h)| (d.to_ascii_lowercase(), h.clone()))
                .collect(),
            lifetime: Duration::from_secs(self.submission.queue_lifetime_hours.max(1) * 3600),
            retry_schedule: if r.retry_schedule.is_empty() {
                RelayConfig::default().retry_schedule
            } else {
                r.retry_schedule
                    .iter()
                    .map(|s| Duration::from_secs((*s).max(1)))
                    .collect()
            },
            dkim: r
                .dkim
                .iter()
                .map(|d| DkimKey {
                    domain: d.domain.clone(),
                    selector: d.selector.clone(),
                    key_file: d.key_file.clone(),
                })
                .collect(),
            dns_servers: r.dns_servers.clone(),
            smtp_port: r.smtp_port.unwrap_or(casella_relay::route::SMTP_PORT),
            ..RelayConfig::default()
        })
    }
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn default_file_text(hostname: &str) -> String {
    format!(
        r#"# casella configuration. Every key is optional; the values shown are the defaults.
# Changes take effect at the next start.

# The name clients use to reach this server; the self-signed certificate made on
# first run is issued for it.
hostname = "{hostname}"

# Where mail is kept. "embedded" keeps everything in this data directory;
# "postgres://casella@db.example.org/casella" shares one PostgreSQL database between
# any number of casella nodes (each with its own node-id, default: the hostname).
store = "embedded"
# A trigram index of message text for the embedded store (in store/search.db):
# SEARCH TEXT/BODY/FROM… on 100,000 messages in tens of milliseconds instead of
# seconds. Built in the background when the CPU is otherwise idle (new mail is
# searched directly until indexed); `casella search-index status` shows its
# progress. Applied when the server starts.
search-index = true
# node-id = "mail1"
# With PostgreSQL, a POP3 session's maildrop lock is a lease its node renews: a
# node that dies keeps its users' maildrops locked this long, and a database outage
# of about half of it ends no POP3 session.
# maildrop-lease-secs = 30

# Front end or back end (see the README, "Front ends and back ends"): a front end
# logs clients in and hands each IMAP, POP3 and submission session over to the back
# end of the account's site (`casella account set ADDRESS backend=SITE`); a back end
# takes them on its imap-internal, pop3-internal and submission-internal listeners
# (bind internal addresses only), from front ends that know the [cluster] secret.
role = "standalone"                   # or "frontend", "backend"

[tls]
# A certificate chain and key (PEM) to use instead of the self-signed one in tls/.
# cert = "/etc/letsencrypt/live/mail.example.org/fullchain.pem"
# key = "/etc/letsencrypt/live/mail.example.org/privkey.pem"

# Listeners, used when `casella serve` is started without --listen. Remove a line
# to switch that service off. https serves the users' settings pages, client
# autoconfiguration and the admin API over TLS with the certificate above; http
# serves the same without TLS, where the sign-in page sends people to https
# (passwords over plain HTTP only from loopback and [web] trusted-networks).
[listen]
pop3 = ["0.0.0.0:110", "[::]:110"]
pop3s = ["0.0.0.0:995", "[::]:995"]
imap = ["0.0.0.0:143", "[::]:143"]
imaps = ["0.0.0.0:993", "[::]:993"]
submission = ["0.0.0.0:587", "[::]:587"]
submissions = ["0.0.0.0:465", "[::]:465"]
smtp = ["0.0.0.0:25", "[::]:25"]
lmtp = ["127.0.0.1:24"]
http = ["0.0.0.0:8080", "[::]:8080"]
https = ["0.0.0.0:8443", "[::]:8443"]

[pop3]
# secure-login: no password before STLS or on the TLS port (Exchange's default).
# plaintext-authentication: same for passwords; plaintext-login: passwords allowed
# on cleartext connections.
login-type = "secure-login"
# Longest command line in bytes (Exchange's MaxCommandSize).
max-command-size = 512
# Seconds a client may stay idle before and after logging in.
preauth-timeout = 60
auth-timeout = 600
# Pause after a failed login, in milliseconds.
auth-failure-delay-ms = 1000

[imap]
# The same login policies as for POP3.
login-type = "secure-login"
# Longest command line in bytes, literals excluded (Dovecot's imap_max_line_length:
# room for an ID at RFC 2971's maximum size).
max-command-size = 65536
# Largest message APPEND accepts, in bytes (advertised as APPENDLIMIT).
append-limit = 36700160
# Seconds a client may stay idle before and after logging in (RFC 9051: 30 minutes).
preauth-timeout = 60
auth-timeout = 1800
auth-failure-delay-ms = 1000
# SEARCH asks the text index (search-index) in folders of at least this many
# messages; smaller ones are searched directly, which is faster there. Default:
# 1000 for TEXT/BODY, 5000 for header fields such as FROM and SUBJECT.
# search-index-min-messages = 1000

[submission]
# The same login policies as for POP3 and IMAP: no AUTH before STARTTLS by default.
login-type = "secure-login"
auth-failure-delay-ms = 1000
# Messages one user may send per hour (0: no limit).
max-messages-per-hour = 1000
# Hours the outbound queue keeps retrying a remote recipient before bouncing.
queue-lifetime-hours = 120

[relay]
# Mail for remote recipients goes to each domain's MX (DNS) unless a smarthost
# takes it all:
# smarthost = "smtp.provider.example:587"
# smarthost-tls = "required"          # or "opportunistic", "implicit"
# smarthost-user = "account@provider.example"
# smarthost-password-file = "/etc/casella/smarthost-password"
# smarthost-ca-file = "/etc/ssl/certs/provider.pem"
# Seconds before each retry (the last repeats):
# retry-schedule = [60, 300, 900, 1800, 3600, 7200, 14400]
# Fixed next hops for some domains:
# routes = {{ "partner.example" = "mx.partner.example:25" }}
# Name servers for MX lookups instead of /etc/resolv.conf's:
# dns-servers = ["127.0.0.53:53"]
# DKIM signing per sender domain (publish the TXT record that
# `casella dkim-record KEY-FILE` prints at SELECTOR._domainkey.DOMAIN):
# [[relay.dkim]]
# domain = "example.org"
# selector = "casella"
# key-file = "/etc/casella/dkim-example.org.pem"

[web]
# Clients shown the internal connection settings on the settings page:
# internal-networks = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1/128", "fc00::/7"]
# Clients that may sign in over plain HTTP (loopback: a TLS proxy on this host):
# trusted-networks = ["127.0.0.0/8", "::1/128"]
# Clients the admin pages and the admin API answer (the private and loopback
# ranges by default; ["0.0.0.0/0", "::/0"] for anywhere):
# admin-networks = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1/128", "fc00::/7"]

[smtp]
# Limits for inbound SMTP, LMTP and submission alike.
# Largest message accepted, in bytes (advertised with SIZE).
max-message-size = 36700160
max-recipients = 100
# Seconds a client may stay idle between commands.
timeout = 300

# Front ends and back ends (role = "frontend" or "backend").
# [cluster]
# The secret both prove to each other; never logged. Make one with
# `head -c 32 /dev/urandom | base64 > FILE` and copy it to every node.
# secret-file = "/etc/casella/cluster.secret"
# The site of accounts without a backend attribute (front ends):
# default-backend = "site1"
# Seconds a front end waits for a back end to accept and greet:
# connect-timeout = 5
# Each site's back ends, per protocol; a front end spreads sessions over them and
# skips those that do not answer:
# [sites.site1]
# imap = ["10.0.0.21:1143", "10.0.0.22:1143"]
# pop3 = ["10.0.0.21:1110", "10.0.0.22:1110"]
# submission = ["10.0.0.21:1587", "10.0.0.22:1587"]
"#
    )
}

/// Reads `DIR/casella.toml`, creating DIR and a commented default file on first run.
pub fn load_or_create(data: &Path) -> anyhow::Result<Config> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let path = data.join(CONFIG_FILE);
    if !path.exists() {
        let text = default_file_text(&system_hostname());
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        tracing::info!(path = %path.display(), "wrote the default configuration");
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let config: Config = toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
    Ok(config)
}

/// Opens the store the configuration names: the embedded one in the data
/// directory, or PostgreSQL (`store = "postgres://user@host/db"`).
pub async fn open_store(data: &Path) -> anyhow::Result<Arc<dyn Store>> {
    open_store_with(data, None).await
}

/// The store, with the text index switched as the server's configuration says
/// (`Some`), or left as it is (`None`, for the other commands).
pub async fn open_store_with(
    data: &Path,
    search_index: Option<bool>,
) -> anyhow::Result<Arc<dyn Store>> {
    let config = load_or_create(data)?;
    match config.store.as_str() {
        "embedded" | "" => {
            let store = SqliteStore::open_with(data.join("store"), search_index)
                .context("opening the embedded store")?;
            Ok(Arc::new(store))
        }
        url if url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("host=") =>
        {
            let options = PgOptions {
                // A stable name lets a restarted node take back its queue claims.
                node_id: Some(
                    config
                        .node_id
                        .clone()
                        .unwrap_or_else(|| config.hostname.clone()),
                ),
                maildrop_lease: config
                    .maildrop_lease_secs
                    .map(Duration::from_secs)
                    .unwrap_or(PgOptions::default().maildrop_lease),
                ..PgOptions::default()
            };
            let store = PgStore::connect_with(url, options)
                .await
                .context("connecting to the PostgreSQL store")?;
            Ok(Arc::new(store))
        }
        other => anyhow::bail!("store = {other:?}: use \"embedded\" or a postgres:// URL"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_parses_to_the_defaults() {
        let c: Config = toml::from_str(&default_file_text("mail.example.org")).unwrap();
        assert_eq!(c.hostname, "mail.example.org");
        assert_eq!(c.listen, default_listeners());
        assert_eq!(c.pop3.max_command_size, 512);
        assert_eq!(c.pop3.login_type, LoginType::SecureLogin);
        assert_eq!(c.web.admin_networks, WebSection::default().admin_networks);
        assert_eq!(c.web.trusted_networks, ["127.0.0.0/8", "::1/128"]);
        let empty: Config = toml::from_str("").unwrap();
        assert_eq!(empty.store, "embedded");
    }

    #[test]
    fn relay_dns_servers_and_smtp_port() {
        let c: Config =
            toml::from_str("[relay]\ndns-servers = [\"127.0.0.1:5353\"]\nsmtp-port = 2525\n")
                .unwrap();
        let r = c.relay().unwrap();
        assert_eq!(r.dns_servers, vec!["127.0.0.1:5353".parse().unwrap()]);
        assert_eq!(r.smtp_port, 2525);
        let d = toml::from_str::<Config>("").unwrap().relay().unwrap();
        assert!(d.dns_servers.is_empty());
        assert_eq!(d.smtp_port, 25);
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<Config>("hostnme = \"x\"").is_err());
    }
}
