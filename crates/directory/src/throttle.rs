//! Login throttling shared by POP3, IMAP, submission and the web login: stop
//! brute force and password spray without locking out the people behind the
//! attacker's address.
//!
//! Failures are counted per source (an IPv4 address, an IPv6 /64), per account,
//! and per (source, account), in a sliding window. Each failure from a source
//! costs a growing delay; past a threshold the source, the account or the pair
//! is blocked for a while, and a blocked attempt is refused before any password
//! is checked. Spray is caught both ways: one source failing on many accounts
//! blocks the source; many sources failing on one account block that account —
//! for sources without a recent success on it. A source that logged in
//! successfully to an account recently keeps access to that account whatever
//! else is blocked, so one attacker behind an office's NAT address does not lock
//! the office out. Trusted networks are never throttled.
//!
//! Blocks are kept here and mirrored into the store (see `BlockStore`), so every
//! node sees them and `casella security blocks|unblock` can list and lift them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Thresholds and durations (`casella settings security …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Networks never throttled (address, prefix length).
    pub trusted: Vec<(IpAddr, u8)>,
    /// Failures from one source in the window before it is blocked.
    pub source_failures: u32,
    /// Distinct accounts one source may fail on in the window (spray).
    pub spray_accounts: u32,
    /// Failures on one account from sources without a recent success on it
    /// before the account is closed to such sources.
    pub account_failures: u32,
    /// Failures of one source on one account before that pair is blocked.
    pub pair_failures: u32,
    pub window: Duration,
    pub block: Duration,
    /// Delay after the first failure of a source; doubled for each further one.
    pub delay_step: Duration,
    pub max_delay: Duration,
    /// How long a successful login keeps its source trusted for that account.
    pub remember_success: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            trusted: Vec::new(),
            source_failures: 10,
            spray_accounts: 5,
            account_failures: 20,
            pair_failures: 5,
            window: Duration::from_secs(15 * 60),
            block: Duration::from_secs(15 * 60),
            delay_step: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            remember_success: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// What a block is on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlockKey {
    Source(IpAddr),
    Account(String),
    Pair(IpAddr, String),
}

impl BlockKey {
    /// The stored form: `source 192.0.2.1`, `account a@example.org`,
    /// `pair 192.0.2.1 a@example.org`.
    pub fn to_key(&self) -> String {
        match self {
            BlockKey::Source(ip) => format!("source {ip}"),
            BlockKey::Account(a) => format!("account {a}"),
            BlockKey::Pair(ip, a) => format!("pair {ip} {a}"),
        }
    }

    pub fn from_key(s: &str) -> Option<BlockKey> {
        let mut parts = s.split(' ');
        Some(match (parts.next()?, parts.next()?, parts.next()) {
            ("source", ip, None) => BlockKey::Source(ip.parse().ok()?),
            ("account", a, None) => BlockKey::Account(a.to_string()),
            ("pair", ip, Some(a)) => BlockKey::Pair(ip.parse().ok()?, a.to_string()),
            _ => return None,
        })
    }
}

/// One block as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub key: BlockKey,
    /// Seconds since the Unix epoch when it ends.
    pub until: i64,
    pub reason: String,
}

/// The source a client address counts as: IPv4 as it is, IPv6 by its /64
/// (one customer's allocation); IPv4-mapped IPv6 as IPv4.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

pub fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits.min(32)))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits.min(128)))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Parses `10.0.0.0/8`, `2001:db8::/32` or a single address.
pub fn parse_network(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match s.trim().split_once('/') {
        Some((a, b)) => (a.parse::<IpAddr>().ok()?, b.parse::<u8>().ok()?),
        None => {
            let a = s.trim().parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((addr, bits))
}

/// Failure times in the window.
#[derive(Default)]
struct Failures {
    times: VecDeque<Instant>,
}

impl Failures {
    fn add(&mut self, now: Instant, window: Duration) -> u32 {
        self.prune(now, window);
        self.times.push_back(now);
        self.times.len() as u32
    }
    fn prune(&mut self, now: Instant, window: Duration) {
        while self
            .times
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.times.pop_front();
        }
        // Bounded whatever the thresholds: only the recent count matters.
        while self.times.len() > 1024 {
            self.times.pop_front();
        }
    }
}

#[derive(Default)]
struct SourceState {
    failures: Failures,
    /// Accounts failed on in the window, with the last failure.
    accounts: HashMap<String, Instant>,
}

struct LocalBlock {
    until: Instant,
    until_unix: i64,
    reason: String,
    /// When it was made here (a block missing from the store after a grace
    /// period was lifted with `casella security unblock`).
    made: Instant,
}

#[derive(Default)]
struct State {
    sources: HashMap<IpAddr, SourceState>,
    accounts: HashMap<String, Failures>,
    pairs: HashMap<(IpAddr, String), Failures>,
    good: HashMap<(IpAddr, String), Instant>,
    blocks: HashMap<BlockKey, LocalBlock>,
}

/// Most entries kept per map; beyond it the oldest go (an attacker with many
/// addresses cannot make the server grow without bound).
const MAX_ENTRIES: usize = 200_000;

/// What `check` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused without checking the password, until this time (Unix seconds).
    Blocked {
        until: i64,
    },
}

/// What a failure led to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureOutcome {
    /// Wait this long before answering.
    pub delay: Duration,
    /// Blocks this failure created (to be written to the store).
    pub new_blocks: Vec<Block>,
}

pub struct Throttle {
    config: Mutex<ThrottleConfig>,
    state: Mutex<State>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(ThrottleConfig::default())
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn trim<K: Clone + Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>, age: impl Fn(&V) -> Instant) {
    if map.len() <= MAX_ENTRIES {
        return;
    }
    let mut ages: Vec<(Instant, K)> = map.iter().map(|(k, v)| (age(v), k.clone())).collect();
    ages.sort_by_key(|(t, _)| *t);
    for (_, k) in ages.into_iter().take(map.len() - MAX_ENTRIES * 9 / 10) {
        map.remove(&k);
    }
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Throttle {
        Throttle {
            config: Mutex::new(config),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> ThrottleConfig {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// New thresholds, effective at once.
    pub fn configure(&self, config: ThrottleConfig) {
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = config;
    }

    fn trusted(&self, config: &ThrottleConfig, ip: IpAddr) -> bool {
        let ip = source_of(ip);
        config
            .trusted
            .iter()
            .any(|(net, bits)| in_network(ip, *net, *bits))
    }

    /// Whether a login for `account` (normalised) from `ip` may be tried.
    pub fn check(&self, ip: IpAddr, account: &str) -> Verdict {
        let config = self.config();
        if self.trusted(&config, ip) {
            return Verdict::Allowed;
        }
        let source = source_of(ip);
        let now = Instant::now();
        let mut st = self.state();
        st.blocks.retain(|_, b| b.until > now);
        let pair = (source, account.to_string());
        let known = st
            .good
            .get(&pair)
            .is_some_and(|t| now.duration_since(*t) < config.remember_success);
        let mut keys = vec![BlockKey::Pair(source, account.to_string())];
        if !known {
            keys.push(BlockKey::Source(source));
            keys.push(BlockKey::Account(account.to_string()));
        }
        match keys
            .iter()
            .filter_map(|k| st.blocks.get(k))
            .map(|b| b.until_unix)
            .max()
        {
            Some(until) => Verdict::Blocked { until },
            None => Verdict::Allowed,
        }
    }

    /// Counts a failed login and says how long to wait before answering.
    pub fn failure(&self, ip: IpAddr, account: &str) -> FailureOutcome {
        let config = self.config();
        if self.trusted(&config, ip) {
            return FailureOutcome::default();
        }
        let source = source_of(ip);
        let now = Instant::now();
        let window = config.window;
        let mut st = self.state();
        let mut new_blocks = Vec::new();
        let mut block = |st: &mut State, key: BlockKey, reason: String| {
            if st.blocks.contains_key(&key) {
                return;
            }
            let until_unix = unix_now() + config.block.as_secs() as i64;
            tracing::warn!(
                "login block: {} for {}s: {reason}",
                key.to_key(),
                config.block.as_secs()
            );
            new_blocks.push(Block {
                key: key.clone(),
                until: until_unix,
                reason: reason.clone(),
            });
            st.blocks.insert(
                key,
                LocalBlock {
                    until: now + config.block,
                    until_unix,
                    reason,
                    made: now,
                },
            );
        };

        let pair = (source, account.to_string());
        let known = st
            .good
            .get(&pair)
            .is_some_and(|t| now.duration_since(*t) < config.remember_success);
        let pair_count = st.pairs.entry(pair.clone()).or_default().add(now, window);
        // A known source (say, a phone with an old password) gets more room on
        // its own account before the pair is blocked.
        let pair_limit = if known {
            config.pair_failures.saturating_mul(4)
        } else {
            config.pair_failures
        };
        if pair_count >= pair_limit {
            block(
                &mut st,
                BlockKey::Pair(source, account.to_string()),
                format!("{pair_count} failed logins from {source} on {account}"),
            );
        }
        // A known source failing on its own account (a mistyped password) only
        // counts against that pair.
        let source_count = if known {
            pair_count
        } else {
            let s = st.sources.entry(source).or_default();
            let n = s.failures.add(now, window);
            s.accounts.retain(|_, t| now.duration_since(*t) <= window);
            s.accounts.insert(account.to_string(), now);
            let distinct = s.accounts.len() as u32;
            if n >= config.source_failures {
                block(
                    &mut st,
                    BlockKey::Source(source),
                    format!("{n} failed logins from {source}"),
                );
            } else if distinct >= config.spray_accounts {
                block(
                    &mut st,
                    BlockKey::Source(source),
                    format!("password spray: {source} failed on {distinct} accounts"),
                );
            }
            let a = st
                .accounts
                .entry(account.to_string())
                .or_default()
                .add(now, window);
            if a >= config.account_failures {
                block(
                    &mut st,
                    BlockKey::Account(account.to_string()),
                    format!("{a} failed logins on {account} from unknown sources"),
                );
            }
            n
        };
        trim(&mut st.sources, |s| {
            s.failures.times.back().copied().unwrap_or(now)
        });
        trim(&mut st.pairs, |f| f.times.back().copied().unwrap_or(now));
        trim(&mut st.accounts, |f| f.times.back().copied().unwrap_or(now));
        let doublings = source_count.saturating_sub(1).min(16);
        let delay = config
            .delay_step
            .saturating_mul(1u32 << doublings)
            .min(config.max_delay);
        FailureOutcome { delay, new_blocks }
    }

    /// Remembers a successful login: this source keeps access to this account.
    pub fn success(&self, ip: IpAddr, account: &str) {
        let source = source_of(ip);
        let now = Instant::now();
        let mut st = self.state();
        st.pairs.remove(&(source, account.to_string()));
        st.good.insert((source, account.to_string()), now);
        trim(&mut st.good, |t| *t);
    }

    /// The current blocks, soonest end first.
    pub fn blocks(&self) -> Vec<Block> {
        let now = Instant::now();
        let st = self.state();
        let mut v: Vec<Block> = st
            .blocks
            .iter()
            .filter(|(_, b)| b.until > now)
            .map(|(k, b)| Block {
                key: k.clone(),
                until: b.until_unix,
                reason: b.reason.clone(),
            })
            .collect();
        v.sort_by_key(|b| b.until);
        v
    }

    /// Makes the blocks match the store's list (shared by every node): blocks
    /// made elsewhere are added; blocks lifted with `casella security unblock`
    /// are removed with their failure counts. A block made here in the last few
    /// seconds stays, as its store write may still be under way.
    pub fn sync(&self, stored: &[Block]) {
        let now = Instant::now();
        let now_unix = unix_now();
        let mut st = self.state();
        let keep: HashSet<&BlockKey> = stored.iter().map(|b| &b.key).collect();
        let lifted: Vec<BlockKey> = st
            .blocks
            .iter()
            .filter(|(k, b)| {
                !keep.contains(k) && now.duration_since(b.made) > Duration::from_secs(5)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in lifted {
            st.blocks.remove(&k);
            match &k {
                BlockKey::Source(ip) => {
                    st.sources.remove(ip);
                }
                BlockKey::Account(a) => {
                    st.accounts.remove(a);
                }
                BlockKey::Pair(ip, a) => {
                    st.pairs.remove(&(*ip, a.clone()));
                }
            }
        }
        for b in stored {
            if b.until > now_unix && !st.blocks.contains_key(&b.key) {
                let left = Duration::from_secs((b.until - now_unix) as u64);
                st.blocks.insert(
                    b.key.clone(),
                    LocalBlock {
                        until: now + left,
                        until_unix: b.until,
                        reason: b.reason.clone(),
                        made: now - Duration::from_secs(3600),
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn quick() -> ThrottleConfig {
        ThrottleConfig {
            delay_step: Duration::from_millis(1),
            ..ThrottleConfig::default()
        }
    }

    #[test]
    fn brute_force_blocks_the_source_but_not_its_known_users() {
        let t = Throttle::new(quick());
        let attacker = ip("198.51.100.7");
        t.success(attacker, "boss@example.org");
        let mut stopped_at = None;
        for i in 1..=2000 {
            if let Verdict::Blocked { .. } = t.check(attacker, "alice@example.org") {
                stopped_at = Some(i);
                break;
            }
            t.failure(attacker, "alice@example.org");
        }
        let n = stopped_at.expect("stopped");
        assert!(n <= 20, "stopped after {n} attempts");
        // The same address, an account it logged in to before: still allowed.
        assert_eq!(t.check(attacker, "boss@example.org"), Verdict::Allowed);
        // Another address, the attacked account: allowed (only the pair and the
        // source are blocked).
        assert_eq!(
            t.check(ip("203.0.113.9"), "alice@example.org"),
            Verdict::Allowed
        );
    }

    #[test]
    fn spray_from_one_source_and_on_one_account() {
        let t = Throttle::new(quick());
        let sprayer = ip("2001:db8:1:2:aaaa::1");
        let mut blocked = false;
        for i in 0..500 {
            let account = format!("user{i}@example.org");
            if t.check(sprayer, &account) != Verdict::Allowed {
                blocked = true;
                assert!(i <= 5, "spray stopped after {i} accounts");
                break;
            }
            t.failure(sprayer, &account);
        }
        assert!(blocked);
        // The whole /64 is the same source.
        assert_ne!(
            t.check(ip("2001:db8:1:2:bbbb::9"), "x@example.org"),
            Verdict::Allowed
        );

        // Many sources, one account: closed to unknown sources only.
        let t = Throttle::new(quick());
        t.success(ip("192.0.2.50"), "ceo@example.org");
        for i in 0..20 {
            let from = ip(&format!("10.9.{i}.1"));
            t.failure(from, "ceo@example.org");
        }
        assert_ne!(
            t.check(ip("10.9.99.1"), "ceo@example.org"),
            Verdict::Allowed
        );
        assert_eq!(
            t.check(ip("192.0.2.50"), "ceo@example.org"),
            Verdict::Allowed
        );
    }

    #[test]
    fn delays_grow_and_trusted_networks_are_exempt() {
        let t = Throttle::new(ThrottleConfig {
            trusted: vec![parse_network("10.0.0.0/8").unwrap()],
            ..ThrottleConfig::default()
        });
        let a = t.failure(ip("192.0.2.1"), "a@example.org").delay;
        let b = t.failure(ip("192.0.2.1"), "a@example.org").delay;
        assert!(b > a, "{a:?} {b:?}");
        for _ in 0..100 {
            assert_eq!(
                t.failure(ip("10.1.1.1"), "a@example.org").delay,
                Duration::ZERO
            );
        }
        assert_eq!(t.check(ip("10.1.1.1"), "a@example.org"), Verdict::Allowed);
    }

    #[test]
    fn blocks_sync_with_the_store() {
        let t = Throttle::new(quick());
        let made = Block {
            key: BlockKey::Source(ip("192.0.2.1")),
            until: unix_now() + 60,
            reason: "elsewhere".into(),
        };
        t.sync(std::slice::from_ref(&made));
        assert_ne!(t.check(ip("192.0.2.1"), "a@example.org"), Verdict::Allowed);
        assert_eq!(t.blocks().len(), 1);
        t.sync(&[]);
        assert_eq!(t.check(ip("192.0.2.1"), "a@example.org"), Verdict::Allowed);
        for k in [
            BlockKey::Source(ip("::1")),
            BlockKey::Account("a@b.c".into()),
            BlockKey::Pair(ip("192.0.2.1"), "a@b.c".into()),
        ] {
            assert_eq!(BlockKey::from_key(&k.to_key()), Some(k));
        }
    }
}
