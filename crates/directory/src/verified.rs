//! A short-lived memory of passwords that verified, so a client reconnecting
//! with the same password does not pay argon2 again.
//!
//! Mail clients open connections all day long (Thunderbird keeps several per
//! account, phones reconnect on every wake-up), and argon2id costs tens of
//! milliseconds of CPU and 19 MiB of memory per check by design. Dovecot's
//! `auth_cache` keeps passdb answers but verifies the password against the
//! cached hash again; this cache keeps only the proof that a password matched:
//! HMAC-SHA-256 under a key drawn at start and never written anywhere, over the
//! account's stored hash and the password. So:
//! - nothing in it helps an offline attack (the key is in memory only, and
//!   whoever reads this process's memory reads passwords on the wire anyway);
//! - a password change (here or on another node sharing the store) changes the
//!   stored hash and so invalidates the entry; the account itself is read from
//!   the store at every login, so a disabled or removed account is refused;
//! - only successful checks are remembered: a wrong password always costs a full
//!   argon2 verification, and throttling runs before the cache is consulted;
//! - entries expire after the configured time (`casella settings security set
//!   password-cache=…`, 0 turns the cache off).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::hmac;
use ring::rand::SystemRandom;

use casella_store::AccountId;

use crate::Secret;

/// Accounts remembered at most; beyond it, expired entries are dropped and, if
/// none expired, nothing new is remembered until some do.
const MAX_ENTRIES: usize = 100_000;

/// How long a verified password is remembered unless configured otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);

struct Entry {
    tag: hmac::Tag,
    expires: Instant,
}

pub struct VerifiedPasswords {
    key: Option<hmac::Key>,
    ttl: Mutex<Duration>,
    entries: Mutex<HashMap<AccountId, Entry>>,
}

impl Default for VerifiedPasswords {
    fn default() -> Self {
        // Without a random key there is no cache (never a fixed key).
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()).ok();
        VerifiedPasswords {
            key,
            ttl: Mutex::new(DEFAULT_TTL),
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl VerifiedPasswords {
    /// Sets how long a verified password is remembered; zero forgets everything
    /// and remembers nothing.
    pub fn set_ttl(&self, ttl: Duration) {
        *self.ttl.lock().unwrap_or_else(|e| e.into_inner()) = ttl;
        if ttl.is_zero() {
            self.entries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
    }

    fn ttl(&self) -> Duration {
        *self.ttl.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn proof(key: &hmac::Key, stored_hash: &str, password: &Secret<String>) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(key);
        ctx.update(&(stored_hash.len() as u64).to_be_bytes());
        ctx.update(stored_hash.as_bytes());
        ctx.update(password.expose().as_bytes());
        ctx.sign()
    }

    /// True when `password` verified against `stored_hash` for this account
    /// within the remembered time.
    pub fn matches(
        &self,
        account: AccountId,
        stored_hash: &str,
        password: &Secret<String>,
    ) -> bool {
        let Some(key) = &self.key else {
            return false;
        };
        let remembered = {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            match entries.get(&account) {
                Some(e) if e.expires > Instant::now() => e.tag,
                _ => return false,
            }
        };
        let tag = Self::proof(key, stored_hash, password);
        equal_in_constant_time(tag.as_ref(), remembered.as_ref())
    }

    /// Remembers that `password` verified against `stored_hash`.
    pub fn remember(&self, account: AccountId, stored_hash: &str, password: &Secret<String>) {
        let Some(key) = &self.key else {
            return;
        };
        let ttl = self.ttl();
        if ttl.is_zero() {
            return;
        }
        let tag = Self::proof(key, stored_hash, password);
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&account) {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        entries.insert(
            account,
            Entry {
                tag,
                expires: now + ttl,
            },
        );
    }

    /// Forgets the account (its password changed or a check failed).
    pub fn forget(&self, account: AccountId) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&account);
    }
}

/// Compares without stopping at the first difference.
fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Secret<String> {
        Secret::new(s.to_string())
    }

    #[test]
    fn remembers_only_the_same_password_and_hash() {
        let cache = VerifiedPasswords::default();
        let id = AccountId(7);
        assert!(!cache.matches(id, "$argon2id$h1", &pw("secret")));
        cache.remember(id, "$argon2id$h1", &pw("secret"));
        assert!(cache.matches(id, "$argon2id$h1", &pw("secret")));
        assert!(!cache.matches(id, "$argon2id$h1", &pw("Secret")));
        assert!(!cache.matches(id, "$argon2id$h1", &pw("secret ")));
        // A new password hash (password changed anywhere) invalidates it.
        assert!(!cache.matches(id, "$argon2id$h2", &pw("secret")));
        assert!(!cache.matches(AccountId(8), "$argon2id$h1", &pw("secret")));
        cache.forget(id);
        assert!(!cache.matches(id, "$argon2id$h1", &pw("secret")));
    }

    #[test]
    fn hash_and_password_boundary_is_unambiguous() {
        let cache = VerifiedPasswords::default();
        cache.remember(AccountId(1), "ab", &pw("c"));
        assert!(!cache.matches(AccountId(1), "a", &pw("bc")));
    }

    #[test]
    fn zero_ttl_turns_it_off_and_entries_expire() {
        let cache = VerifiedPasswords::default();
        cache.remember(AccountId(1), "h", &pw("p"));
        cache.set_ttl(Duration::ZERO);
        assert!(!cache.matches(AccountId(1), "h", &pw("p")));
        cache.remember(AccountId(1), "h", &pw("p"));
        assert!(!cache.matches(AccountId(1), "h", &pw("p")));
        cache.set_ttl(Duration::from_millis(30));
        cache.remember(AccountId(1), "h", &pw("p"));
        assert!(cache.matches(AccountId(1), "h", &pw("p")));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!cache.matches(AccountId(1), "h", &pw("p")));
    }
}
