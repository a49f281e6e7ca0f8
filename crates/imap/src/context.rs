//! Search and sort results kept up to date — RFC 5267 §4.3 (CONTEXT=SEARCH,
//! CONTEXT=SORT): what a context holds, how its criteria are pinned when it
//! starts, and how a change to its result is written as ADDTO and
//! REMOVEFROM. Pure: the session (`cmd/context.rs`) finds what changed.

use std::collections::HashSet;

use casella_proto_imap::{SearchKey, SeqNumber, SeqRange, SequenceSet, SortCriterion};
use casella_store::Uid;

use crate::cmd::uid_set;

/// How many updating contexts one session may hold (as Dovecot); past it a
/// search is answered but not updated (`NO [NOUPDATE]`, RFC 5267 §4.3.1).
pub(crate) const MAX_CONTEXTS: usize = 10;

/// One SEARCH or SORT whose result is kept up to date for the client.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The tag of the command that made it; its updates carry it.
    pub tag: String,
    /// UID SEARCH / UID SORT: updates name UIDs, else message numbers.
    pub uid: bool,
    /// The criteria, with message numbers and `$` already turned into the
    /// UIDs they named (`pin_numbers`).
    pub criteria: SearchKey,
    /// CONTEXT=SORT: the order of the result; `None` for SEARCH.
    pub sort: Option<Vec<SortCriterion>>,
    /// The result: UIDs ascending (SEARCH) or in sort order (SORT).
    pub members: Vec<Uid>,
}

/// A run of the result at one position: `(position, messages)`.
pub(crate) type Run = (usize, Vec<Uid>);

/// What changed in a context's result, ready to be written.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ResultChange {
    pub removed: Vec<Run>,
    pub added: Vec<Run>,
}

impl Context {
    /// Replaces the result with `new` and says how it changed. For SEARCH
    /// every position is 0 (RFC 5267 §4.3.2: unsorted results have no
    /// positions) and `new` must be ascending; for SORT positions are
    /// 1-based and meant to be applied in the order given: removals from
    /// the last position down (so each is where the client has it),
    /// additions from the first up (so each lands where it belongs).
    pub(crate) fn replace(&mut self, new: Vec<Uid>) -> ResultChange {
        let old = std::mem::replace(&mut self.members, new);
        let kept: HashSet<Uid> = self.members.iter().copied().collect();
        let had: HashSet<Uid> = old.iter().copied().collect();
        if self.sort.is_none() {
            let removed: Vec<Uid> = old.iter().filter(|u| !kept.contains(u)).copied().collect();
            let added: Vec<Uid> = self
                .members
                .iter()
                .filter(|u| !had.contains(u))
                .copied()
                .collect();
            return ResultChange {
                removed: unsorted_run(removed),
                added: unsorted_run(added),
            };
        }
        let mut removed = runs(old.iter().enumerate().filter(|(_, u)| !kept.contains(u)));
        removed.reverse();
        let added = runs(
            self.members
                .iter()
                .enumerate()
                .filter(|(_, u)| !had.contains(u)),
        );
        ResultChange { removed, added }
    }

    /// Takes the expunged messages out of the result (RFC 5267 §4.3.4: a
    /// REMOVEFROM naming them by number comes before their EXPUNGE).
    pub(crate) fn remove_expunged(&mut self, gone: &HashSet<Uid>) -> ResultChange {
        if !self.members.iter().any(|u| gone.contains(u)) {
            return ResultChange::default();
        }
        let new: Vec<Uid> = self
            .members
            .iter()
            .filter(|u| !gone.contains(u))
            .copied()
            .collect();
        self.replace(new)
    }
}

fn unsorted_run(uids: Vec<Uid>) -> Vec<Run> {
    if uids.is_empty() {
        Vec::new()
    } else {
        vec![(0, uids)]
    }
}

/// Consecutive positions joined into runs, each at its first (1-based)
/// position.
fn runs<'a>(positions: impl Iterator<Item = (usize, &'a Uid)>) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    let mut last: Option<usize> = None;
    for (i, &uid) in positions {
        match out.last_mut() {
            Some((_, run)) if last == Some(i.wrapping_sub(1)) => run.push(uid),
            _ => out.push((i + 1, vec![uid])),
        }
        last = Some(i);
    }
    out
}

/// The untagged ESEARCH of a change (RFC 5267 §4.3.3–4.3.4), `number`
/// giving what the client knows each message by (its UID, or its message
/// number now). `None` when nothing is left to say.
pub(crate) fn update_line(
    tag: &str,
    uid: bool,
    change: &ResultChange,
    number: &dyn Fn(Uid) -> Option<u32>,
) -> Option<String> {
    let write = |name: &str, runs: &[Run], line: &mut String| {
        let mut items = Vec::new();
        for (position, run) in runs {
            let numbers: Vec<Uid> = run.iter().filter_map(|&u| number(u)).map(Uid).collect();
            if !numbers.is_empty() {
                items.push(format!("{position} {}", uid_set(&numbers)));
            }
        }
        if !items.is_empty() {
            line.push_str(&format!(" {name} ({})", items.join(" ")));
        }
    };
    let mut line = format!("* ESEARCH (TAG \"{tag}\")");
    if uid {
        line.push_str(" UID");
    }
    let bare = line.len();
    write("REMOVEFROM", &change.removed, &mut line);
    write("ADDTO", &change.added, &mut line);
    (line.len() > bare).then_some(line)
}

/// `key` with every message-number set and `$` replaced by the UIDs they
/// name now (RFC 5267 §4.3: a context's criteria are evaluated as the
/// command gave them; messages renumbered later keep their membership).
/// `uid_of` maps a message number to its UID; `largest` is `*`.
pub(crate) fn pin_numbers(
    key: SearchKey,
    largest: u32,
    uid_of: &dyn Fn(u32) -> Option<u32>,
    saved: &[u32],
) -> SearchKey {
    let pin = |key| pin_numbers(key, largest, uid_of, saved);
    match key {
        SearchKey::SequenceSet(SequenceSet::Saved) | SearchKey::Uid(SequenceSet::Saved) => {
            SearchKey::Uid(uids_as_set(saved.iter().copied()))
        }
        SearchKey::SequenceSet(set) => {
            let uids = (1..=largest)
                .filter(|&n| set.contains(n, largest))
                .filter_map(uid_of);
            SearchKey::Uid(uids_as_set(uids))
        }
        SearchKey::Not(k) => SearchKey::Not(Box::new(pin(*k))),
        SearchKey::Or(a, b) => SearchKey::Or(Box::new(pin(*a)), Box::new(pin(*b))),
        SearchKey::And(keys) => SearchKey::And(keys.into_iter().map(pin).collect()),
        k => k,
    }
}

/// Ascending UIDs as a set of ranges (empty: a set matching nothing).
fn uids_as_set(uids: impl Iterator<Item = u32>) -> SequenceSet {
    let mut ranges: Vec<SeqRange> = Vec::new();
    for u in uids {
        match ranges.last_mut() {
            Some(SeqRange {
                end: SeqNumber::Value(e),
                ..
            }) if e.checked_add(1) == Some(u) => *e = u,
            _ => ranges.push(SeqRange {
                start: SeqNumber::Value(u),
                end: SeqNumber::Value(u),
            }),
        }
    }
    SequenceSet::Ranges(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uids(v: &[u32]) -> Vec<Uid> {
        v.iter().copied().map(Uid).collect()
    }

    fn context(sorted: bool, members: &[u32]) -> Context {
        Context {
            tag: "A1".into(),
            uid: true,
            criteria: SearchKey::All,
            sort: sorted.then(Vec::new),
            members: uids(members),
        }
    }

    fn line(c: &Context, change: &ResultChange) -> Option<String> {
        update_line(&c.tag, c.uid, change, &|u| Some(u.0))
    }

    #[test]
    fn unsorted_changes_are_at_position_zero() {
        let mut c = context(false, &[1, 2, 4]);
        let change = c.replace(uids(&[2, 3, 4, 5]));
        assert_eq!(
            line(&c, &change).as_deref(),
            Some("* ESEARCH (TAG \"A1\") UID REMOVEFROM (0 1) ADDTO (0 3,5)")
        );
        let change = c.replace(uids(&[2, 3, 4, 5]));
        assert_eq!(line(&c, &change), None);
    }

    /// Applies a change as a client would: removals, then additions, each
    /// run at its position in turn.
    fn apply(list: &mut Vec<Uid>, change: &ResultChange) {
        for (pos, run) in &change.removed {
            for _ in run {
                list.remove(pos - 1);
            }
        }
        for (pos, run) in &change.added {
            for (k, &u) in run.iter().enumerate() {
                list.insert(pos - 1 + k, u);
            }
        }
    }

    #[test]
    fn sorted_changes_rebuild_the_new_order() {
        let cases: &[(&[u32], &[u32])] = &[
            (&[5, 3, 4, 2, 1], &[5, 4, 1]),
            (&[5, 3, 4, 2, 1], &[7, 5, 3, 6, 4, 2, 1, 8]),
            (&[5, 3, 4], &[9, 3, 8]),
            (&[], &[2, 1]),
            (&[2, 1], &[]),
        ];
        for (old, new) in cases {
            let mut c = context(true, old);
            let change = c.replace(uids(new));
            let mut client = uids(old);
            apply(&mut client, &change);
            assert_eq!(client, uids(new), "{old:?} -> {new:?}: {change:?}");
        }
        let mut c = context(true, &[5, 3, 4, 2, 1]);
        let change = c.replace(uids(&[7, 5, 3, 6, 4, 1]));
        assert_eq!(
            line(&c, &change).as_deref(),
            Some("* ESEARCH (TAG \"A1\") UID REMOVEFROM (4 2) ADDTO (1 7 4 6)")
        );
    }

    #[test]
    fn expunged_members_leave() {
        let mut c = context(false, &[1, 2, 3]);
        let gone: HashSet<Uid> = uids(&[2, 9]).into_iter().collect();
        let change = c.remove_expunged(&gone);
        assert_eq!(change.removed, vec![(0, uids(&[2]))]);
        assert_eq!(c.members, uids(&[1, 3]));
        assert_eq!(c.remove_expunged(&gone), ResultChange::default());
    }

    #[test]
    fn message_numbers_are_pinned_to_uids() {
        // Messages 1..=4 have UIDs 10, 20, 30, 40.
        let uid_of = |n: u32| (1..=4).contains(&n).then_some(n * 10);
        let star = SequenceSet::Ranges(vec![SeqRange {
            start: SeqNumber::Value(3),
            end: SeqNumber::Last,
        }]);
        let key = SearchKey::And(vec![
            SearchKey::SequenceSet(star),
            SearchKey::Not(Box::new(SearchKey::SequenceSet(SequenceSet::Saved))),
            SearchKey::Seen,
        ]);
        let pinned = pin_numbers(key, 4, &uid_of, &[30]);
        let want = SearchKey::And(vec![
            SearchKey::Uid(uids_as_set([30, 40].into_iter())),
            SearchKey::Not(Box::new(SearchKey::Uid(uids_as_set([30].into_iter())))),
            SearchKey::Seen,
        ]);
        assert_eq!(pinned, want);
        assert_eq!(
            uids_as_set([1, 2, 3, 7, 9, 10].into_iter()),
            SequenceSet::Ranges(vec![
                SeqRange {
                    start: SeqNumber::Value(1),
                    end: SeqNumber::Value(3)
                },
                SeqRange {
                    start: SeqNumber::Value(7),
                    end: SeqNumber::Value(7)
                },
                SeqRange {
                    start: SeqNumber::Value(9),
                    end: SeqNumber::Value(10)
                },
            ])
        );
    }
}
