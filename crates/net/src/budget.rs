//! A memory budget shared by connections: bytes are taken before they are
//! read and given back when the guard drops. The pre-login budget bounds what
//! every connection that has not logged in may hold at once (literals of LOGIN,
//! AUTHENTICATE, ID), whatever their number.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct MemoryBudget {
    used: AtomicUsize,
    limit: usize,
}

/// Bytes held from a budget until dropped.
pub struct BudgetGuard {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    /// Takes `bytes`, or `None` when that would pass the limit.
    pub fn try_take(self: &Arc<Self>, bytes: usize) -> Option<BudgetGuard> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.checked_add(bytes).filter(|n| *n <= self.limit)?;
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Some(BudgetGuard {
                        budget: self.clone(),
                        bytes,
                    });
                }
                Err(now) => used = now,
            }
        }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

impl BudgetGuard {
    /// Holds `other`'s bytes too, until this guard drops.
    pub fn absorb(&mut self, mut other: BudgetGuard) {
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for BudgetGuard {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Literal bytes all connections may hold before login: 32 MiB (4,096
/// connections each at the 8 KiB pre-login literal limit).
pub const PREAUTH_BUDGET: usize = 32 << 20;

/// The process's pre-login budget.
pub fn preauth_budget() -> &'static Arc<MemoryBudget> {
    static BUDGET: OnceLock<Arc<MemoryBudget>> = OnceLock::new();
    BUDGET.get_or_init(|| MemoryBudget::new(PREAUTH_BUDGET))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_and_given_back() {
        let b = MemoryBudget::new(100);
        let mut one = b.try_take(60).expect("room");
        assert!(b.try_take(50).is_none());
        let two = b.try_take(40).expect("room");
        one.absorb(two);
        assert_eq!(b.used(), 100);
        assert!(b.try_take(1).is_none());
        drop(one);
        assert_eq!(b.used(), 0);
        assert!(b.try_take(usize::MAX).is_none());
    }
}
