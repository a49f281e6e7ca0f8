//! The live sessions of this process: who is connected, over which protocol, from
//! where and since when. The admin API lists them and can end one; the session
//! then closes at its next command boundary (or at once while it waits for the
//! client), as at shutdown, with a reply that says why.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;

use crate::ConnectionInfo;

/// One live session as the admin API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: u64,
    /// The listener's protocol name (`imap`, `pop3s`, `submission`, …).
    pub protocol: String,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    /// Seconds since the Unix epoch when the connection was accepted.
    pub since: u64,
    /// The logged-in account, once there is one.
    pub user: Option<String>,
}

/// Why a live session was ended on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// An administrator ended this session.
    Administrator,
    /// The account was signed out of all devices (by its user or an
    /// administrator), or removed.
    SignedOut,
}

struct Entry {
    info: SessionInfo,
    end: watch::Sender<Option<EndReason>>,
}

#[derive(Default)]
pub struct LiveSessions {
    next: AtomicU64,
    entries: Mutex<HashMap<u64, Entry>>,
}

/// Keeps a session listed; dropping it (the session ended) removes it.
pub struct Registration {
    id: u64,
    registry: Arc<LiveSessions>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

impl LiveSessions {
    /// The registry of this process.
    pub fn global() -> &'static Arc<LiveSessions> {
        static GLOBAL: OnceLock<Arc<LiveSessions>> = OnceLock::new();
        GLOBAL.get_or_init(|| Arc::new(LiveSessions::default()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists a new connection; the receiver turns true when an admin ends it.
    pub fn register(
        self: &Arc<Self>,
        protocol: &str,
        info: &ConnectionInfo,
    ) -> (Registration, watch::Receiver<Option<EndReason>>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = watch::channel(None);
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.lock().insert(
            id,
            Entry {
                info: SessionInfo {
                    id,
                    protocol: protocol.to_string(),
                    remote: info.remote,
                    local: info.local,
                    since,
                    user: None,
                },
                end: tx,
            },
        );
        (
            Registration {
                id,
                registry: self.clone(),
            },
            rx,
        )
    }

    /// Records who logged in on the connection `info` describes.
    pub fn set_user(&self, info: &ConnectionInfo, user: &str) {
        for e in self.lock().values_mut() {
            if e.info.remote == info.remote && e.info.local == info.local {
                e.info.user = Some(user.to_string());
            }
        }
    }

    /// Every live session, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = self.lock().values().map(|e| e.info.clone()).collect();
        v.sort_by_key(|s| s.id);
        v
    }

    /// Ends every session logged in as `user` (compared case-insensitively):
    /// "sign out of all devices". Returns how many were told to end; sessions
    /// still logging in are not among them.
    pub fn end_user(&self, user: &str) -> usize {
        self.end_user_started_by(user, u64::MAX)
    }

    /// [`LiveSessions::end_user`] for the sessions accepted at or before
    /// `until` (seconds since the Unix epoch): a sign-out recorded elsewhere
    /// ends the sessions that were open then, not the ones that logged in again
    /// since.
    pub fn end_user_started_by(&self, user: &str, until: u64) -> usize {
        let mut n = 0;
        for e in self.lock().values() {
            if e.info.since <= until
                && e.info
                    .user
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(user))
            {
                let _ = e.end.send(Some(EndReason::SignedOut));
                n += 1;
            }
        }
        n
    }

    /// Ends a session; false when there is no such session.
    pub fn end(&self, id: u64) -> bool {
        match self.lock().get(&id) {
            Some(e) => {
                let _ = e.end.send(Some(EndReason::Administrator));
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_are_listed_named_and_ended() {
        let reg = Arc::new(LiveSessions::default());
        let info = ConnectionInfo {
            local: "127.0.0.1:143".parse().unwrap(),
            remote: "127.0.0.1:50000".parse().unwrap(),
            implicit_tls: false,
        };
        let (r, mut ended) = reg.register("imap", &info);
        reg.set_user(&info, "a@example.org");
        let listed = reg.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].user.as_deref(), Some("a@example.org"));
        assert!(reg.end(listed[0].id));
        ended.wait_for(|v| v.is_some()).await.unwrap();
        drop(r);
        assert!(reg.list().is_empty());
        assert!(!reg.end(listed[0].id));
    }

    #[tokio::test]
    async fn end_user_ends_only_that_users_sessions() {
        let reg = Arc::new(LiveSessions::default());
        let info = |port: u16| ConnectionInfo {
            local: "127.0.0.1:143".parse().unwrap(),
            remote: format!("127.0.0.1:{port}").parse().unwrap(),
            implicit_tls: false,
        };
        let (_r1, mut e1) = reg.register("imap", &info(50001));
        let (_r2, mut e2) = reg.register("pop3", &info(50002));
        let (_r3, e3) = reg.register("imap", &info(50003));
        let (_r4, e4) = reg.register("imap", &info(50004));
        reg.set_user(&info(50001), "a@example.org");
        reg.set_user(&info(50002), "a@example.org");
        reg.set_user(&info(50003), "b@example.org");
        assert_eq!(reg.end_user("A@Example.org"), 2);
        e1.wait_for(|v| *v == Some(EndReason::SignedOut))
            .await
            .unwrap();
        e2.wait_for(|v| v.is_some()).await.unwrap();
        assert!(e3.borrow().is_none(), "another user's session goes on");
        assert!(e4.borrow().is_none(), "a session not logged in goes on");
        assert_eq!(reg.end_user("nobody@example.org"), 0);
        assert_eq!(
            reg.end_user_started_by("b@example.org", 1_000),
            0,
            "it started later"
        );
        assert_eq!(reg.end_user_started_by("b@example.org", u64::MAX - 1), 1);
    }
}
