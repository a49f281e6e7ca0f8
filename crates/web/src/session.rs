//! Signed-in users of the web pages: a random session id in a cookie
//! (`HttpOnly`, `SameSite=Strict`, `Secure` over HTTPS), kept in memory with an
//! expiry, and a per-session CSRF token every form must send back.
//!
//! A session remembers which account it belongs to (its id, not only its
//! address), whether it was an administrator, and the account's session
//! generation when it started; `pages::SignedIn` compares all three with the
//! account at every request, so a deleted, disabled, demoted or signed-out
//! account's sessions end at their next request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use casella_store::{Account, AccountId};
use rand::RngCore;

pub const COOKIE: &str = "casella_session";
/// How long a session lives without use.
const IDLE: Duration = Duration::from_secs(30 * 60);
/// At most this many sessions are kept (the oldest go first).
const MAX_SESSIONS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct WebSession {
    pub address: String,
    pub account_id: AccountId,
    /// The account's `session_generation` when the session started.
    pub generation: u64,
    pub admin: bool,
    pub csrf: String,
    last_used: Instant,
}

#[derive(Default)]
pub struct WebSessions {
    map: Mutex<HashMap<String, WebSession>>,
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl WebSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, WebSession>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a session for `account`; returns its id (the cookie value).
    pub fn start(&self, account: &Account) -> String {
        let id = random_token();
        let mut map = self.lock();
        let now = Instant::now();
        map.retain(|_, s| now.duration_since(s.last_used) < IDLE);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            WebSession {
                address: account.address.clone(),
                account_id: account.id,
                generation: account.settings.session_generation,
                admin: account.is_admin,
                csrf: random_token(),
                last_used: now,
            },
        );
        id
    }

    /// The live session with this id, refreshed.
    pub fn get(&self, id: &str) -> Option<WebSession> {
        let mut map = self.lock();
        let now = Instant::now();
        match map.get_mut(id) {
            Some(s) if now.duration_since(s.last_used) < IDLE => {
                s.last_used = now;
                Some(s.clone())
            }
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn end(&self, id: &str) {
        self.lock().remove(id);
    }
}

impl WebSession {
    /// Whether the session still stands for `account` as it is now: the same
    /// account (not one made again under the same address), not disabled, not
    /// signed out everywhere or given a new password since (the generation),
    /// and administrator exactly when it was.
    pub fn still_valid_for(&self, account: &Account) -> bool {
        account.id == self.account_id
            && !account.settings.disabled
            && account.settings.session_generation == self.generation
            && account.is_admin == self.admin
    }
}

/// The `Set-Cookie` value for a session id (an empty id clears the cookie).
pub fn cookie(id: &str, secure: bool) -> String {
    let max_age = if id.is_empty() { 0 } else { IDLE.as_secs() };
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// The session id in a `Cookie` header.
pub fn from_cookie_header(header: &str) -> Option<&str> {
    header.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == COOKIE && !v.is_empty()).then_some(v)
    })
}

/// Compares two tokens in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Account {
        Account {
            id: AccountId(7),
            address: "a@example.org".into(),
            password_hash: String::new(),
            is_admin: true,
            pop_enabled: true,
            imap_enabled: true,
            submission_enabled: true,
            settings: Default::default(),
        }
    }

    #[test]
    fn a_session_follows_its_account() {
        let s = WebSessions::default();
        let mut a = account();
        let session = s.get(&s.start(&a)).unwrap();
        assert!(session.still_valid_for(&a));
        let mut other = a.clone();
        other.id = AccountId(8);
        assert!(!session.still_valid_for(&other), "removed and made again");
        a.settings.disabled = true;
        assert!(!session.still_valid_for(&a), "disabled");
        a.settings.disabled = false;
        a.is_admin = false;
        assert!(!session.still_valid_for(&a), "demoted");
        a.is_admin = true;
        a.settings.end_web_sessions();
        assert!(!session.still_valid_for(&a), "signed out everywhere");
        assert!(s.get(&s.start(&a)).unwrap().still_valid_for(&a));
    }

    #[test]
    fn sessions_and_cookies() {
        let s = WebSessions::default();
        let id = s.start(&account());
        let got = s.get(&id).unwrap();
        assert_eq!(got.address, "a@example.org");
        assert!(s.get("other").is_none());
        let header = format!("x=1; {COOKIE}={id}; y=2");
        assert_eq!(from_cookie_header(&header), Some(id.as_str()));
        assert!(cookie(&id, true).contains("HttpOnly; SameSite=Strict"));
        assert!(cookie(&id, true).ends_with("; Secure"));
        assert!(same_token(&got.csrf, &got.csrf.clone()));
        assert!(!same_token(&got.csrf, "x"));
        s.end(&id);
        assert!(s.get(&id).is_none());
    }
}
