//! Messages per user per hour: a sliding window kept in memory on this node.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use casella_store::AccountId;

const WINDOW: Duration = Duration::from_secs(3600);

#[derive(Default)]
pub struct RateLimiter {
    sent: Mutex<HashMap<AccountId, VecDeque<Instant>>>,
}

impl RateLimiter {
    /// Whether the account may send another message now (0 = no limit).
    pub fn allows(&self, account: AccountId, per_hour: u32) -> bool {
        if per_hour == 0 {
            return true;
        }
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        let q = sent.entry(account).or_default();
        let now = Instant::now();
        while q.front().is_some_and(|t| now.duration_since(*t) > WINDOW) {
            q.pop_front();
        }
        q.len() < per_hour as usize
    }

    pub fn record(&self, account: AccountId) {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        sent.entry(account).or_default().push_back(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_account() {
        let r = RateLimiter::default();
        let (a, b) = (AccountId(1), AccountId(2));
        assert!(r.allows(a, 2));
        r.record(a);
        r.record(a);
        assert!(!r.allows(a, 2));
        assert!(r.allows(b, 2));
        assert!(r.allows(a, 0), "0 means no limit");
    }
}
