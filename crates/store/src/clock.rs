//! The store's time source: the system clock, or a time a test sets and moves
//! (retention and recovery count days; their tests move the clock instead of
//! waiting).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Marks "the system clock" in [`Clock`]'s cell.
const SYSTEM: i64 = i64::MIN;

/// Seconds since the Unix epoch, as the mail model reads them: when a message
/// was saved to its mailbox (SAVEDATE), when it was expunged. Clones share one
/// time.
#[derive(Debug, Clone)]
pub struct Clock(Arc<AtomicI64>);

impl Default for Clock {
    fn default() -> Self {
        Clock(Arc::new(AtomicI64::new(SYSTEM)))
    }
}

impl Clock {
    /// Now: the system's time, or the time set last.
    pub fn now(&self) -> i64 {
        match self.0.load(Ordering::Relaxed) {
            SYSTEM => crate::now_unix(),
            t => t,
        }
    }

    /// Stops the clock at `t` (for tests; the server never sets it).
    pub fn set(&self, t: i64) {
        self.0.store(t.max(SYSTEM + 1), Ordering::Relaxed);
    }

    /// Moves the clock on by `seconds` (stopping it first, at the system's time).
    pub fn advance(&self, seconds: i64) {
        self.set(self.now().saturating_add(seconds));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_until_set_then_moves_only_when_told() {
        let c = Clock::default();
        assert!((c.now() - crate::now_unix()).abs() < 5);
        let shared = c.clone();
        c.set(1_000);
        assert_eq!(shared.now(), 1_000);
        shared.advance(86_400);
        assert_eq!(c.now(), 87_400);
    }
}
