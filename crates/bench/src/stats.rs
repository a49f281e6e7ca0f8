//! Latency samples, percentiles and error counts.

use std::collections::BTreeMap;
use std::time::Duration;

/// Latencies in microseconds; percentiles from the sorted samples.
#[derive(Clone, Debug, Default)]
pub struct Lat {
    samples: Vec<u32>,
}

impl Lat {
    pub fn add(&mut self, d: Duration) {
        self.samples
            .push(d.as_micros().min(u32::MAX as u128) as u32);
    }

    pub fn merge(&mut self, other: Lat) {
        self.samples.extend(other.samples);
    }

    pub fn count(&self) -> usize {
        self.samples.len()
    }

    /// The `p`-th percentile (0–100) in milliseconds, nearest rank.
    pub fn pct_ms(&self, p: f64) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let mut v = self.samples.clone();
        v.sort_unstable();
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        Some(v[rank.clamp(1, v.len()) - 1] as f64 / 1000.0)
    }
}

/// Protocol errors: every one is counted; the first few are kept for the report.
#[derive(Clone, Debug, Default)]
pub struct Errors {
    pub count: u64,
    pub first: Vec<String>,
}

impl Errors {
    pub fn add(&mut self, what: impl Into<String>) {
        self.count += 1;
        if self.first.len() < 5 {
            self.first.push(what.into());
        }
    }

    pub fn merge(&mut self, other: Errors) {
        self.count += other.count;
        for e in other.first {
            if self.first.len() < 5 {
                self.first.push(e);
            }
        }
    }
}

/// Per-command latencies and errors of one client, merged over all clients.
#[derive(Clone, Debug, Default)]
pub struct CmdStats {
    pub by_cmd: BTreeMap<&'static str, Lat>,
    pub errors: Errors,
    /// Bytes received from the server.
    pub bytes_in: u64,
}

impl CmdStats {
    pub fn add(&mut self, cmd: &'static str, d: Duration) {
        self.by_cmd.entry(cmd).or_default().add(d);
    }

    pub fn merge(&mut self, other: CmdStats) {
        for (k, v) in other.by_cmd {
            self.by_cmd.entry(k).or_default().merge(v);
        }
        self.errors.merge(other.errors);
        self.bytes_in += other.bytes_in;
    }

    pub fn total(&self) -> Lat {
        let mut all = Lat::default();
        for v in self.by_cmd.values() {
            all.merge(v.clone());
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut l = Lat::default();
        assert_eq!(l.pct_ms(50.0), None);
        for i in 1..=100u64 {
            l.add(Duration::from_millis(i));
        }
        assert_eq!(l.pct_ms(50.0), Some(50.0));
        assert_eq!(l.pct_ms(99.0), Some(99.0));
        assert_eq!(l.pct_ms(100.0), Some(100.0));
        assert_eq!(l.pct_ms(0.0), Some(1.0));
    }
}
