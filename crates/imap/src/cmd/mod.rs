//! One file per group of commands. Each handler starts with the RFC sections it
//! follows.

mod append;
mod auth;
mod catenate;
mod context;
mod copy;
pub(crate) mod fetch;
mod idle;
mod mailbox;
mod notify;
mod qresync;
mod quota;
pub(crate) mod search;
mod select;
mod sort;
pub(crate) mod store;

use casella_proto_imap::{SeqNumber, SequenceSet};
use casella_store::{StoreError, Uid};

use crate::session::Session;

pub(crate) use auth::failure_text;
pub(crate) use notify::Notifications;

/// The one place store errors become IMAP response codes (RFC 5530).
pub(crate) fn store_error(e: &StoreError) -> String {
    match e {
        StoreError::NotFound(what) => format!("NO [NONEXISTENT] No such {what}"),
        StoreError::Exists(what) => format!("NO [ALREADYEXISTS] {what} exists already"),
        StoreError::Invalid(why) => format!("NO [CANNOT] {why}"),
        StoreError::InUse(why) => format!("NO [INUSE] {why}"),
        StoreError::TooBig(why) => format!("NO [TOOBIG] {why}"),
        StoreError::Temporary(_) => "NO [UNAVAILABLE] Temporary failure, try again".into(),
        StoreError::Internal(why) => {
            tracing::error!(error = %why, "store failure");
            "NO [SERVERBUG] Internal error; the administrator can find details in the log".into()
        }
    }
}

impl Session {
    /// The messages a sequence set names in the selected view, as (seq, uid) in
    /// ascending order. `uid` says whether the set holds UIDs or sequence numbers;
    /// `$` is the saved search result (RFC 5182). For message numbers, a number past
    /// the end is an error (RFC 9051 §6.4.5: BAD); for UIDs it just matches nothing.
    pub(crate) fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<(u32, Uid)>, String> {
        let Some(sel) = self.selected.as_ref() else {
            return Err("No mailbox selected".into());
        };
        let mut out = Vec::new();
        match set {
            SequenceSet::Saved => {
                for &u in &self.saved_search {
                    if let Some(seq) = sel.seq_of(Uid(u)) {
                        out.push((seq, Uid(u)));
                    }
                }
            }
            SequenceSet::Ranges(ranges) if uid => {
                // Merged first, so a command of thousands of overlapping ranges
                // over a huge mailbox costs no more than one `1:*`.
                let max = sel.max_uid();
                for (lo, hi) in merged(ranges.iter().map(|r| r.bounds(max))) {
                    let start = sel.messages.partition_point(|m| m.uid.0 < lo);
                    for (i, m) in sel.messages.iter().enumerate().skip(start) {
                        if m.uid.0 > hi {
                            break;
                        }
                        out.push((i as u32 + 1, m.uid));
                    }
                }
            }
            SequenceSet::Ranges(ranges) => {
                let exists = sel.exists();
                for r in ranges {
                    // A range with `*` in an empty mailbox names nothing (clients
                    // send `1:*` before they know the count); leniency as Dovecot.
                    if exists == 0 && (r.start == SeqNumber::Last || r.end == SeqNumber::Last) {
                        continue;
                    }
                    let (lo, hi) = r.bounds(exists);
                    if lo == 0 || hi > exists {
                        return Err("Invalid message sequence number".into());
                    }
                }
                let bounds = ranges
                    .iter()
                    .filter(|r| {
                        exists > 0 || (r.start != SeqNumber::Last && r.end != SeqNumber::Last)
                    })
                    .map(|r| r.bounds(exists));
                for (lo, hi) in merged(bounds) {
                    for seq in lo..=hi.min(exists) {
                        if let Some(m) = sel.messages.get(seq as usize - 1) {
                            out.push((seq, m.uid));
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Sorted, non-overlapping intervals covering the given ones.
fn merged(intervals: impl Iterator<Item = (u32, u32)>) -> Vec<(u32, u32)> {
    let mut v: Vec<(u32, u32)> = intervals.map(|(a, b)| (a.min(b), a.max(b))).collect();
    v.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(v.len());
    for (lo, hi) in v {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Compact UID set text for COPYUID/APPENDUID: `1:3,7` — in the given order.
pub(crate) fn uid_set(uids: &[Uid]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i].0;
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1].0 == end + 1 {
            i += 1;
            end += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets() {
        let u = |v: &[u32]| v.iter().map(|&n| Uid(n)).collect::<Vec<_>>();
        assert_eq!(uid_set(&u(&[1, 2, 3, 7])), "1:3,7");
        assert_eq!(uid_set(&u(&[5])), "5");
        assert_eq!(uid_set(&u(&[])), "");
        assert_eq!(uid_set(&u(&[4, 2, 3])), "4,2:3");
    }
}
