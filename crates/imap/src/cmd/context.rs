//! CONTEXT=SEARCH and CONTEXT=SORT on the session's side — RFC 5267 §4.3:
//! a SEARCH or SORT with RETURN (UPDATE) starts a context, CANCELUPDATE
//! ends it, and after every change to the selected mailbox each context's
//! result is brought up to date and the difference sent as ADDTO and
//! REMOVEFROM (`crate::context` writes it). Only the messages that changed
//! are looked at again; a SORT context is re-sorted from stored keys.

use std::collections::HashSet;

use casella_proto_imap::{SearchKey, SearchReturn, SortCriterion};
use casella_store::Uid;

use super::search::without_hints;
use crate::context::{Context, MAX_CONTEXTS, pin_numbers, update_line};
use crate::session::Session;

/// What a SEARCH or SORT asked of its result, as far as contexts go.
pub(crate) struct UpdateRequest<'a> {
    pub tag: &'a str,
    pub uid: bool,
    pub criteria: &'a SearchKey,
    pub sort: Option<&'a [SortCriterion]>,
}

impl Session {
    /// The RETURN options of a SEARCH or SORT without the CONTEXT hint, and
    /// whether they ask for UPDATE; `None` when the command was answered
    /// BAD: RFC 5267 §4.3 asks a new UPDATE to use a tag no other context
    /// uses.
    pub(crate) fn context_returns(
        &mut self,
        tag: &str,
        returns: Option<Vec<SearchReturn>>,
    ) -> Option<(Option<Vec<SearchReturn>>, bool)> {
        let returns = without_hints(returns);
        let updating = returns
            .as_ref()
            .is_some_and(|r| r.contains(&SearchReturn::Update));
        let in_use = self
            .selected
            .as_ref()
            .is_some_and(|s| s.contexts.iter().any(|c| c.tag == tag));
        if updating && in_use {
            self.tagged(tag, "BAD This tag names an updating search already");
            return None;
        }
        Some((returns, updating))
    }

    /// Starts a context whose result is `members` (UIDs, ascending for
    /// SEARCH, in sort order for SORT), or says with `NO [NOUPDATE]` why it
    /// will not be kept (RFC 5267 §4.3.1).
    pub(crate) fn start_context(
        &mut self,
        request: UpdateRequest<'_>,
        opts: &[SearchReturn],
        members: Vec<Uid>,
    ) {
        let tag = request.tag;
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        let refusal = if opts.iter().any(|o| matches!(o, SearchReturn::Partial(_))) {
            Some("Updates are not kept for PARTIAL results")
        } else if sel.contexts.len() >= MAX_CONTEXTS {
            Some("Too many updating searches; CANCELUPDATE one first")
        } else {
            None
        };
        if let Some(why) = refusal {
            self.line(&format!("* NO [NOUPDATE \"{tag}\"] {why}"));
            return;
        }
        let largest = sel.exists();
        let uid_of = |n: u32| sel.by_seq(n).map(|m| m.uid.0);
        let criteria = pin_numbers(
            request.criteria.clone(),
            largest,
            &uid_of,
            &self.saved_search,
        );
        sel.contexts.push(Context {
            tag: tag.to_string(),
            uid: request.uid,
            criteria,
            sort: request.sort.map(<[SortCriterion]>::to_vec),
            members,
        });
    }

    /// CANCELUPDATE — RFC 5267 §4.3.5: ends the contexts the tags name; when
    /// one names none, nothing is ended (NO).
    pub(crate) async fn cmd_cancel_update(&mut self, tag: &str, tags: &[String]) {
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        if let Some(unknown) = tags
            .iter()
            .find(|t| !sel.contexts.iter().any(|c| &c.tag == *t))
        {
            let reply = format!("NO No updating search has the tag \"{unknown}\"");
            self.tagged(tag, &reply);
            return;
        }
        sel.contexts.retain(|c| !tags.contains(&c.tag));
        if sel.contexts.is_empty() {
            sel.touched.clear();
        }
        self.finish(tag, "OK CANCELUPDATE completed", true).await;
    }

    /// Brings every context up to date with the messages added or changed
    /// since last time (expunged ones left in `Selected::report_expunges`),
    /// sending an ESEARCH for each whose result changed (RFC 5267 §4.3.3).
    pub(crate) async fn update_contexts(&mut self) {
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        if sel.touched.is_empty() {
            return;
        }
        let touched = std::mem::take(&mut sel.touched);
        let mut contexts = std::mem::take(&mut sel.contexts);
        let positions: Vec<usize> = touched
            .iter()
            .filter_map(|u| sel.messages.binary_search_by_key(u, |m| m.uid).ok())
            .filter(|&i| !sel.messages[i].expunged)
            .collect();
        for context in &mut contexts {
            let hits = self.matching_in(&context.criteria, Some(&positions)).await;
            let Some(sel) = self.selected.as_ref() else {
                return;
            };
            let hit_uids: HashSet<Uid> = hits.iter().map(|&i| sel.messages[i].uid).collect();
            let mut members: Vec<Uid> = context
                .members
                .iter()
                .filter(|u| !touched.contains(u))
                .copied()
                .chain(hit_uids)
                .collect();
            match &context.sort {
                None => members.sort_unstable(),
                Some(keys) => {
                    let in_view: Vec<usize> = members
                        .iter()
                        .filter_map(|u| sel.messages.binary_search_by_key(u, |m| m.uid).ok())
                        .collect();
                    match self.sort_positions(in_view, keys).await {
                        Ok(order) => members = self.uids_at(&order),
                        Err(why) => {
                            tracing::warn!(reply = %why, "re-sorting an updating SORT failed");
                            continue;
                        }
                    }
                }
            }
            let change = context.replace(members);
            let Some(sel) = self.selected.as_ref() else {
                return;
            };
            let number = |u: Uid| {
                if context.uid {
                    Some(u.0)
                } else {
                    sel.seq_of(u)
                }
            };
            if let Some(line) = update_line(&context.tag, context.uid, &change, &number) {
                self.line(&line);
            }
        }
        if let Some(sel) = self.selected.as_mut() {
            sel.contexts = contexts;
        }
    }

    /// The UIDs of these positions of the view, in the same order.
    pub(crate) fn uids_at(&self, positions: &[usize]) -> Vec<Uid> {
        let Some(sel) = self.selected.as_ref() else {
            return Vec::new();
        };
        positions
            .iter()
            .filter_map(|&i| sel.messages.get(i).map(|m| m.uid))
            .collect()
    }
}
