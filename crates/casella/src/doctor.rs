//! `casella doctor`: checks the setup and says what to fix — the
//! configuration, the data directory (writable, free space), the TLS
//! certificate (readable, in force, naming the host name), the listening
//! ports — and prints the DNS records to publish for each local domain.
//! Exits 1 when a check fails (warnings alone exit 0).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{self, CONFIG_FILE, Config};
use crate::{serve, settings};

/// Free space below which the data directory fails the check, and below
/// which it warns.
const FAIL_FREE_BYTES: u64 = 100 << 20;
const WARN_FREE_BYTES: u64 = 1 << 30;
/// A certificate ending within this many days is a warning.
const WARN_EXPIRY_DAYS: i64 = 14;

#[derive(Default)]
struct Report {
    failures: usize,
    warnings: usize,
}

impl Report {
    fn ok(&mut self, what: &str, detail: impl AsRef<str>) {
        println!("ok    {what}: {}", detail.as_ref());
    }
    fn warn(&mut self, what: &str, detail: impl AsRef<str>) {
        self.warnings += 1;
        println!("WARN  {what}: {}", detail.as_ref());
    }
    fn fail(&mut self, what: &str, detail: impl AsRef<str>) {
        self.failures += 1;
        println!("FAIL  {what}: {}", detail.as_ref());
    }
}

pub async fn run(data: &Path) -> anyhow::Result<ExitCode> {
    let mut r = Report::default();
    let config = check_config(&mut r, data);
    check_data_dir(&mut r, data);
    if let Some(config) = &config {
        check_certificate(&mut r, data, config);
        check_ports(&mut r, config);
        dns_records(&mut r, data, config).await;
    }
    println!(
        "\n{} failed, {} warning{}",
        r.failures,
        r.warnings,
        if r.warnings == 1 { "" } else { "s" }
    );
    Ok(if r.failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The configuration file (unknown keys and bad values are errors of the
/// parser, which names them and their line) and the live settings.
fn check_config(r: &mut Report, data: &Path) -> Option<Config> {
    let path = data.join(CONFIG_FILE);
    let config = if !path.exists() {
        r.warn(
            "configuration",
            format!(
                "no {} yet: the defaults apply (serve writes a commented one)",
                path.display()
            ),
        );
        Config::default()
    } else {
        match config::load_or_create(data) {
            Ok(c) => {
                r.ok("configuration", format!("{} is valid", path.display()));
                c
            }
            Err(e) => {
                r.fail("configuration", format!("{e:#}"));
                return None;
            }
        }
    };
    match settings::Overrides::load(data) {
        Ok(_) => r.ok("live settings", "settings.toml is valid (or absent)"),
        Err(e) => r.fail("live settings", format!("{e:#}")),
    }
    if config.hostname.is_empty() {
        r.fail("host name", "hostname is empty in casella.toml");
    } else if !config.hostname.contains('.') {
        r.warn(
            "host name",
            format!(
                "{:?} is not a fully qualified name; set hostname in casella.toml to the \
                 name mail programs connect to",
                config.hostname
            ),
        );
    } else {
        r.ok("host name", &config.hostname);
    }
    Some(config)
}

fn check_data_dir(r: &mut Report, data: &Path) {
    if !data.exists() {
        r.warn(
            "data directory",
            format!("{} does not exist yet", data.display()),
        );
        return;
    }
    match serve::check_writable(data) {
        Ok(()) => r.ok("data directory", format!("{} is writable", data.display())),
        Err(e) => r.fail("data directory", format!("{e:#}")),
    }
    match free_space(data) {
        Some((free, total)) => {
            let text = format!("{} free of {}", human_bytes(free), human_bytes(total));
            if free < FAIL_FREE_BYTES {
                r.fail("free space", format!("{text}: mail cannot be stored"));
            } else if free < WARN_FREE_BYTES || free.saturating_mul(20) < total {
                r.warn("free space", format!("{text}: little room left"));
            } else {
                r.ok("free space", text);
            }
        }
        None => r.warn("free space", "could not be read"),
    }
}

/// Free and total bytes of the file system holding `path`.
fn free_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let unit = st.f_frsize as u64;
    Some((st.f_bavail as u64 * unit, st.f_blocks as u64 * unit))
}

fn human_bytes(n: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    if n as f64 >= GIB {
        format!("{:.1} GiB", n as f64 / GIB)
    } else {
        format!("{:.0} MiB", n as f64 / MIB)
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Whether the certificate name `pattern` (possibly `*.example.org`) covers
/// `host` (RFC 6125 §6.4.3: the wildcard stands for one whole label).
fn name_covers(pattern: &str, host: &str) -> bool {
    let (pattern, host) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    match pattern.strip_prefix("*.") {
        Some(rest) => host
            .split_once('.')
            .is_some_and(|(label, tail)| !label.is_empty() && tail == rest),
        None => pattern == host,
    }
}

fn check_certificate(r: &mut Report, data: &Path, config: &Config) {
    let (cert, key, own) = match (&config.tls.cert, &config.tls.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), false),
        _ => (data.join("tls/cert.pem"), data.join("tls/key.pem"), true),
    };
    if own && !cert.exists() {
        r.warn(
            "certificate",
            "none yet: serve makes a self-signed one at start (mail programs will ask to \
             accept it); set [tls] cert and key for a real one",
        );
        return;
    }
    if let Err(e) = std::fs::read(&key) {
        r.fail(
            "certificate",
            format!("reading the key {}: {e}", key.display()),
        );
    }
    let pem = match std::fs::read(&cert) {
        Ok(p) => p,
        Err(e) => {
            r.fail("certificate", format!("reading {}: {e}", cert.display()));
            return;
        }
    };
    let parsed = x509_parser::pem::parse_x509_pem(&pem)
        .map_err(|e| e.to_string())
        .and_then(|(_, pem)| {
            let der = pem.contents;
            x509_parser::parse_x509_certificate(&der)
                .map_err(|e| e.to_string())
                .map(|(_, c)| CertFacts::of(&c))
        });
    let facts = match parsed {
        Ok(f) => f,
        Err(e) => {
            r.fail(
                "certificate",
                format!("{} holds no certificate: {e}", cert.display()),
            );
            return;
        }
    };
    certificate_findings(r, &cert, &facts, &config.hostname, now_unix());
}

/// What the checks need of a certificate.
struct CertFacts {
    not_before: i64,
    not_after: i64,
    names: Vec<String>,
    self_signed: bool,
}

impl CertFacts {
    fn of(c: &x509_parser::certificate::X509Certificate<'_>) -> CertFacts {
        let mut names: Vec<String> = c
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if names.is_empty() {
            names.extend(
                c.subject()
                    .iter_common_name()
                    .filter_map(|cn| cn.as_str().ok().map(str::to_string)),
            );
        }
        CertFacts {
            not_before: c.validity().not_before.timestamp(),
            not_after: c.validity().not_after.timestamp(),
            names,
            self_signed: c.subject() == c.issuer(),
        }
    }
}

fn certificate_findings(r: &mut Report, path: &Path, c: &CertFacts, hostname: &str, now: i64) {
    let day = |t: i64| {
        let (y, m, d) = casella_mime::civil_from_days(t.div_euclid(86_400));
        format!("{y:04}-{m:02}-{d:02}")
    };
    let what = "certificate";
    if c.not_after <= now {
        r.fail(
            what,
            format!(
                "{} expired on {}: mail programs refuse it",
                path.display(),
                day(c.not_after)
            ),
        );
    } else if c.not_before > now {
        r.fail(
            what,
            format!(
                "{} is not valid before {}",
                path.display(),
                day(c.not_before)
            ),
        );
    } else if c.not_after - now < WARN_EXPIRY_DAYS * 86_400 {
        r.warn(
            what,
            format!("{} ends on {}", path.display(), day(c.not_after)),
        );
    } else {
        r.ok(
            what,
            format!("{} valid until {}", path.display(), day(c.not_after)),
        );
    }
    if !c.names.iter().any(|n| name_covers(n, hostname)) {
        r.warn(
            "certificate names",
            format!(
                "the certificate names {} but not the host name {hostname}",
                c.names.join(", ")
            ),
        );
    } else {
        r.ok("certificate names", format!("covers {hostname}"));
    }
    if c.self_signed {
        r.warn(
            "certificate issuer",
            "self-signed: mail programs will ask their users to accept it",
        );
    }
}

fn check_ports(r: &mut Report, config: &Config) {
    for (proto, addrs) in &config.listen {
        for addr in addrs {
            let what = format!("port {proto} {addr}");
            let Ok(spec) = serve::parse_listen(&format!("{proto}={addr}")) else {
                r.fail(&what, "not a protocol and address casella knows");
                continue;
            };
            match TcpListener::bind(spec.addr) {
                Ok(_) => r.ok(&what, "free"),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => r.warn(
                    &what,
                    "in use (by a running casella, or another server to stop first)",
                ),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => r.fail(
                    &what,
                    "ports below 1024 need root or CAP_NET_BIND_SERVICE (the systemd unit \
                     gives it)",
                ),
                Err(e) => r.fail(&what, e.to_string()),
            }
        }
    }
}

/// The records each local domain needs, in zone-file form.
fn records_for(domain: &str, host: &str, dkim: &[(String, String)]) -> Vec<String> {
    let mut out = vec![
        format!("{domain}. MX 10 {host}."),
        format!("{domain}. TXT \"v=spf1 mx -all\""),
        format!("_dmarc.{domain}. TXT \"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}\""),
    ];
    for (selector, record) in dkim {
        out.push(format!("{selector}._domainkey.{domain}. TXT \"{record}\""));
    }
    // RFC 6186 §3 (and RFC 8314 §5.1 for implicit TLS), priority 0 first.
    for (service, port) in [
        ("_submissions._tcp", 465),
        ("_submission._tcp", 587),
        ("_imaps._tcp", 993),
        ("_imap._tcp", 143),
        ("_pop3s._tcp", 995),
        ("_pop3._tcp", 110),
    ] {
        out.push(format!("{service}.{domain}. SRV 0 1 {port} {host}."));
    }
    out.push(format!("autoconfig.{domain}. CNAME {host}."));
    out.push(format!("autodiscover.{domain}. CNAME {host}."));
    out.push(format!("_autodiscover._tcp.{domain}. SRV 0 0 443 {host}."));
    out
}

async fn dns_records(r: &mut Report, data: &Path, config: &Config) {
    let store = match config::open_store(data).await {
        Ok(s) => s,
        Err(e) => {
            r.fail("store", format!("{e:#}"));
            return;
        }
    };
    let accounts = match store.list_accounts().await {
        Ok(a) => a,
        Err(e) => {
            r.fail("store", e.to_string());
            return;
        }
    };
    r.ok("store", format!("{} accounts", accounts.len()));
    let mut domains: BTreeSet<String> = accounts.iter().map(|a| a.domain().to_string()).collect();
    for a in &accounts {
        if let Ok(aliases) = store.aliases(a.id).await {
            domains.extend(
                aliases
                    .iter()
                    .filter_map(|x| x.rsplit_once('@').map(|(_, d)| d.to_string())),
            );
        }
    }
    if domains.is_empty() {
        r.warn("DNS", "no local domains yet (add an account)");
        return;
    }
    println!("\nDNS records to publish (compare with `dig` where they are served):");
    for domain in &domains {
        let dkim: Vec<(String, String)> = config
            .relay
            .dkim
            .iter()
            .filter(|k| k.domain.eq_ignore_ascii_case(domain))
            .filter_map(|k| match casella_relay::dkim::dns_record(&k.key_file) {
                Ok(rec) => Some((k.selector.clone(), rec)),
                Err(e) => {
                    r.fail(
                        "DKIM key",
                        format!("{}: {e}", PathBuf::from(&k.key_file).display()),
                    );
                    None
                }
            })
            .collect();
        println!();
        for line in records_for(domain, &config.hostname, &dkim) {
            println!("  {line}");
        }
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_stand_for_one_label() {
        assert!(name_covers("mail.example.org", "MAIL.example.org"));
        assert!(name_covers("*.example.org", "mail.example.org"));
        assert!(!name_covers("*.example.org", "example.org"));
        assert!(!name_covers("*.example.org", "a.mail.example.org"));
        assert!(!name_covers("other.example.org", "mail.example.org"));
    }

    #[test]
    fn certificates_are_judged_by_dates_names_and_issuer() {
        let now = 1_800_000_000;
        let facts = |not_after: i64, names: &[&str]| CertFacts {
            not_before: now - 86_400,
            not_after,
            names: names.iter().map(|s| s.to_string()).collect(),
            self_signed: false,
        };
        let mut r = Report::default();
        certificate_findings(
            &mut r,
            Path::new("c.pem"),
            &facts(now - 1, &["mail.test"]),
            "mail.test",
            now,
        );
        assert_eq!((r.failures, r.warnings), (1, 0), "expired");
        let mut r = Report::default();
        certificate_findings(
            &mut r,
            Path::new("c.pem"),
            &facts(now + 86_400, &["mail.test"]),
            "mail.test",
            now,
        );
        assert_eq!((r.failures, r.warnings), (0, 1), "ending soon");
        let mut r = Report::default();
        certificate_findings(
            &mut r,
            Path::new("c.pem"),
            &facts(now + 90 * 86_400, &["other.test"]),
            "mail.test",
            now,
        );
        assert_eq!((r.failures, r.warnings), (0, 1), "another name");
        let mut r = Report::default();
        certificate_findings(
            &mut r,
            Path::new("c.pem"),
            &facts(now + 90 * 86_400, &["*.test"]),
            "mail.test",
            now,
        );
        assert_eq!((r.failures, r.warnings), (0, 0), "all good");
    }

    #[test]
    fn each_domain_gets_mx_spf_dmarc_srv_and_autoconfig_records() {
        let dkim = vec![("s1".to_string(), "v=DKIM1; k=ed25519; p=AAAA".to_string())];
        let recs = records_for("example.org", "mail.example.org", &dkim);
        for want in [
            "example.org. MX 10 mail.example.org.",
            "example.org. TXT \"v=spf1 mx -all\"",
            "s1._domainkey.example.org. TXT \"v=DKIM1; k=ed25519; p=AAAA\"",
            "_imaps._tcp.example.org. SRV 0 1 993 mail.example.org.",
            "_submissions._tcp.example.org. SRV 0 1 465 mail.example.org.",
            "autoconfig.example.org. CNAME mail.example.org.",
        ] {
            assert!(recs.iter().any(|r| r == want), "{want} in {recs:#?}");
        }
        assert!(
            recs.iter()
                .any(|r| r.starts_with("_dmarc.example.org. TXT"))
        );
    }
}
