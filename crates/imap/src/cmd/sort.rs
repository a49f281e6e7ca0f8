//! SORT and UID SORT — RFC 5256 §3 (keys DISPLAYFROM/DISPLAYTO: RFC 5957);
//! ESORT's RETURN options on SORT — RFC 5267 §3; THREAD and UID THREAD —
//! RFC 5256 §3. Valid in: Selected.
//!
//! The messages are found as SEARCH finds them; their order comes from the
//! keys parsed at delivery (`MailStore::sort_fields`), never from message
//! bytes.

use std::sync::Arc;

use casella_proto_imap::{SearchKey, SearchReturn, SortCriterion, ThreadAlgorithm};
use casella_store::{SearchFields, SortKeys, Uid};

use super::context::UpdateRequest;
use super::search::mentions_modseq;
use crate::session::Session;
use crate::sort::{MessageKeys, sort_order};
use crate::thread::{format_threads, ordered_subject, references};

/// Sort keys are read from the store this many messages at a time.
const CHUNK: usize = 5_000;

/// RFC 5256 §3: SORT and THREAD support at least US-ASCII and UTF-8.
fn charset_supported(charset: &str) -> bool {
    charset.eq_ignore_ascii_case("UTF-8") || charset.eq_ignore_ascii_case("US-ASCII")
}

const BADCHARSET: &str = "NO [BADCHARSET (UTF-8 US-ASCII)] Only UTF-8 and US-ASCII are supported";

/// The messages found, with what sorting and threading compare.
struct Found {
    /// Positions in the view.
    positions: Vec<usize>,
    fields: Vec<Option<Arc<SearchFields>>>,
}

impl Found {
    fn keys<'a>(&'a self, session: &'a Session, none: &'a SortKeys) -> Vec<MessageKeys<'a>> {
        let Some(sel) = session.selected.as_ref() else {
            return Vec::new();
        };
        self.positions
            .iter()
            .zip(&self.fields)
            .map(|(&i, f)| {
                let m = &sel.messages[i];
                MessageKeys {
                    seq: i as u32 + 1,
                    internal_date: m.internal_date,
                    size: m.size,
                    sent_date: f.as_ref().and_then(|f| f.sent_date),
                    // An expunged message whose metadata is gone sorts as
                    // having no fields at all.
                    keys: f.as_ref().and_then(|f| f.sort.as_ref()).unwrap_or(none),
                }
            })
            .collect()
    }
}

impl Session {
    /// The messages matching `criteria` and their stored sort keys.
    async fn found_with_keys(&self, criteria: &SearchKey) -> Result<Found, String> {
        let positions = self.matching(criteria).await;
        self.with_keys(positions).await
    }

    /// `positions` in the order `keys` give (RFC 5256 §3).
    pub(crate) async fn sort_positions(
        &self,
        positions: Vec<usize>,
        keys: &[SortCriterion],
    ) -> Result<Vec<usize>, String> {
        let found = self.with_keys(positions).await?;
        let none = SortKeys::default();
        let input = found.keys(self, &none);
        Ok(sort_order(&input, keys)
            .into_iter()
            .map(|k| found.positions[k])
            .collect())
    }

    /// These messages with their stored sort keys.
    async fn with_keys(&self, positions: Vec<usize>) -> Result<Found, String> {
        let Some(sel) = self.selected.as_ref() else {
            return Err("BAD No mailbox selected".into());
        };
        let store = self.store();
        let mut fields = Vec::with_capacity(positions.len());
        for chunk in positions.chunks(CHUNK) {
            let blobs: Vec<_> = chunk
                .iter()
                .map(|&i| sel.messages[i].blob.clone())
                .collect();
            let got = store
                .sort_fields(&blobs)
                .await
                .map_err(|e| super::store_error(&e))?;
            fields.extend(got);
        }
        Ok(Found { positions, fields })
    }

    /// The number a message is known by in this command's answer.
    fn number_of(&self, position: usize, uid: bool) -> u32 {
        if !uid {
            return position as u32 + 1;
        }
        self.selected
            .as_ref()
            .and_then(|s| s.messages.get(position))
            .map_or(0, |m| m.uid.0)
    }

    pub(crate) async fn cmd_sort(
        &mut self,
        tag: &str,
        uid: bool,
        returns: Option<Vec<SearchReturn>>,
        keys: Vec<SortCriterion>,
        charset: String,
        criteria: SearchKey,
    ) {
        let verb = if uid { "UID SORT" } else { "SORT" };
        let Some((returns, updating)) = self.context_returns(tag, returns) else {
            return;
        };
        if !charset_supported(&charset) {
            if returns
                .as_ref()
                .is_some_and(|r| r.contains(&SearchReturn::Save))
            {
                // RFC 5182 §2.1: a failed SAVE leaves an empty result.
                self.saved_search.clear();
            }
            self.tagged(tag, BADCHARSET);
            return;
        }
        // RFC 7162 §3.1.5: MODSEQ enables CONDSTORE, and the answer gives the
        // highest MODSEQ of the messages found.
        let by_modseq = mentions_modseq(&criteria);
        if by_modseq {
            self.enable_condstore();
        }
        let positions = self.matching(&criteria).await;
        let order = match self.sort_positions(positions, &keys).await {
            Ok(order) => order,
            Err(reply) => {
                self.tagged(tag, &reply);
                return;
            }
        };
        let highest = if by_modseq {
            self.selected.as_ref().and_then(|sel| {
                order
                    .iter()
                    .filter_map(|&i| sel.messages.get(i).map(|m| m.modseq.0))
                    .max()
            })
        } else {
            None
        };
        let numbers: Vec<u32> = order.iter().map(|&i| self.number_of(i, uid)).collect();
        match returns {
            None => {
                let mut line = String::from("* SORT");
                for n in &numbers {
                    line.push(' ');
                    line.push_str(&n.to_string());
                }
                if let Some(m) = highest {
                    line.push_str(&format!(" (MODSEQ {m})"));
                }
                self.line(&line);
            }
            Some(mut opts) => {
                if opts.is_empty() {
                    opts.push(SearchReturn::All);
                }
                if opts.contains(&SearchReturn::Save) {
                    self.save_sorted(&opts, &order);
                }
                let line = esearch_line(tag, uid, &opts, &numbers, highest);
                if let Some(line) = line {
                    self.line(&line);
                }
                if updating {
                    let request = UpdateRequest {
                        tag,
                        uid,
                        criteria: &criteria,
                        sort: Some(&keys),
                    };
                    let members = self.uids_at(&order);
                    self.start_context(request, &opts, members);
                }
            }
        }
        self.finish(tag, &format!("OK {verb} completed"), uid).await;
    }

    /// SEARCHRES with SORT (RFC 5182 §2.4): the UIDs found are saved, in UID
    /// order; with only MIN and/or MAX, only the first and/or last in sort
    /// order.
    fn save_sorted(&mut self, opts: &[SearchReturn], order: &[usize]) {
        let only_min_max = !opts.contains(&SearchReturn::All)
            && !opts.contains(&SearchReturn::Count)
            && (opts.contains(&SearchReturn::Min) || opts.contains(&SearchReturn::Max));
        let picked: Vec<usize> = if only_min_max {
            let mut v = Vec::new();
            if opts.contains(&SearchReturn::Min) {
                v.extend(order.first());
            }
            if opts.contains(&SearchReturn::Max) {
                v.extend(order.last());
            }
            v
        } else {
            order.to_vec()
        };
        let mut saved: Vec<u32> = picked.iter().map(|&i| self.number_of(i, true)).collect();
        saved.sort_unstable();
        saved.dedup();
        self.saved_search = saved;
    }

    pub(crate) async fn cmd_thread(
        &mut self,
        tag: &str,
        uid: bool,
        algorithm: ThreadAlgorithm,
        charset: String,
        criteria: SearchKey,
    ) {
        let verb = if uid { "UID THREAD" } else { "THREAD" };
        if !charset_supported(&charset) {
            self.tagged(tag, BADCHARSET);
            return;
        }
        if mentions_modseq(&criteria) {
            self.enable_condstore();
        }
        let found = match self.found_with_keys(&criteria).await {
            Ok(f) => f,
            Err(reply) => {
                self.tagged(tag, &reply);
                return;
            }
        };
        let none = SortKeys::default();
        let text = {
            let input = found.keys(self, &none);
            let threads = match algorithm {
                ThreadAlgorithm::OrderedSubject => ordered_subject(&input),
                ThreadAlgorithm::References => references(&input),
            };
            format_threads(&threads, &|k| self.number_of(found.positions[k], uid))
        };
        // RFC 5256 §4: `thread-data = "THREAD" [SP 1*thread-list]`.
        if text.is_empty() {
            self.line("* THREAD");
        } else {
            self.line(&format!("* THREAD {text}"));
        }
        self.finish(tag, &format!("OK {verb} completed"), uid).await;
    }
}

/// The ESEARCH answer to SEARCH RETURN (RFC 4731) and SORT RETURN (RFC 5267
/// §3): MIN and MAX are the first and last message in `numbers`' order (for
/// SORT, sort order), ALL the messages as a sequence set (ascending runs
/// joined, order kept), PARTIAL those at the positions asked for, `NIL` when
/// there are none (RFC 5267 §4.4, RFC 9394 §3.1). UPDATE adds nothing here
/// (RFC 5267 §4.3: alone it gives only the tag). `None` when only SAVE was
/// asked for.
pub(crate) fn esearch_line(
    tag: &str,
    uid: bool,
    opts: &[SearchReturn],
    numbers: &[u32],
    highest: Option<u64>,
) -> Option<String> {
    let shown: Vec<&SearchReturn> = opts.iter().filter(|o| **o != SearchReturn::Save).collect();
    if shown.is_empty() {
        return None;
    }
    let mut line = format!("* ESEARCH (TAG \"{tag}\")");
    if uid {
        line.push_str(" UID");
    }
    for o in shown {
        match o {
            SearchReturn::Min => {
                if let Some(n) = numbers.first() {
                    line.push_str(&format!(" MIN {n}"));
                }
            }
            SearchReturn::Max => {
                if let Some(n) = numbers.last() {
                    line.push_str(&format!(" MAX {n}"));
                }
            }
            SearchReturn::Count => line.push_str(&format!(" COUNT {}", numbers.len())),
            SearchReturn::All => {
                if !numbers.is_empty() {
                    let set: Vec<Uid> = numbers.iter().map(|&n| Uid(n)).collect();
                    line.push_str(&format!(" ALL {}", super::uid_set(&set)));
                }
            }
            SearchReturn::Partial(range) => {
                let set: Vec<Uid> = numbers[range.indices(numbers.len())]
                    .iter()
                    .map(|&n| Uid(n))
                    .collect();
                let shown = if set.is_empty() {
                    "NIL".to_string()
                } else {
                    super::uid_set(&set)
                };
                line.push_str(&format!(" PARTIAL ({range} {shown})"));
            }
            SearchReturn::Save | SearchReturn::Update | SearchReturn::Context => {}
        }
    }
    if let Some(m) = highest {
        line.push_str(&format!(" MODSEQ {m}"));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esort_answers_in_sort_order() {
        use SearchReturn as R;
        let n = [5, 3, 4, 2, 1];
        assert_eq!(
            esearch_line("t", false, &[R::Min, R::Max, R::Count, R::All], &n, None).as_deref(),
            Some("* ESEARCH (TAG \"t\") MIN 5 MAX 1 COUNT 5 ALL 5,3:4,2,1")
        );
        assert_eq!(
            esearch_line("t", true, &[R::Count], &[], None).as_deref(),
            Some("* ESEARCH (TAG \"t\") UID COUNT 0")
        );
        assert_eq!(
            esearch_line("t", false, &[R::Min, R::All], &[], None).as_deref(),
            Some("* ESEARCH (TAG \"t\")")
        );
        assert_eq!(esearch_line("t", false, &[R::Save], &n, None), None);
    }

    #[test]
    fn partial_results() {
        use SearchReturn as R;
        use casella_proto_imap::PartialRange;
        let range = |from_end, low, high| {
            R::Partial(PartialRange {
                from_end,
                low,
                high,
            })
        };
        // imaptest's sort-partial: (REVERSE ARRIVAL) of five messages.
        let n = [5, 3, 4, 2, 1];
        assert_eq!(
            esearch_line("t", false, &[range(false, 2, 4)], &n, None).as_deref(),
            Some("* ESEARCH (TAG \"t\") PARTIAL (2:4 3:4,2)")
        );
        assert_eq!(
            esearch_line("t", true, &[R::Count, range(true, 1, 2)], &n, None).as_deref(),
            Some("* ESEARCH (TAG \"t\") UID COUNT 5 PARTIAL (-1:-2 2,1)")
        );
        assert_eq!(
            esearch_line("t", false, &[range(false, 6, 6)], &n, None).as_deref(),
            Some("* ESEARCH (TAG \"t\") PARTIAL (6:6 NIL)")
        );
        assert_eq!(
            esearch_line("t", false, &[R::Update], &n, None).as_deref(),
            Some("* ESEARCH (TAG \"t\")")
        );
    }
}
