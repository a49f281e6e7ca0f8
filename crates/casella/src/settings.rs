//! Live protocol settings — Exchange's Set-PopSettings / Set-ImapSettings and the
//! submission connector — read and written with `casella settings <protocol>
//! get|set`, kept in `DIR/settings.toml`, and applied by a running server within a
//! second, without a restart.
//!
//! Precedence: a key set with `casella settings` wins; otherwise the `[pop3]`,
//! `[imap]` or `[submission]` section of casella.toml; otherwise the Exchange
//! default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use casella_directory::LoginType;
use casella_mime::RetrievalFormat;
use std::sync::Arc;

use casella_net::{ProtocolLog, Rollover};
use casella_pop3::{Pop3Config, SortOrder};

use crate::config::Config;

pub const SETTINGS_FILE: &str = "settings.toml";

/// The services that have settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Pop,
    Imap,
    Submission,
}

impl Service {
    pub fn parse(s: &str) -> anyhow::Result<Service> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "pop" | "pop3" => Service::Pop,
            "imap" | "imap4" => Service::Imap,
            "submission" | "smtp" => Service::Submission,
            other => bail!("unknown protocol {other:?} (pop, imap or submission)"),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Service::Pop => "pop",
            Service::Imap => "imap",
            Service::Submission => "submission",
        }
    }

    /// The keys this service has, in the order `get` lists them.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Service::Pop => &[
                "login-type",
                "allow-basic-auth",
                "banner",
                "max-connections",
                "max-connections-per-ip",
                "max-connections-per-user",
                "preauth-timeout",
                "auth-timeout",
                "max-command-size",
                "auth-failure-delay",
                "sasl-mechanisms",
                "sort-order",
                "message-retrieval-format",
                "suppress-read-receipt",
                "exact-rfc822-size",
                "external-connection-settings",
                "internal-connection-settings",
                "protocol-log",
                "protocol-log-directory",
                "protocol-log-rollover",
                "bindings",
                "bindings-tls",
            ],
            Service::Imap => &[
                "login-type",
                "allow-basic-auth",
                "banner",
                "max-connections",
                "max-connections-per-ip",
                "max-connections-per-user",
                "preauth-timeout",
                "auth-timeout",
                "max-command-size",
                "auth-failure-delay",
                "sasl-mechanisms",
                "message-retrieval-format",
                "suppress-read-receipt",
                "exact-rfc822-size",
                "show-hidden-folders",
                "external-connection-settings",
                "internal-connection-settings",
                "protocol-log",
                "protocol-log-directory",
                "protocol-log-rollover",
                "bindings",
                "bindings-tls",
            ],
            Service::Submission => &[
                "login-type",
                "allow-basic-auth",
                "banner",
                "max-connections",
                "max-connections-per-ip",
                "max-connections-per-user",
                "preauth-timeout",
                "auth-timeout",
                "max-command-size",
                "auth-failure-delay",
                "sasl-mechanisms",
                "external-connection-settings",
                "internal-connection-settings",
                "protocol-log",
                "protocol-log-directory",
                "protocol-log-rollover",
                "bindings",
                "bindings-tls",
            ],
        }
    }
}

/// What `casella settings … set` stored: service → key → canonical value, and the
/// data directory they belong to (protocol logs go under it by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides(pub BTreeMap<String, BTreeMap<String, String>>, pub PathBuf);

pub fn path(data: &Path) -> PathBuf {
    data.join(SETTINGS_FILE)
}

impl Overrides {
    pub fn load(data: &Path) -> anyhow::Result<Overrides> {
        let p = path(data);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Overrides(BTreeMap::new(), data.to_path_buf()));
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
        };
        let map: BTreeMap<String, BTreeMap<String, String>> =
            toml::from_str(&text).with_context(|| format!("in {}", p.display()))?;
        Ok(Overrides(map, data.to_path_buf()))
    }

    /// Writes the file atomically (temp file and rename), so a running server
    /// never reads half of it.
    pub fn save(&self, data: &Path) -> anyhow::Result<()> {
        let mut text = String::from(
            "# Written by `casella settings`; a running casella applies changes within a second.\n",
        );
        text.push_str(&toml::to_string(&self.0).context("encoding settings")?);
        let p = path(data);
        let tmp = data.join(format!(".{SETTINGS_FILE}.tmp"));
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &p).with_context(|| format!("writing {}", p.display()))?;
        Ok(())
    }

    fn get(&self, service: Service, key: &str) -> Option<&str> {
        self.0
            .get(service.name())
            .and_then(|m| m.get(key))
            .map(String::as_str)
    }

    /// Validates and records `key=value`.
    pub fn set(&mut self, service: Service, key: &str, value: &str) -> anyhow::Result<()> {
        let key = key.trim().to_ascii_lowercase();
        // Exchange Online's organisation switches name the protocol in the key.
        let key = match key.strip_prefix("allow-basic-auth-") {
            Some(p) if Service::parse(p).ok() == Some(service) => "allow-basic-auth".to_string(),
            Some(p) => bail!("allow-basic-auth-{p} belongs to `casella settings {p}`"),
            None => key,
        };
        if !service.keys().contains(&key.as_str()) {
            bail!(
                "{} has no setting {key:?}; known: {}",
                service.name(),
                service.keys().join(", ")
            );
        }
        let canonical = canonical(&key, value.trim()).with_context(|| format!("{key}={value}"))?;
        self.0
            .entry(service.name().to_string())
            .or_default()
            .insert(key, canonical);
        Ok(())
    }
}

fn canonical(key: &str, value: &str) -> anyhow::Result<String> {
    Ok(match key {
        "login-type" => login_type_name(
            LoginType::parse(value)
                .context("use plaintext-login, plaintext-authentication or secure-login")?,
        )
        .to_string(),
        "allow-basic-auth" => parse_bool(value)?.to_string(),
        "banner" => {
            if value.is_empty() || value.len() > 200 || value.chars().any(|c| c.is_control()) {
                bail!("the banner is one line of at most 200 characters");
            }
            value.to_string()
        }
        "max-connections" | "max-connections-per-ip" | "max-connections-per-user" => {
            format_count(parse_count(value)?)
        }
        "preauth-timeout" | "auth-timeout" => {
            let d = parse_duration(value)?;
            if d < Duration::from_secs(1) {
                bail!("a timeout is at least 1s");
            }
            format_duration(d)
        }
        "auth-failure-delay" => format_duration(parse_duration(value)?),
        "sasl-mechanisms" => match parse_mechanisms(value)? {
            None => "all".to_string(),
            Some(list) => list.join(" "),
        },
        "max-command-size" => {
            let n: usize = value.parse().context("a number of bytes")?;
            if !(64..=1 << 20).contains(&n) {
                bail!("between 64 and 1048576 bytes");
            }
            n.to_string()
        }
        "external-connection-settings" | "internal-connection-settings" => {
            let list = parse_connection_settings(value)?;
            list.iter()
                .map(ConnectionSetting::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
        "bindings" | "bindings-tls" => {
            let list = parse_bindings(value)?;
            list.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
        "protocol-log" | "suppress-read-receipt" | "exact-rfc822-size" | "show-hidden-folders" => {
            parse_bool(value)?.to_string()
        }
        "message-retrieval-format" => RetrievalFormat::parse(value)
            .context("best-body, text-only, html-only or html-and-text")?
            .name()
            .to_string(),
        "protocol-log-directory" => {
            if value.is_empty() || value.chars().any(|c| c.is_control()) {
                bail!("a directory path");
            }
            value.to_string()
        }
        "protocol-log-rollover" => format_rollover(parse_rollover(value)?),
        "sort-order" => match value.to_ascii_lowercase().as_str() {
            "ascending" => "ascending".into(),
            "descending" => "descending".into(),
            _ => bail!("ascending or descending"),
        },
        other => bail!("unknown setting {other}"),
    })
}

fn login_type_name(t: LoginType) -> &'static str {
    match t {
        LoginType::PlaintextLogin => "plaintext-login",
        LoginType::PlaintextAuthentication => "plaintext-authentication",
        LoginType::SecureLogin => "secure-login",
    }
}

fn parse_bool(v: &str) -> anyhow::Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" | "$true" => Ok(true),
        "false" | "off" | "no" | "0" | "$false" => Ok(false),
        _ => bail!("true or false"),
    }
}

/// The SASL mechanisms casella can offer.
const MECHANISMS: [&str; 6] = [
    "PLAIN",
    "LOGIN",
    "SCRAM-SHA-256",
    "SCRAM-SHA-256-PLUS",
    "XOAUTH2",
    "OAUTHBEARER",
];

/// `sasl-mechanisms`: `all`, or the mechanisms to offer (space or comma
/// separated), of those casella has. An administrator can stop offering one a
/// client fails with (Debian's mutt picks SCRAM-SHA-256-PLUS and fails in its
/// own SASL library). Mechanisms that do not work on a connection are not
/// offered there whatever this says.
fn parse_mechanisms(v: &str) -> anyhow::Result<Option<Vec<String>>> {
    if v.trim().eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    let mut list = Vec::new();
    for m in v.split([' ', ',']).filter(|m| !m.is_empty()) {
        let m = m.to_ascii_uppercase();
        if !MECHANISMS.contains(&m.as_str()) {
            bail!(
                "unknown mechanism {m}; known: all, {}",
                MECHANISMS.join(", ")
            );
        }
        if !list.contains(&m) {
            list.push(m);
        }
    }
    if list.is_empty() {
        bail!("name at least one mechanism, or all");
    }
    Ok(Some(list))
}

fn parse_count(v: &str) -> anyhow::Result<usize> {
    if v.eq_ignore_ascii_case("unlimited") || v == "2147483647" {
        return Ok(usize::MAX);
    }
    let n: usize = v.parse().context("a number, or unlimited")?;
    if n == 0 {
        bail!("at least 1 (or unlimited)");
    }
    Ok(n)
}

fn format_count(n: usize) -> String {
    if n == usize::MAX {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

/// `60`, `60s`, `500ms`, `30m`, `1h`, or Exchange's `00:30:00`.
pub fn parse_duration(v: &str) -> anyhow::Result<Duration> {
    let v = v.trim();
    if v.contains(':') {
        let parts: Vec<u64> = v
            .split(':')
            .map(|p| p.parse::<u64>())
            .collect::<Result<_, _>>()
            .context("hh:mm:ss")?;
        let [h, m, s] = parts[..] else {
            bail!("hh:mm:ss")
        };
        return Ok(Duration::from_secs(h * 3600 + m * 60 + s));
    }
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, "s"),
    };
    let n: u64 = num.parse().context("a duration such as 60s, 10m or 1h")?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86_400),
        _ => bail!("a duration such as 60s, 10m, 1h or 7d"),
    })
}

pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    if s != 0 && s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s != 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s != 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Listener addresses, comma-separated (`0.0.0.0:995, [::]:995`; Exchange's
/// `{0.0.0.0:995,[::]:995}` too).
fn parse_bindings(v: &str) -> anyhow::Result<Vec<std::net::SocketAddr>> {
    let inner = v.trim().trim_start_matches('{').trim_end_matches('}');
    let mut out = Vec::new();
    for item in inner.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        out.push(
            item.parse()
                .with_context(|| format!("{item:?} is not an address:port"))?,
        );
    }
    if out.is_empty() {
        bail!("at least one address:port");
    }
    Ok(out)
}

/// The addresses a service's cleartext (`tls` false) or implicit-TLS listeners
/// should have, when set; `None`: as the server started.
pub fn bindings(o: &Overrides, service: Service, tls: bool) -> Option<Vec<std::net::SocketAddr>> {
    let key = if tls { "bindings-tls" } else { "bindings" };
    o.get(service, key).and_then(|v| parse_bindings(v).ok())
}

/// The listener names of a service: (cleartext, implicit TLS).
pub fn listener_names(service: Service) -> (&'static str, &'static str) {
    match service {
        Service::Pop => ("pop3", "pop3s"),
        Service::Imap => ("imap", "imaps"),
        Service::Submission => ("submission", "submissions"),
    }
}

/// `hourly`, `daily`, or a size such as `10MB` / `512KB`.
fn parse_rollover(v: &str) -> anyhow::Result<Rollover> {
    let lower = v.trim().to_ascii_lowercase();
    Ok(match lower.as_str() {
        "hourly" => Rollover::Hourly,
        "daily" => Rollover::Daily,
        size => {
            let (num, mult) = if let Some(n) = size.strip_suffix("mb") {
                (n, 1 << 20)
            } else if let Some(n) = size.strip_suffix("kb") {
                (n, 1 << 10)
            } else {
                bail!("hourly, daily, or a size such as 10MB");
            };
            let n: u64 = num
                .trim()
                .parse()
                .context("hourly, daily, or a size such as 10MB")?;
            if n == 0 {
                bail!("a size of at least 1KB");
            }
            Rollover::Size(n * mult)
        }
    })
}

fn format_rollover(r: Rollover) -> String {
    match r {
        Rollover::Hourly => "hourly".into(),
        Rollover::Daily => "daily".into(),
        Rollover::Size(n) if n % (1 << 20) == 0 => format!("{}MB", n >> 20),
        Rollover::Size(n) => format!("{}KB", n >> 10),
    }
}

/// The service's protocol log when `protocol-log` is on (default directory:
/// DIR/logs/<service>, rolled over daily).
pub fn protocol_log(o: &Overrides, service: Service) -> Option<Arc<ProtocolLog>> {
    let on = o
        .get(service, "protocol-log")
        .and_then(|v| parse_bool(v).ok())
        .unwrap_or(false);
    if !on {
        return None;
    }
    let dir = o
        .get(service, "protocol-log-directory")
        .map(PathBuf::from)
        .unwrap_or_else(|| o.1.join("logs").join(service.name()));
    let rollover = o
        .get(service, "protocol-log-rollover")
        .and_then(|v| parse_rollover(v).ok())
        .unwrap_or(Rollover::Daily);
    let connector = match service {
        Service::Pop => "POP3",
        Service::Imap => "IMAP4",
        Service::Submission => "SMTP-Submission",
    };
    Some(Arc::new(ProtocolLog::new(dir, connector, rollover)))
}

/// How users reach a service: Exchange's ExternalConnectionSettings /
/// InternalConnectionSettings entries, `host:port:ssl` (implicit TLS) or
/// `host:port:tls` (STARTTLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSetting {
    pub host: String,
    pub port: u16,
    /// true: implicit TLS ("ssl"); false: STARTTLS ("tls").
    pub implicit_tls: bool,
}

impl std::fmt::Display for ConnectionSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let enc = if self.implicit_tls { "ssl" } else { "tls" };
        write!(f, "{}:{}:{enc}", self.host, self.port)
    }
}

/// A list, comma-separated; Exchange's `{mail.example.org:995:SSL}` form too.
pub fn parse_connection_settings(v: &str) -> anyhow::Result<Vec<ConnectionSetting>> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let inner = v
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(v);
    let mut out = Vec::new();
    for item in inner.split(',') {
        let item = item.trim().trim_matches(['{', '}']);
        let mut parts = item.rsplitn(3, ':');
        let (Some(enc), Some(port), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
            bail!("{item:?}: expected host:port:ssl or host:port:tls");
        };
        let implicit_tls = match enc.to_ascii_lowercase().as_str() {
            "ssl" => true,
            "tls" => false,
            _ => bail!("{item:?}: the encryption is ssl (implicit TLS) or tls (STARTTLS)"),
        };
        let port: u16 = port
            .parse()
            .with_context(|| format!("{item:?}: bad port"))?;
        let host = host.trim_matches(['[', ']']).to_string();
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("{item:?}: bad host name");
        }
        out.push(ConnectionSetting {
            host,
            port,
            implicit_tls,
        });
    }
    Ok(out)
}

/// The external (or internal) connection settings of a service.
pub fn connection_settings(
    o: &Overrides,
    service: Service,
    external: bool,
) -> Vec<ConnectionSetting> {
    let key = if external {
        "external-connection-settings"
    } else {
        "internal-connection-settings"
    };
    o.get(service, key)
        .and_then(|v| parse_connection_settings(v).ok())
        .unwrap_or_default()
}

// ---- effective settings for each service ----

/// Applies the overrides shared by every service.
struct Common<'a> {
    o: &'a Overrides,
    service: Service,
}

impl Common<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.o.get(self.service, key)
    }
    fn login_type(&self, default: LoginType) -> LoginType {
        self.get("login-type")
            .and_then(LoginType::parse)
            .unwrap_or(default)
    }
    fn bool(&self, key: &str, default: bool) -> bool {
        self.get(key)
            .and_then(|v| parse_bool(v).ok())
            .unwrap_or(default)
    }
    fn count(&self, key: &str, default: usize) -> usize {
        self.get(key)
            .and_then(|v| parse_count(v).ok())
            .unwrap_or(default)
    }
    fn duration(&self, key: &str, default: Duration) -> Duration {
        self.get(key)
            .and_then(|v| parse_duration(v).ok())
            .unwrap_or(default)
    }
    fn text(&self, key: &str, default: &str) -> String {
        self.get(key).unwrap_or(default).to_string()
    }
    fn size(&self, key: &str, default: usize) -> usize {
        self.get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}

/// Applies the keys every service has to a service's config struct (their fields
/// share names; `$auth_timeout` is the field `auth-timeout` sets).
macro_rules! apply_common {
    ($cfg:ident, $o:expr, $service:expr, $auth_timeout:ident) => {{
        let c = Common {
            o: $o,
            service: $service,
        };
        $cfg.login_type = c.login_type($cfg.login_type);
        $cfg.allow_basic_auth = c.bool("allow-basic-auth", $cfg.allow_basic_auth);
        $cfg.banner = c.text("banner", &$cfg.banner);
        $cfg.max_connections = c.count("max-connections", $cfg.max_connections);
        $cfg.max_connections_per_ip =
            c.count("max-connections-per-ip", $cfg.max_connections_per_ip);
        $cfg.max_connections_per_user =
            c.count("max-connections-per-user", $cfg.max_connections_per_user);
        $cfg.preauth_timeout = c.duration("preauth-timeout", $cfg.preauth_timeout);
        $cfg.$auth_timeout = c.duration("auth-timeout", $cfg.$auth_timeout);
        $cfg.max_command_size = c.size("max-command-size", $cfg.max_command_size);
        $cfg.auth_failure_delay = c.duration("auth-failure-delay", $cfg.auth_failure_delay);
        if let Some(Ok(list)) = c.get("sasl-mechanisms").map(parse_mechanisms) {
            $cfg.sasl_mechanisms = list;
        }
        $cfg.protocol_log = protocol_log($o, $service);
        c
    }};
}

/// What POP3 and IMAP clients are shown of a message (their config structs share
/// the field names).
macro_rules! apply_presentation {
    ($cfg:ident, $c:ident) => {{
        if let Some(f) = $c
            .get("message-retrieval-format")
            .and_then(RetrievalFormat::parse)
        {
            $cfg.presentation.format = f;
        }
        $cfg.presentation.suppress_read_receipt = $c.bool(
            "suppress-read-receipt",
            $cfg.presentation.suppress_read_receipt,
        );
        $cfg.exact_rfc822_size = $c.bool("exact-rfc822-size", $cfg.exact_rfc822_size);
    }};
}

pub fn pop3(config: &Config, o: &Overrides) -> Pop3Config {
    let mut cfg = config.pop3();
    let c = apply_common!(cfg, o, Service::Pop, auth_timeout);
    match c.get("sort-order") {
        Some("descending") => cfg.sort_order = SortOrder::Descending,
        Some("ascending") => cfg.sort_order = SortOrder::Ascending,
        _ => {}
    }
    apply_presentation!(cfg, c);
    cfg
}

pub fn imap(config: &Config, o: &Overrides) -> casella_imap::ImapConfig {
    let mut cfg = config.imap();
    let c = apply_common!(cfg, o, Service::Imap, auth_timeout);
    apply_presentation!(cfg, c);
    cfg.show_hidden_folders = c.bool("show-hidden-folders", cfg.show_hidden_folders);
    cfg
}

pub fn submission(config: &Config, o: &Overrides) -> casella_smtp::SmtpConfig {
    let mut cfg = config.submission();
    apply_common!(cfg, o, Service::Submission, timeout);
    cfg
}

/// The effective value of every key of `service`, as `get` prints them.
pub fn effective(config: &Config, o: &Overrides, service: Service) -> Vec<(&'static str, String)> {
    /// The common keys' values, read from any service's config struct.
    macro_rules! common_values {
        ($cfg:expr, $auth_timeout:ident) => {{
            let cfg = $cfg;
            vec![
                ("login-type", login_type_name(cfg.login_type).to_string()),
                ("allow-basic-auth", cfg.allow_basic_auth.to_string()),
                ("banner", cfg.banner.clone()),
                ("max-connections", format_count(cfg.max_connections)),
                (
                    "max-connections-per-ip",
                    format_count(cfg.max_connections_per_ip),
                ),
                (
                    "max-connections-per-user",
                    format_count(cfg.max_connections_per_user),
                ),
                ("preauth-timeout", format_duration(cfg.preauth_timeout)),
                ("auth-timeout", format_duration(cfg.$auth_timeout)),
                ("max-command-size", cfg.max_command_size.to_string()),
                (
                    "auth-failure-delay",
                    format_duration(cfg.auth_failure_delay),
                ),
                (
                    "sasl-mechanisms",
                    cfg.sasl_mechanisms
                        .as_ref()
                        .map_or("all".to_string(), |m| m.join(" ")),
                ),
            ]
        }};
    }
    /// The presentation keys' values of a POP3 or IMAP config struct.
    macro_rules! presentation_values {
        ($cfg:expr) => {{
            let cfg = $cfg;
            [
                (
                    "message-retrieval-format",
                    cfg.presentation.format.name().to_string(),
                ),
                (
                    "suppress-read-receipt",
                    cfg.presentation.suppress_read_receipt.to_string(),
                ),
                ("exact-rfc822-size", cfg.exact_rfc822_size.to_string()),
            ]
        }};
    }
    let mut out = match service {
        Service::Pop => {
            let p = pop3(config, o);
            let sort = if p.sort_order == SortOrder::Descending {
                "descending"
            } else {
                "ascending"
            };
            let mut out = common_values!(&p, auth_timeout);
            out.push(("sort-order", sort.to_string()));
            out.extend(presentation_values!(&p));
            out
        }
        Service::Imap => {
            let i = imap(config, o);
            let mut out = common_values!(&i, auth_timeout);
            out.extend(presentation_values!(&i));
            out.push(("show-hidden-folders", i.show_hidden_folders.to_string()));
            out
        }
        Service::Submission => common_values!(&submission(config, o), timeout),
    };
    for (key, external) in [
        ("external-connection-settings", true),
        ("internal-connection-settings", false),
    ] {
        let list = connection_settings(o, service, external);
        let text = if list.is_empty() {
            "none".to_string()
        } else {
            list.iter()
                .map(ConnectionSetting::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push((key, text));
    }
    let log = protocol_log(o, service);
    out.push(("protocol-log", log.is_some().to_string()));
    let dir = o
        .get(service, "protocol-log-directory")
        .map(str::to_string)
        .unwrap_or_else(|| o.1.join("logs").join(service.name()).display().to_string());
    out.push(("protocol-log-directory", dir));
    let rollover = o
        .get(service, "protocol-log-rollover")
        .unwrap_or("daily")
        .to_string();
    out.push(("protocol-log-rollover", rollover));
    let (plain, tls) = listener_names(service);
    for (key, proto, is_tls) in [("bindings", plain, false), ("bindings-tls", tls, true)] {
        let text = match bindings(o, service, is_tls) {
            Some(list) => list
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            None => config
                .listen
                .get(proto)
                .map(|v| v.join(", "))
                .unwrap_or_else(|| "none".into()),
        };
        out.push((key, text));
    }
    out
}

/// A section of settings.toml beside the protocols' (which depend on
/// casella.toml too): its keys' effective values, and how one is set.
pub struct Section {
    pub name: &'static str,
    pub values: fn(&Overrides) -> Vec<(&'static str, String)>,
    pub set: fn(&mut Overrides, &str, &str) -> anyhow::Result<()>,
}

/// Login throttling and names; retention.
pub const SECTIONS: &[Section] = &[
    Section {
        name: crate::security::SECTION,
        values: crate::security::values,
        set: crate::security::set,
    },
    Section {
        name: crate::retention::SECTION,
        values: crate::retention::values,
        set: crate::retention::set,
    },
];

/// The section named `name` (any case), if it is one of [`SECTIONS`].
pub fn section(name: &str) -> Option<&'static Section> {
    SECTIONS.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

/// `casella settings <protocol|section> get [KEY]` / `set KEY=VALUE...`.
pub fn run(data: &Path, protocol: &str, action: &str, args: &[String]) -> anyhow::Result<()> {
    if let Some(section) = section(protocol) {
        let overrides = Overrides::load(data)?;
        let values = (section.values)(&overrides);
        return get_or_set(
            data,
            section.name,
            action,
            args,
            values,
            overrides,
            section.set,
        );
    }
    let service = Service::parse(protocol)?;
    let config = crate::config::load_or_create(data)?;
    let overrides = Overrides::load(data)?;
    let mut values = effective(&config, &overrides, service);
    values.extend(listening_now(data, service));
    get_or_set(
        data,
        service.name(),
        action,
        args,
        values,
        overrides,
        |o, k, v| o.set(service, k, v),
    )
}

/// `listening` and `listening-tls`: the addresses a server running over `data`
/// listens on now (its `--listen` arguments and `bindings` settings applied,
/// port 0 resolved), beside the configured `bindings`; read-only.
fn listening_now(data: &Path, service: Service) -> Vec<(&'static str, String)> {
    let now = crate::listeners::read_listening(data);
    let (plain, tls) = listener_names(service);
    [("listening", plain), ("listening-tls", tls)]
        .into_iter()
        .map(|(key, proto)| {
            let text = match &now {
                None => "not running".to_string(),
                Some(bound) => bound
                    .get(proto)
                    .filter(|v| !v.is_empty())
                    .map_or_else(|| "none".to_string(), |v| v.join(", ")),
            };
            (key, text)
        })
        .collect()
}

/// `get` prints `values` (all, or the given keys); `set` records every
/// KEY=VALUE with `set`, all or none, and saves.
fn get_or_set(
    data: &Path,
    name: &str,
    action: &str,
    args: &[String],
    values: Vec<(&'static str, String)>,
    mut overrides: Overrides,
    set: impl Fn(&mut Overrides, &str, &str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match action {
        "get" if args.is_empty() => {
            for (k, v) in &values {
                println!("{k} = {v}");
            }
        }
        "get" => {
            for key in args {
                let key = key.to_ascii_lowercase();
                let key = key
                    .strip_prefix("allow-basic-auth-")
                    .map(|_| "allow-basic-auth".to_string())
                    .unwrap_or(key);
                let Some((_, v)) = values.iter().find(|(k, _)| *k == key) else {
                    bail!("{name} has no setting {key:?}");
                };
                println!("{v}");
            }
        }
        "set" => {
            if args.is_empty() {
                bail!("give KEY=VALUE pairs");
            }
            for a in args {
                let Some((k, v)) = a.split_once('=') else {
                    bail!("{a}: expected KEY=VALUE");
                };
                set(&mut overrides, k, v)?;
            }
            overrides.save(data)?;
            for a in args {
                let k = a.split_once('=').map(|(k, _)| k).unwrap_or("");
                println!("{name} {k} set");
            }
        }
        other => bail!("unknown action {other:?} (get or set)"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_and_made_canonical() {
        let mut o = Overrides::default();
        o.set(Service::Pop, "login-type", "PlainTextLogin").unwrap();
        o.set(Service::Pop, "preauth-timeout", "00:01:30").unwrap();
        o.set(Service::Pop, "auth-timeout", "30m").unwrap();
        o.set(Service::Pop, "max-connections-per-ip", "unlimited")
            .unwrap();
        o.set(Service::Imap, "allow-basic-auth-imap", "$false")
            .unwrap();
        assert_eq!(o.get(Service::Pop, "login-type"), Some("plaintext-login"));
        assert_eq!(o.get(Service::Pop, "preauth-timeout"), Some("90s"));
        assert_eq!(o.get(Service::Pop, "auth-timeout"), Some("30m"));
        assert_eq!(o.get(Service::Imap, "allow-basic-auth"), Some("false"));
        assert!(o.set(Service::Pop, "login-type", "sometimes").is_err());
        assert!(o.set(Service::Pop, "bogus", "1").is_err());
        assert!(
            o.set(Service::Imap, "sort-order", "descending").is_err(),
            "POP only"
        );
        assert!(
            o.set(Service::Pop, "allow-basic-auth-imap", "false")
                .is_err()
        );
        assert!(o.set(Service::Pop, "banner", "two\nlines").is_err());
        assert!(o.set(Service::Pop, "max-connections", "0").is_err());
    }

    #[test]
    fn overrides_win_over_the_config_file() {
        let config: Config =
            toml::from_str("[pop3]\nmax-command-size = 600\nauth-timeout = 120\n").unwrap();
        let mut o = Overrides::default();
        assert_eq!(pop3(&config, &o).max_command_size, 600);
        o.set(Service::Pop, "max-command-size", "1024").unwrap();
        o.set(Service::Pop, "sort-order", "descending").unwrap();
        let p = pop3(&config, &o);
        assert_eq!(p.max_command_size, 1024);
        assert_eq!(p.auth_timeout, Duration::from_secs(120));
        assert_eq!(p.sort_order, SortOrder::Descending);
        let listed = effective(&config, &o, Service::Pop);
        assert!(listed.contains(&("auth-timeout", "2m".to_string())));
        assert!(listed.contains(&("banner", "The casella POP3 service is ready.".to_string())));
    }

    #[test]
    fn connection_settings_accept_exchange_syntax() {
        let list = parse_connection_settings("{mail.example.org:995:SSL}, pop.example.org:110:TLS")
            .unwrap();
        assert_eq!(list.len(), 2);
        assert!(list[0].implicit_tls && !list[1].implicit_tls);
        assert_eq!(list[0].to_string(), "mail.example.org:995:ssl");
        assert!(parse_connection_settings("mail:995:plain").is_err());
        assert!(parse_connection_settings("none").unwrap().is_empty());
        let mut o = Overrides::default();
        o.set(
            Service::Imap,
            "external-connection-settings",
            "{mail.example.org:993:SSL}",
        )
        .unwrap();
        assert_eq!(connection_settings(&o, Service::Imap, true)[0].port, 993);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_millis(0)), "0s");
        assert!(parse_duration("soon").is_err());
    }
}
