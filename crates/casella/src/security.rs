//! Login settings (`casella settings security get|set`, live): throttling,
//! remembered passwords, the default domain of login names; and `casella
//! security blocks|unblock`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use casella_directory::throttle::{self, BlockKey, ThrottleConfig};

use crate::settings::{Overrides, format_duration, parse_duration};

pub const SECTION: &str = "security";

/// The keys, in the order `get` lists them.
pub const KEYS: &[&str] = &[
    "trusted-networks",
    "failures-per-source",
    "spray-accounts",
    "failures-per-account",
    "failures-per-pair",
    "window",
    "block-duration",
    "failure-delay",
    "max-failure-delay",
    "remember-success",
    "max-in-flight",
    "password-cache",
    "default-domain",
];

fn count(v: &str) -> anyhow::Result<u32> {
    let n: u32 = v.trim().parse().context("a number")?;
    if n == 0 {
        bail!("at least 1");
    }
    Ok(n)
}

fn networks(v: &str) -> anyhow::Result<Vec<(std::net::IpAddr, u8)>> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    v.split(',')
        .map(|n| {
            throttle::parse_network(n)
                .with_context(|| format!("{n:?} is not a network such as 10.0.0.0/8"))
        })
        .collect()
}

/// The security section: login throttling, and how long a verified password
/// is remembered (`casella_directory::verified`).
pub struct SecurityConfig {
    pub throttle: ThrottleConfig,
    pub password_cache: Duration,
    /// The domain of login names typed without one (`alice` logs in as
    /// `alice@default-domain`, on every protocol and the web).
    pub default_domain: Option<String>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            throttle: ThrottleConfig::default(),
            password_cache: casella_directory::verified::DEFAULT_TTL,
            default_domain: None,
        }
    }
}

/// The effective security settings.
pub fn config(o: &Overrides) -> SecurityConfig {
    let mut c = SecurityConfig::default();
    let Some(map) = o.0.get(SECTION) else {
        return c;
    };
    for (k, v) in map {
        let _ = apply(&mut c, k, v);
    }
    c
}

fn apply(s: &mut SecurityConfig, key: &str, value: &str) -> anyhow::Result<()> {
    let c = &mut s.throttle;
    match key {
        "password-cache" => s.password_cache = parse_duration(value)?,
        "default-domain" => s.default_domain = domain(value)?,
        "trusted-networks" => c.trusted = networks(value)?,
        "failures-per-source" => c.source_failures = count(value)?,
        "spray-accounts" => c.spray_accounts = count(value)?,
        "failures-per-account" => c.account_failures = count(value)?,
        "failures-per-pair" => c.pair_failures = count(value)?,
        "window" => c.window = at_least_a_second(value)?,
        "block-duration" => c.block = at_least_a_second(value)?,
        "failure-delay" => c.delay_step = parse_duration(value)?,
        "max-failure-delay" => c.max_delay = parse_duration(value)?,
        "remember-success" => c.remember_success = parse_duration(value)?,
        "max-in-flight" => c.max_in_flight = count(value)?,
        other => bail!(
            "security has no setting {other:?}; known: {}",
            KEYS.join(", ")
        ),
    }
    Ok(())
}

/// A domain, or `none` (or nothing) for none.
fn domain(v: &str) -> anyhow::Result<Option<String>> {
    let d = v.trim().trim_start_matches('@').to_ascii_lowercase();
    if d.is_empty() || d == "none" {
        return Ok(None);
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if d.len() > 253 || !(d.contains('.') || d == "localhost") || !d.split('.').all(label_ok) {
        bail!("{v:?} is not a domain such as example.org (or none)");
    }
    Ok(Some(d))
}

fn at_least_a_second(v: &str) -> anyhow::Result<Duration> {
    let d = parse_duration(v)?;
    if d < Duration::from_secs(1) {
        bail!("at least 1s");
    }
    Ok(d)
}

/// Every key with its effective value.
pub fn values(o: &Overrides) -> Vec<(&'static str, String)> {
    let settings = config(o);
    let c = &settings.throttle;
    let nets = if c.trusted.is_empty() {
        "none".to_string()
    } else {
        c.trusted
            .iter()
            .map(|(n, b)| format!("{n}/{b}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        ("trusted-networks", nets),
        ("failures-per-source", c.source_failures.to_string()),
        ("spray-accounts", c.spray_accounts.to_string()),
        ("failures-per-account", c.account_failures.to_string()),
        ("failures-per-pair", c.pair_failures.to_string()),
        ("window", format_duration(c.window)),
        ("block-duration", format_duration(c.block)),
        ("failure-delay", format_duration(c.delay_step)),
        ("max-failure-delay", format_duration(c.max_delay)),
        ("remember-success", format_duration(c.remember_success)),
        ("max-in-flight", c.max_in_flight.to_string()),
        ("password-cache", format_duration(settings.password_cache)),
        (
            "default-domain",
            settings
                .default_domain
                .clone()
                .unwrap_or_else(|| "none".to_string()),
        ),
    ]
}

/// Validates and records `key=value`.
pub fn set(o: &mut Overrides, key: &str, value: &str) -> anyhow::Result<()> {
    let key = key.trim().to_ascii_lowercase();
    let mut check = SecurityConfig::default();
    apply(&mut check, &key, value).with_context(|| format!("{key}={value}"))?;
    o.0.entry(SECTION.to_string())
        .or_default()
        .insert(key, value.trim().to_string());
    Ok(())
}

/// `casella security blocks` / `casella security unblock ADDRESS|ACCOUNT`.
pub async fn run(data: &Path, command: crate::cli::SecurityCommand) -> anyhow::Result<()> {
    let store = crate::config::open_store(data).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let blocks = store.blocks(now).await?;
    match command {
        crate::cli::SecurityCommand::Blocks => {
            if blocks.is_empty() {
                println!("no blocks");
            }
            for b in blocks {
                println!("{}\t{}s left\t{}", b.key, b.until - now, b.reason);
            }
        }
        crate::cli::SecurityCommand::Unblock { what } => {
            let what = what.trim().to_ascii_lowercase();
            let ip = what
                .parse::<std::net::IpAddr>()
                .ok()
                .map(throttle::source_of);
            let mut lifted = 0;
            for b in blocks {
                let hit = match BlockKey::from_key(&b.key) {
                    Some(BlockKey::Source(s)) => Some(s) == ip,
                    Some(BlockKey::Account(a)) => a == what,
                    Some(BlockKey::Pair(s, a)) => Some(s) == ip || a == what,
                    None => b.key == what,
                };
                if hit && store.delete_block(&b.key).await? {
                    println!("unblocked {}", b.key);
                    lifted += 1;
                }
            }
            if lifted == 0 {
                bail!("nothing blocks {what}");
            }
            println!("running servers apply this within a second or two");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::domain;

    #[test]
    fn the_default_domain_is_a_domain_or_none() {
        assert_eq!(
            domain(" Example.ORG ").unwrap().as_deref(),
            Some("example.org")
        );
        assert_eq!(
            domain("@mail.example.org").unwrap().as_deref(),
            Some("mail.example.org")
        );
        assert_eq!(domain("none").unwrap(), None);
        assert_eq!(domain("").unwrap(), None);
        assert_eq!(domain("localhost").unwrap().as_deref(), Some("localhost"));
        for bad in ["example", "a b.org", "bob@example.org", "-x.org", "x..org"] {
            assert!(domain(bad).is_err(), "{bad}");
        }
    }
}
