//! What LIST and LSUB answer, from the account's mailboxes and its
//! subscription list — pure, so the rules can be tested without a session.
//!
//! The names a listing can mention are the mailboxes, the superior names of
//! mailboxes that do not exist themselves, and (for subscription listings)
//! the subscribed names and their superiors. The caller matches those names
//! against the patterns (on the blocking pool when that is large work) and
//! hands in which matched.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Bound;

use casella_store::Mailbox;

use crate::names::SEPARATOR;

/// One name a listing can mention, and what is known about it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Known<'a> {
    /// The mailbox of that name, if there is one.
    pub mailbox: Option<&'a Mailbox>,
    pub subscribed: bool,
}

/// Every name a listing can mention, by name.
pub struct Names<'a> {
    known: BTreeMap<String, Known<'a>>,
    /// Names that exist or have existing inferiors (for \HasChildren).
    tree: BTreeSet<String>,
    /// The subscribed names.
    subscribed: BTreeSet<String>,
}

/// What to list, from the LIST command's options (RFC 5258).
#[derive(Debug, Clone, Copy, Default)]
pub struct Selection {
    /// `(SUBSCRIBED)`: subscribed names only, existing or not.
    pub subscribed: bool,
    /// `(SPECIAL-USE)`, RFC 6154 §3: mailboxes with a special use only.
    pub special_use: bool,
    /// `(RECURSIVEMATCH)`: also parents whose inferiors satisfy the selection.
    pub recursive: bool,
    /// `RETURN (SUBSCRIBED)` (implied by the selection).
    pub return_subscribed: bool,
}

/// One line of a LIST answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry<'a> {
    pub name: String,
    pub mailbox: Option<&'a Mailbox>,
    pub attributes: Vec<&'static str>,
    /// `("CHILDINFO" ("SUBSCRIBED"))`, RFC 5258 §3.5.
    pub childinfo_subscribed: bool,
}

/// One line of an LSUB answer (RFC 3501 §6.3.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LsubEntry {
    pub name: String,
    pub noselect: bool,
}

impl<'a> Names<'a> {
    /// The names of `mailboxes`, their superiors, and — with
    /// `with_subscriptions` — the subscribed names and their superiors.
    pub fn new(
        mailboxes: &'a [Mailbox],
        subscriptions: &[String],
        with_subscriptions: bool,
    ) -> Self {
        let mut known: BTreeMap<String, Known<'a>> = BTreeMap::new();
        let mut tree = BTreeSet::new();
        for mb in mailboxes {
            for parent in superiors(&mb.name) {
                known.entry(parent.to_string()).or_default();
                tree.insert(parent.to_string());
            }
            known.entry(mb.name.clone()).or_default().mailbox = Some(mb);
            tree.insert(mb.name.clone());
        }
        let subscribed: BTreeSet<String> = subscriptions.iter().cloned().collect();
        for name in &subscribed {
            if with_subscriptions {
                for parent in superiors(name) {
                    known.entry(parent.to_string()).or_default();
                }
                known.entry(name.clone()).or_default();
            }
            if let Some(k) = known.get_mut(name) {
                k.subscribed = true;
            }
        }
        Names {
            known,
            tree,
            subscribed,
        }
    }

    /// Every name, in order (for matching against the patterns).
    pub fn all(&self) -> Vec<&str> {
        self.known.keys().map(String::as_str).collect()
    }

    fn has_children(&self, name: &str) -> bool {
        let prefix = format!("{name}{SEPARATOR}");
        self.tree
            .range::<str, _>((Bound::Excluded(prefix.as_str()), Bound::Unbounded))
            .next()
            .is_some_and(|n| n.starts_with(&prefix))
    }

    /// Whether a subscribed name below `name` is not among `matched` — the
    /// RECURSIVEMATCH and LSUB `%` rule: a parent is reported for inferiors
    /// the patterns themselves do not list.
    fn has_unmatched_subscribed_inferior(&self, name: &str, matched: &HashSet<&str>) -> bool {
        let prefix = format!("{name}{SEPARATOR}");
        self.subscribed
            .range::<str, _>((Bound::Excluded(prefix.as_str()), Bound::Unbounded))
            .take_while(|n| n.starts_with(&prefix))
            .any(|n| !matched.contains(n.as_str()))
    }

    /// The LIST answer — RFC 9051 §6.3.9 and RFC 5258: INBOX first, then by
    /// name. `matched` holds the names that match a pattern.
    pub fn list(&self, selection: Selection, matched: &HashSet<&str>) -> Vec<ListEntry<'a>> {
        let mut out = Vec::new();
        for (name, known) in &self.known {
            if !matched.contains(name.as_str()) {
                continue;
            }
            let children = self.has_children(name);
            let mut childinfo = false;
            if selection.subscribed {
                if !known.subscribed {
                    // RFC 5258 §3: with RECURSIVEMATCH, a name that is not
                    // subscribed itself is listed for subscribed inferiors
                    // the patterns do not reach.
                    if !(selection.recursive
                        && self.has_unmatched_subscribed_inferior(name, matched))
                    {
                        continue;
                    }
                    childinfo = true;
                }
            } else if known.mailbox.is_none() && !children {
                // A subscribed name alone does not make LIST list it.
                continue;
            }
            if selection.special_use && known.mailbox.is_none_or(|m| m.special_use.is_none()) {
                continue;
            }
            let mut attributes = Vec::new();
            match known.mailbox {
                Some(mb) => {
                    attributes.push(if children {
                        "\\HasChildren"
                    } else {
                        "\\HasNoChildren"
                    });
                    if let Some(role) = mb.special_use {
                        attributes.push(role.attribute());
                    }
                }
                // A superior of existing mailboxes (RFC 9051 §6.3.9: levels
                // that are not selectable are \Noselect).
                None if children => attributes.extend(["\\Noselect", "\\HasChildren"]),
                // RFC 5258 §3.4 / RFC 9051 §7.3.1: listed only for its
                // subscription or its inferiors; implies \Noselect.
                None => attributes.push("\\NonExistent"),
            }
            if selection.return_subscribed && known.subscribed {
                attributes.push("\\Subscribed");
            }
            out.push(ListEntry {
                name: name.clone(),
                mailbox: known.mailbox,
                attributes,
                childinfo_subscribed: childinfo,
            });
        }
        inbox_first(&mut out, |e| &e.name);
        out
    }

    /// The LSUB answer — RFC 3501 §6.3.9: the subscribed names that match
    /// (existing or not), and, as \Noselect, unsubscribed names that match and
    /// have subscribed inferiors that do not (the `%` case).
    pub fn lsub(&self, matched: &HashSet<&str>) -> Vec<LsubEntry> {
        let mut out = Vec::new();
        for (name, known) in &self.known {
            if !matched.contains(name.as_str()) {
                continue;
            }
            if known.subscribed {
                out.push(LsubEntry {
                    name: name.clone(),
                    noselect: known.mailbox.is_none(),
                });
            } else if self.has_unmatched_subscribed_inferior(name, matched) {
                out.push(LsubEntry {
                    name: name.clone(),
                    noselect: true,
                });
            }
        }
        inbox_first(&mut out, |e| &e.name);
        out
    }
}

/// The superior names of `name`, outermost first: `a/b/c` → `a`, `a/b`.
fn superiors(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices(SEPARATOR)
        .map(move |(i, _)| &name[..i])
        .filter(|p| !p.is_empty())
}

/// INBOX (and its inferiors' order is kept) first, the rest as they were.
fn inbox_first<T>(entries: &mut [T], name: impl Fn(&T) -> &String) {
    entries.sort_by_key(|e| name(e) != "INBOX");
}

#[cfg(test)]
mod tests {
    use super::*;
    use casella_store::{AccountId, MailboxId, ModSeq, SpecialUse, Uid, UidValidity};

    fn mailbox(name: &str, special_use: Option<SpecialUse>) -> Mailbox {
        Mailbox {
            id: MailboxId(1),
            account: AccountId(1),
            name: name.into(),
            special_use,
            uid_validity: UidValidity(1),
            uid_next: Uid(1),
            highest_modseq: ModSeq(1),
            recent_watermark: Uid(0),
            total_size: 0,
            message_count: 0,
        }
    }

    fn matched<'n>(names: &'n Names<'_>, pattern: &[&str]) -> HashSet<&'n str> {
        names
            .all()
            .into_iter()
            .filter(|n| {
                pattern
                    .iter()
                    .any(|p| casella_proto_imap::names::pattern_matches(p, n))
            })
            .collect()
    }

    fn lines(entries: &[ListEntry<'_>]) -> Vec<String> {
        entries
            .iter()
            .map(|e| {
                let mut s = format!("({}) {}", e.attributes.join(" "), e.name);
                if e.childinfo_subscribed {
                    s.push_str(" CHILDINFO");
                }
                s
            })
            .collect()
    }

    /// imaptest's listext layout.
    fn layout() -> (Vec<Mailbox>, Vec<String>) {
        let boxes = [
            "b",
            "b/test1",
            "b/test2",
            "b/test2/test1",
            "b/test3",
            "b/test4",
            "b/test4/test5",
            "b/test4/test52",
            "b/test7",
            "b/test7/test7",
            "b/test8",
            "b/test8/test8",
            "b/test8/test9",
            "INBOX",
        ]
        .iter()
        .map(|n| mailbox(n, None))
        .collect();
        let subs = [
            "b/test1",
            "b/test2/test1",
            "b/test6",
            "b/test7/test7",
            "b/test8/test8",
            "b/test8/test9",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        (boxes, subs)
    }

    #[test]
    fn subscribed_selection_lists_names_without_mailboxes() {
        let (boxes, subs) = layout();
        let names = Names::new(&boxes, &subs, true);
        let selection = Selection {
            subscribed: true,
            return_subscribed: true,
            ..Selection::default()
        };
        let m = matched(&names, &["b/*"]);
        assert_eq!(
            lines(&names.list(selection, &m)),
            [
                "(\\HasNoChildren \\Subscribed) b/test1",
                "(\\HasNoChildren \\Subscribed) b/test2/test1",
                "(\\NonExistent \\Subscribed) b/test6",
                "(\\HasNoChildren \\Subscribed) b/test7/test7",
                "(\\HasNoChildren \\Subscribed) b/test8/test8",
                "(\\HasNoChildren \\Subscribed) b/test8/test9",
            ]
        );
    }

    #[test]
    fn recursivematch_reports_parents_of_unlisted_subscriptions() {
        let (boxes, subs) = layout();
        let names = Names::new(&boxes, &subs, true);
        let selection = Selection {
            subscribed: true,
            recursive: true,
            return_subscribed: true,
            ..Selection::default()
        };
        let list = |p: &[&str]| lines(&names.list(selection, &matched(&names, p)));
        assert_eq!(list(&["b/test2%"]), ["(\\HasChildren) b/test2 CHILDINFO"]);
        // The subscribed inferior matches too: no CHILDINFO parent.
        assert_eq!(
            list(&["b*test7"]),
            ["(\\HasNoChildren \\Subscribed) b/test7/test7"]
        );
        assert_eq!(
            list(&["b*test8"]),
            [
                "(\\HasChildren) b/test8 CHILDINFO",
                "(\\HasNoChildren \\Subscribed) b/test8/test8"
            ]
        );
        assert_eq!(
            list(&["b/test2", "b/test2/test1"]),
            ["(\\HasNoChildren \\Subscribed) b/test2/test1"]
        );
    }

    #[test]
    fn plain_list_shows_mailboxes_and_superiors_only() {
        let boxes = vec![
            mailbox("INBOX", None),
            mailbox("a/b/c", None),
            mailbox("Sent", Some(SpecialUse::Sent)),
        ];
        let subs = vec!["gone".to_string(), "Sent".to_string()];
        let names = Names::new(&boxes, &subs, false);
        let selection = Selection {
            return_subscribed: true,
            ..Selection::default()
        };
        assert_eq!(
            lines(&names.list(selection, &matched(&names, &["*"]))),
            [
                "(\\HasNoChildren) INBOX",
                "(\\HasNoChildren \\Sent \\Subscribed) Sent",
                "(\\Noselect \\HasChildren) a",
                "(\\Noselect \\HasChildren) a/b",
                "(\\HasNoChildren) a/b/c",
            ]
        );
        let special = Selection {
            special_use: true,
            ..Selection::default()
        };
        assert_eq!(
            lines(&names.list(special, &matched(&names, &["*"]))),
            ["(\\HasNoChildren \\Sent) Sent"]
        );
    }

    #[test]
    fn lsub_marks_unsubscribed_parents_noselect() {
        // imaptest's subscribe layout.
        let boxes: Vec<Mailbox> = [
            "b",
            "b/test",
            "b/test2",
            "b/test2/test",
            "b/test3",
            "b/test3/test3",
        ]
        .iter()
        .map(|n| mailbox(n, None))
        .collect();
        let subs: Vec<String> = ["b/test", "b/test2/test", "b/test3/test3", "b/gone"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let names = Names::new(&boxes, &subs, true);
        let lsub = |p: &str| {
            names
                .lsub(&matched(&names, &[p]))
                .into_iter()
                .map(|e| format!("{} {}", e.noselect, e.name))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            lsub("b/%"),
            [
                "true b/gone",
                "false b/test",
                "true b/test2",
                "true b/test3"
            ]
        );
        assert_eq!(lsub("*test"), ["false b/test", "false b/test2/test"]);
        assert_eq!(
            lsub("b/*"),
            [
                "true b/gone",
                "false b/test",
                "false b/test2/test",
                "false b/test3/test3"
            ]
        );
    }
}
