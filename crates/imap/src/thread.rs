//! THREAD — RFC 5256 §3: ORDEREDSUBJECT and REFERENCES, and the thread list
//! syntax of §4.
//!
//! Owns: building threads from the keys parsed at delivery.
//! Must not: read storage or write the wire (the caller sends the text).
//! Invariant: total for any input — missing parents, duplicate Message-IDs,
//! References that loop or name the message itself all give a tree.

use std::collections::HashMap;

use crate::sort::{MessageKeys, ascii_casemap};

/// One node of a thread: a message (its position in the input) or a dummy
/// standing in for a missing parent, with its children in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadNode {
    pub message: Option<usize>,
    pub children: Vec<ThreadNode>,
}

/// ORDEREDSUBJECT: messages grouped by base subject; in each group, in sent
/// date order, the first is the parent of all the others; groups ordered by
/// the sent date of their first message (ties by sequence number).
pub fn ordered_subject(messages: &[MessageKeys<'_>]) -> Vec<ThreadNode> {
    let mut order: Vec<usize> = (0..messages.len()).collect();
    let subjects: Vec<Vec<u8>> = messages
        .iter()
        .map(|m| ascii_casemap(&m.keys.base_subject))
        .collect();
    order.sort_by(|&a, &b| {
        subjects[a]
            .cmp(&subjects[b])
            .then(messages[a].sent().cmp(&messages[b].sent()))
            .then(messages[a].seq.cmp(&messages[b].seq))
    });
    let mut threads: Vec<ThreadNode> = Vec::new();
    let mut last_subject: Option<&[u8]> = None;
    for i in order {
        let subject = subjects[i].as_slice();
        let leaf = ThreadNode {
            message: Some(i),
            children: Vec::new(),
        };
        match threads.last_mut() {
            Some(t) if last_subject == Some(subject) => t.children.push(leaf),
            _ => threads.push(leaf),
        }
        last_subject = Some(subject);
    }
    threads.sort_by_key(|t| first_date(messages, t));
    threads
}

/// The (sent date, sequence number) a thread sorts by: its message's, or for
/// a dummy its first child's.
fn first_date(messages: &[MessageKeys<'_>], node: &ThreadNode) -> (i64, u32) {
    match node.message {
        Some(i) => (messages[i].sent(), messages[i].seq),
        None => node
            .children
            .first()
            .map_or((i64::MAX, u32::MAX), |c| first_date(messages, c)),
    }
}

/// The container tree of REFERENCES while it is built: an arena.
struct Containers {
    message: Vec<Option<usize>>,
    parent: Vec<Option<usize>>,
    children: Vec<Vec<usize>>,
}

impl Containers {
    fn add(&mut self, message: Option<usize>) -> usize {
        self.message.push(message);
        self.parent.push(None);
        self.children.push(Vec::new());
        self.message.len() - 1
    }

    /// Whether `a` is `b` or one of its descendants.
    fn is_within(&self, a: usize, b: usize) -> bool {
        let mut at = Some(a);
        while let Some(n) = at {
            if n == b {
                return true;
            }
            at = self.parent[n];
        }
        false
    }

    fn unlink(&mut self, child: usize) {
        if let Some(p) = self.parent[child].take() {
            self.children[p].retain(|&c| c != child);
        }
    }

    /// Makes `parent` the parent of `child` unless that would make a loop.
    fn link(&mut self, parent: usize, child: usize) {
        if self.is_within(parent, child) {
            return;
        }
        self.parent[child] = Some(parent);
        self.children[parent].push(child);
    }
}

/// REFERENCES — RFC 5256 §3, steps 1 to 6.
pub fn references(messages: &[MessageKeys<'_>]) -> Vec<ThreadNode> {
    let mut c = Containers {
        message: Vec::new(),
        parent: Vec::new(),
        children: Vec::new(),
    };
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    // Step 1, in sequence order.
    let mut order: Vec<usize> = (0..messages.len()).collect();
    order.sort_by_key(|&i| messages[i].seq);
    for i in order {
        let k = messages[i].keys;
        // 1.A: a message without a (valid) Message-ID, or with one an earlier
        // message has, gets a container of its own.
        let own = match k.message_id.as_deref() {
            Some(id) => match by_id.get(id) {
                Some(&n) if c.message[n].is_none() => {
                    c.message[n] = Some(i);
                    n
                }
                Some(_) => c.add(Some(i)),
                None => {
                    let n = c.add(Some(i));
                    by_id.insert(id, n);
                    n
                }
            },
            None => c.add(Some(i)),
        };
        // References, else the first msg-id of In-Reply-To.
        let refs: Vec<&str> = if k.references.is_empty() {
            k.in_reply_to.as_deref().into_iter().collect()
        } else {
            k.references.iter().map(String::as_str).collect()
        };
        let mut previous: Option<usize> = None;
        for id in refs {
            let n = match by_id.get(id) {
                Some(&n) => n,
                None => {
                    let n = c.add(None);
                    by_id.insert(id, n);
                    n
                }
            };
            // Each reference the parent of the next; an existing link stays
            // (References may have been truncated).
            if let Some(p) = previous
                && c.parent[n].is_none()
            {
                c.link(p, n);
            }
            previous = Some(n);
        }
        // 1.B: the last reference becomes the parent, replacing any parent a
        // truncated References gave before; no link that would make a loop.
        c.unlink(own);
        if let Some(p) = previous {
            c.link(p, own);
        }
    }
    // Step 2: the root set.
    let roots: Vec<usize> = (0..c.message.len())
        .filter(|&n| c.parent[n].is_none())
        .collect();
    // Step 4: prune dummies.
    let mut threads = prune(&c, &roots, true);
    // Step 5: threads with the same base subject gather.
    merge_by_subject(messages, &mut threads);
    // Step 6: siblings by sent date, depth first.
    sort_by_date(messages, &mut threads);
    threads
}

/// Step 4 on one level: dummies without children go; a dummy's children take
/// its place, except at the top when it has more than one.
fn prune(c: &Containers, level: &[usize], top: bool) -> Vec<ThreadNode> {
    let mut out = Vec::new();
    for &n in level {
        let children = prune(c, &c.children[n], false);
        match c.message[n] {
            Some(_) => out.push(ThreadNode {
                message: c.message[n],
                children,
            }),
            None if children.is_empty() => {}
            None if !top || children.len() == 1 => out.extend(children),
            None => out.push(ThreadNode {
                message: None,
                children,
            }),
        }
    }
    out
}

/// The base subject of a thread: its message's, or its first child's for a
/// dummy, and whether that subject is a reply; `None` for an empty one.
fn thread_subject(messages: &[MessageKeys<'_>], node: &ThreadNode) -> Option<(Vec<u8>, bool)> {
    let i = match node.message {
        Some(i) => i,
        None => node.children.first()?.message?,
    };
    let k = messages[i].keys;
    let subject = ascii_casemap(&k.base_subject);
    (!subject.is_empty()).then_some((subject, k.subject_is_reply))
}

/// Step 5 — RFC 5256 §3 REFERENCES (5.A–5.C).
fn merge_by_subject(messages: &[MessageKeys<'_>], threads: &mut Vec<ThreadNode>) {
    // 5.A, 5.B: one thread per subject, preferring a dummy, then a thread whose
    // subject is not a reply.
    let mut table: HashMap<Vec<u8>, usize> = HashMap::new();
    for (t, node) in threads.iter().enumerate() {
        let Some((subject, reply)) = thread_subject(messages, node) else {
            continue;
        };
        match table.get(&subject) {
            None => {
                table.insert(subject, t);
            }
            Some(&held) => {
                let held_node = &threads[held];
                let held_reply = held_node
                    .message
                    .is_some_and(|i| messages[i].keys.subject_is_reply);
                let replace = (node.message.is_none() && held_node.message.is_some())
                    || (held_node.message.is_some() && held_reply && !reply);
                if replace {
                    table.insert(subject, t);
                }
            }
        }
    }
    // 5.C: every other thread of that subject joins the one in the table.
    // Threads are taken out one by one; `slots` keeps their positions stable.
    let mut slots: Vec<Option<ThreadNode>> = threads.drain(..).map(Some).collect();
    for t in 0..slots.len() {
        let Some(node) = slots[t].as_ref() else {
            continue;
        };
        let Some((subject, reply)) = thread_subject(messages, node) else {
            continue;
        };
        let Some(&held) = table.get(&subject) else {
            continue;
        };
        if held == t {
            continue;
        }
        let Some(current) = slots[t].take() else {
            continue;
        };
        let Some(target) = slots[held].as_mut() else {
            slots[t] = Some(current);
            continue;
        };
        let target_reply = target
            .message
            .is_some_and(|i| messages[i].keys.subject_is_reply);
        match (target.message, current.message) {
            // Both dummies: the children join.
            (None, None) => target.children.extend(current.children),
            // The table's is a dummy: the message joins its children.
            (None, Some(_)) => target.children.push(current),
            // A reply joins a thread whose subject is not one.
            (Some(_), Some(_)) if reply && !target_reply => target.children.push(current),
            // Otherwise both go under a new dummy, which takes the table's place.
            _ => {
                let held_node = std::mem::replace(
                    target,
                    ThreadNode {
                        message: None,
                        children: Vec::new(),
                    },
                );
                target.children = vec![held_node, current];
            }
        }
    }
    *threads = slots.into_iter().flatten().collect();
}

/// Step 6: each set of siblings by sent date (ties by sequence number), a
/// dummy by its first child once its children are sorted.
fn sort_by_date(messages: &[MessageKeys<'_>], level: &mut [ThreadNode]) {
    for node in level.iter_mut() {
        sort_by_date(messages, &mut node.children);
    }
    level.sort_by_key(|n| first_date(messages, n));
}

/// The thread list of RFC 5256 §4 (`thread-list`s one after another), with
/// `number` naming each message (its sequence number or UID).
pub fn format_threads(threads: &[ThreadNode], number: &dyn Fn(usize) -> u32) -> String {
    let mut out = String::new();
    for t in threads {
        write_list(t, number, &mut out);
    }
    out
}

/// `thread-list = "(" (thread-members / thread-nested) ")"`.
fn write_list(node: &ThreadNode, number: &dyn Fn(usize) -> u32, out: &mut String) {
    out.push('(');
    write_members(node, number, out);
    out.push(')');
}

/// `thread-members = nz-number *(SP nz-number) [SP thread-nested]`: a chain
/// of only children written flat, then the branches as nested lists.
fn write_members(node: &ThreadNode, number: &dyn Fn(usize) -> u32, out: &mut String) {
    let mut at = node;
    loop {
        match at.message {
            Some(i) => {
                out.push_str(&number(i).to_string());
                match at.children.as_slice() {
                    [] => return,
                    [only] => {
                        out.push(' ');
                        at = only;
                        continue;
                    }
                    many => {
                        out.push(' ');
                        for c in many {
                            write_list(c, number, out);
                        }
                        return;
                    }
                }
            }
            None => match at.children.as_slice() {
                [] => return,
                // A dummy with one child stands for that child.
                [only] => {
                    at = only;
                    continue;
                }
                many => {
                    for c in many {
                        write_list(c, number, out);
                    }
                    return;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use casella_store::SortKeys;

    /// A message for the tests: subject, Message-ID, References, sent date.
    struct M {
        subject: &'static str,
        id: Option<&'static str>,
        refs: &'static [&'static str],
        in_reply_to: Option<&'static str>,
        date: i64,
    }

    fn m(
        subject: &'static str,
        id: Option<&'static str>,
        refs: &'static [&'static str],
        date: i64,
    ) -> M {
        M {
            subject,
            id,
            refs,
            in_reply_to: None,
            date,
        }
    }

    fn run(ms: &[M], f: fn(&[MessageKeys<'_>]) -> Vec<ThreadNode>) -> String {
        let keys: Vec<SortKeys> = ms
            .iter()
            .map(|m| {
                let (base_subject, subject_is_reply) = casella_mime::base_subject(m.subject);
                SortKeys {
                    base_subject,
                    subject_is_reply,
                    message_id: m.id.map(str::to_string),
                    references: m.refs.iter().map(|s| s.to_string()).collect(),
                    in_reply_to: m.in_reply_to.map(str::to_string),
                    ..SortKeys::default()
                }
            })
            .collect();
        let input: Vec<MessageKeys<'_>> = ms
            .iter()
            .zip(&keys)
            .enumerate()
            .map(|(i, (m, k))| MessageKeys {
                seq: i as u32 + 1,
                internal_date: m.date,
                size: 0,
                sent_date: None,
                keys: k,
            })
            .collect();
        format_threads(&f(&input), &|i| i as u32 + 1)
    }

    #[test]
    fn references_links_chains_and_orders_by_date() {
        // RFC 5256 §4's shape: a chain, branches, and a later unrelated thread.
        let ms = [
            m("a", Some("1@x"), &[], 10),
            m("Re: a", Some("2@x"), &["1@x"], 20),
            m("b", Some("3@x"), &[], 5),
            m("Re: a", Some("4@x"), &["1@x", "2@x"], 30),
            m("Re: a", Some("5@x"), &["1@x"], 25),
        ];
        assert_eq!(run(&ms, references), "(3)(1 (2 4)(5))");
    }

    #[test]
    fn missing_parents_become_dummies_and_are_pruned() {
        // Both reply to a message not in the mailbox: a dummy root keeps them.
        let ms = [m("", None, &["gone@x"], 1), m("", None, &["gone@x"], 2)];
        assert_eq!(run(&ms, references), "((1)(2))");
        // One reply to a missing message: the dummy goes, the child is a root.
        let ms = [m("x", Some("a@x"), &["gone@x"], 1), m("y", None, &[], 2)];
        assert_eq!(run(&ms, references), "(1)(2)");
        // A dummy inside a thread: its children move up to its level.
        let ms = [
            m("a", Some("a@x"), &[], 1),
            m("", Some("c@x"), &["a@x", "b@x"], 2),
            m("", Some("d@x"), &["a@x", "b@x"], 3),
        ];
        assert_eq!(run(&ms, references), "(1 (2)(3))");
    }

    #[test]
    fn in_reply_to_counts_without_references() {
        let mut second = m("", Some("2@b"), &[], 2);
        second.in_reply_to = Some("1@b");
        let ms = [m("", Some("1@b"), &[], 1), second];
        assert_eq!(run(&ms, references), "(1 2)");
    }

    #[test]
    fn loops_in_references_are_not_linked() {
        // imaptest "thread": 2 says a → c → 2; 3 (c) says its parent is b (2),
        // which would be a loop: c loses its old parent and gets none.
        let ms = [
            m("", Some("a@b"), &[], 3),
            m("", Some("b@b"), &["a@b", "c@b"], 1),
            m("", Some("c@b"), &["b@b"], 2),
        ];
        assert_eq!(run(&ms, references), "(3 2)(1)");
        // A message that names itself.
        let ms = [m("", Some("s@x"), &["s@x"], 1)];
        assert_eq!(run(&ms, references), "(1)");
        // Two messages that each name the other as parent: the first link
        // made stands, the one closing the loop is not made.
        let ms = [
            m("", Some("p@x"), &["q@x"], 1),
            m("", Some("q@x"), &["p@x"], 2),
        ];
        assert_eq!(run(&ms, references), "(2 1)");
    }

    #[test]
    fn duplicate_message_ids_get_their_own_container() {
        let ms = [m("", Some("a@b"), &[], 1), m("", Some("a@b"), &[], 1)];
        assert_eq!(run(&ms, references), "(1)(2)");
        // imaptest thread7: the second "b" hangs off a on its own.
        let ms = [
            m("", Some("a@b"), &[], 1),
            m("", Some("b@b"), &["a@b"], 1),
            m("", Some("c@b"), &["b@b"], 1),
            m("", Some("b@b"), &["a@b"], 1),
        ];
        assert_eq!(run(&ms, references), "(1 (2 3)(4))");
    }

    #[test]
    fn subjects_merge_threads() {
        // A reply joins the thread whose subject is not a reply.
        let ms = [
            m("foo", Some("a@b"), &[], 1),
            m("Re: foo", Some("a@b"), &[], 2),
        ];
        assert_eq!(run(&ms, references), "(1 2)");
        // Neither a reply: both under a new dummy.
        let ms = [
            m("foo", None, &[], 1),
            m("FOO", None, &[], 2),
            m("bar", None, &[], 3),
        ];
        assert_eq!(run(&ms, references), "((1)(2))(3)");
        // A thread with a dummy root takes in a message of its subject.
        let ms = [
            m("Re: s", None, &["gone@x"], 2),
            m("Re: s", None, &["gone@x"], 3),
            m("s", None, &[], 1),
        ];
        assert_eq!(run(&ms, references), "((3)(1)(2))");
        // An empty subject merges nothing.
        let ms = [m("", None, &[], 1), m("Re:", None, &[], 2)];
        assert_eq!(run(&ms, references), "(1)(2)");
    }

    #[test]
    fn ordered_subject_groups_by_base_subject() {
        // imaptest thread-orderedsubject2: by date within a subject, threads
        // by the date of their first message.
        let ms = [
            m("a", None, &[], 10),
            m("b", None, &[], 9),
            m("a", None, &[], 8),
            m("b", None, &[], 7),
            m("a", None, &[], 30),
            m("b", None, &[], 29),
            m("a", None, &[], 28),
            m("b", None, &[], 27),
        ];
        assert_eq!(run(&ms, ordered_subject), "(4 (2)(8)(6))(3 (1)(7)(5))");
        let ms = [
            m("x", None, &[], 1),
            m("Re: X", None, &[], 1),
            m("y", None, &[], 1),
        ];
        assert_eq!(run(&ms, ordered_subject), "(1 2)(3)");
    }

    #[test]
    fn thread_list_syntax() {
        let leaf = |i| ThreadNode {
            message: Some(i),
            children: vec![],
        };
        let node = |i, children| ThreadNode {
            message: Some(i),
            children,
        };
        // RFC 5256 §4: "(2)(3 6 (4 23)(44 7 96))".
        let t = vec![
            leaf(2),
            node(
                3,
                vec![node(
                    6,
                    vec![
                        node(4, vec![leaf(23)]),
                        node(44, vec![node(7, vec![leaf(96)])]),
                    ],
                )],
            ),
        ];
        assert_eq!(
            format_threads(&t, &|i| i as u32),
            "(2)(3 6 (4 23)(44 7 96))"
        );
        let dummy = ThreadNode {
            message: None,
            children: vec![leaf(3), leaf(5)],
        };
        assert_eq!(format_threads(&[dummy], &|i| i as u32), "((3)(5))");
        assert_eq!(format_threads(&[], &|i| i as u32), "");
    }
}
