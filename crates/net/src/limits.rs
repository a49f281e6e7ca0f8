//! Connection counting for the limits of Exchange's Set-PopSettings/Set-ImapSettings:
//! MaxConnections (per service), MaxConnectionFromSingleIP, MaxConnectionsPerUser.
//! A slot is held by a guard and given back when the guard drops.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts held slots per key (an address, an account, or one key for "all").
pub struct Counter<K: Eq + Hash + Clone + Send + 'static> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Eq + Hash + Clone + Send + 'static> Default for Counter<K> {
    fn default() -> Self {
        Counter {
            counts: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// One held slot.
pub struct Slot<K: Eq + Hash + Clone + Send + 'static> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

impl<K: Eq + Hash + Clone + Send + 'static> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

impl<K: Eq + Hash + Clone + Send + 'static> Counter<K> {
    /// Takes a slot for `key` unless `max` are held already.
    pub fn acquire(&self, key: K, max: usize) -> Option<Slot<K>> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(key.clone()).or_insert(0);
        if *n >= max {
            if *n == 0 {
                counts.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(Slot {
            counts: self.counts.clone(),
            key,
        })
    }

    pub fn held(&self, key: &K) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(key).copied().unwrap_or(0)
    }
}

/// The per-service connection limits, checked when a connection arrives.
#[derive(Default)]
pub struct ConnectionLimits {
    total: Counter<()>,
    per_ip: Counter<IpAddr>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The service's max-connections is reached.
    ServerFull,
    /// The address's max-connections-per-ip is reached.
    TooManyFromAddress,
}

/// Slots a connection holds for its lifetime.
pub struct Admitted {
    _total: Slot<()>,
    _ip: Slot<IpAddr>,
}

impl ConnectionLimits {
    pub fn admit(
        &self,
        ip: IpAddr,
        max_total: usize,
        max_per_ip: usize,
    ) -> Result<Admitted, Refusal> {
        let total = self
            .total
            .acquire((), max_total)
            .ok_or(Refusal::ServerFull)?;
        // One IPv6 host has a whole /64: counted as one address.
        let ip = self
            .per_ip
            .acquire(crate::source_of(ip), max_per_ip)
            .ok_or(Refusal::TooManyFromAddress)?;
        Ok(Admitted {
            _total: total,
            _ip: ip,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_and_given_back() {
        let limits = ConnectionLimits::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let one = limits.admit(a, 3, 2).unwrap();
        let _two = limits.admit(a, 3, 2).unwrap();
        assert_eq!(
            limits.admit(a, 3, 2).err(),
            Some(Refusal::TooManyFromAddress)
        );
        let _three = limits.admit(b, 3, 2).unwrap();
        assert_eq!(limits.admit(b, 3, 2).err(), Some(Refusal::ServerFull));
        drop(one);
        assert!(limits.admit(a, 3, 2).is_ok(), "a slot came back");
        let users: Counter<u64> = Counter::default();
        let s = users.acquire(7, 1).unwrap();
        assert!(users.acquire(7, 1).is_none());
        assert_eq!(users.held(&7), 1);
        drop(s);
        assert_eq!(users.held(&7), 0);
    }
}
