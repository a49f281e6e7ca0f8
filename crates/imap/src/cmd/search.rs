//! SEARCH and UID SEARCH — RFC 9051 §6.4.4; ESEARCH (RFC 4731), SEARCHRES (RFC 5182).

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use casella_proto_imap::{SearchKey, SearchReturn};
use casella_store::{BlobId, TextField, Uid};

use super::context::UpdateRequest;
use crate::search::{SearchInput, SearchScope, matches, needs_parsed, needs_text};
use crate::session::Session;

impl Session {
    pub(crate) async fn cmd_search(
        &mut self,
        tag: &str,
        uid: bool,
        returns: Option<Vec<SearchReturn>>,
        charset: Option<String>,
        criteria: SearchKey,
    ) {
        let verb = if uid { "UID SEARCH" } else { "SEARCH" };
        let Some((returns, updating)) = self.context_returns(tag, returns) else {
            return;
        };
        // RFC 7162 §3.1.5: a MODSEQ criterion enables CONDSTORE, and the
        // answer then says the highest MODSEQ of the messages found.
        let by_modseq = mentions_modseq(&criteria);
        if by_modseq {
            self.enable_condstore();
        }
        let saving = returns
            .as_ref()
            .is_some_and(|r| r.contains(&SearchReturn::Save));
        if let Some(cs) = &charset
            && !cs.eq_ignore_ascii_case("UTF-8")
            && !cs.eq_ignore_ascii_case("US-ASCII")
        {
            if saving {
                self.saved_search.clear();
            }
            self.tagged(
                tag,
                "NO [BADCHARSET (UTF-8 US-ASCII)] Only UTF-8 and US-ASCII are supported",
            );
            return;
        }
        let rev1 = !self.rev2;
        let found = self.matching(&criteria).await;
        let Some(sel) = self.selected.as_ref() else {
            return;
        };
        let hits: Vec<(u32, Uid)> = found
            .iter()
            .map(|&i| (i as u32 + 1, sel.messages[i].uid))
            .collect();
        let numbers: Vec<u32> = hits
            .iter()
            .map(|(s, u)| if uid { u.0 } else { *s })
            .collect();
        let modseq_of = |hits: &mut dyn Iterator<Item = &(u32, Uid)>| -> Option<u64> {
            hits.filter_map(|(s, _)| sel.by_seq(*s).map(|m| m.modseq.0))
                .max()
        };
        // RFC 7162 §3.1.5: the highest MODSEQ of the messages found; when
        // ESEARCH returns only MIN and/or MAX, of the messages returned (as
        // Dovecot answers and imaptest's esearch-condstore expects).
        let highest = by_modseq.then(|| modseq_of(&mut hits.iter())).flatten();
        let only_min_max = returns.as_ref().is_some_and(|r| {
            !r.is_empty()
                && !r.contains(&SearchReturn::All)
                && !r.contains(&SearchReturn::Count)
                && (r.contains(&SearchReturn::Min) || r.contains(&SearchReturn::Max))
        });
        let highest_returned = if by_modseq && only_min_max {
            let opts = returns.as_deref().unwrap_or_default();
            let mut picked = Vec::new();
            if opts.contains(&SearchReturn::Min) {
                picked.extend(hits.first());
            }
            if opts.contains(&SearchReturn::Max) {
                picked.extend(hits.last());
            }
            modseq_of(&mut picked.into_iter())
        } else {
            highest
        };
        match returns {
            None if rev1 => {
                let mut line = String::from("* SEARCH");
                for n in &numbers {
                    line.push(' ');
                    line.push_str(&n.to_string());
                }
                if let Some(m) = highest {
                    line.push_str(&format!(" (MODSEQ {m})"));
                }
                self.line(&line);
            }
            returns => {
                let mut opts = returns.unwrap_or_default();
                if opts.is_empty() {
                    // RFC 4731 §3.1: RETURN () means ALL.
                    opts.push(SearchReturn::All);
                }
                if opts.contains(&SearchReturn::Save) {
                    // RFC 5182 §2.1: with only MIN and/or MAX, only those are saved.
                    let only_min_max = !opts.contains(&SearchReturn::All)
                        && !opts.contains(&SearchReturn::Count)
                        && (opts.contains(&SearchReturn::Min) || opts.contains(&SearchReturn::Max));
                    let mut saved: Vec<u32> = if only_min_max {
                        let mut v = Vec::new();
                        if opts.contains(&SearchReturn::Min)
                            && let Some(f) = hits.first()
                        {
                            v.push(f.1.0);
                        }
                        if opts.contains(&SearchReturn::Max)
                            && let Some(l) = hits.last()
                        {
                            v.push(l.1.0);
                        }
                        v
                    } else {
                        hits.iter().map(|(_, u)| u.0).collect()
                    };
                    saved.sort_unstable();
                    saved.dedup();
                    self.saved_search = saved;
                }
                // RFC 7162 §3.1.5 with RFC 4731: MODSEQ after the results.
                if let Some(line) =
                    super::sort::esearch_line(tag, uid, &opts, &numbers, highest_returned)
                {
                    self.line(&line);
                }
                if updating {
                    let request = UpdateRequest {
                        tag,
                        uid,
                        criteria: &criteria,
                        sort: None,
                    };
                    let members = hits.iter().map(|&(_, u)| u).collect();
                    self.start_context(request, &opts, members);
                }
            }
        }
        self.finish(tag, &format!("OK {verb} completed"), uid).await;
    }

    /// The messages of the selected mailbox that match `criteria`, as positions
    /// in the view (ascending) — RFC 9051 §6.4.4. Shared by SEARCH, SORT and
    /// THREAD.
    pub(crate) async fn matching(&self, criteria: &SearchKey) -> Vec<usize> {
        self.matching_in(criteria, None).await
    }

    /// As `matching`, among `only` these positions (ascending) when given:
    /// how an updating context looks again at the messages that changed.
    pub(crate) async fn matching_in(
        &self,
        criteria: &SearchKey,
        only: Option<&[usize]>,
    ) -> Vec<usize> {
        let store = self.store();
        let rev1 = !self.rev2;
        let Some(sel) = self.selected.as_ref() else {
            return Vec::new();
        };
        let scope = SearchScope {
            max_seq: sel.exists(),
            max_uid: sel.max_uid(),
            saved: &self.saved_search,
            now: casella_store::now_unix(),
        };
        // Text the match must contain narrows the messages to look at, when the
        // store's text index can say which contain it. Messages it has not read
        // yet are looked at too, against every key.
        let mut candidates: Option<BlobSet> = None;
        let mut unindexed = BlobSet::default();
        let mut answered: Vec<(TextField, String)> = Vec::new();
        for (field, needle) in required_text(criteria) {
            let worthwhile = self
                .config
                .search_index_min_messages
                .unwrap_or_else(|| index_worthwhile(field));
            if only.map_or(sel.messages.len(), <[usize]>::len) < worthwhile {
                continue;
            }
            match store.text_candidates(sel.id(), field, needle).await {
                Ok(Some(found)) => {
                    answered.push((field, needle.to_string()));
                    unindexed.extend(found.unindexed);
                    candidates = Some(match candidates {
                        None => found.matched.into_iter().collect(),
                        Some(c) => found
                            .matched
                            .into_iter()
                            .filter(|b| c.contains(b))
                            .collect(),
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "text index not usable; searching every message")
                }
            }
        }
        // The index's answer for a key is exact (substring, case-insensitive), so
        // for the messages it has read, the keys it answered need not be checked
        // again, nor the messages read for them.
        let reduced = without_answered(criteria.clone(), &answered);
        let full = criteria;
        let any_unindexed = candidates.is_some() && !unindexed.is_empty();
        let want_parsed = needs_parsed(&reduced) || (any_unindexed && needs_parsed(full));
        let want_text = needs_text(&reduced) || (any_unindexed && needs_text(full));
        let considered: Box<dyn Iterator<Item = usize>> = match only {
            Some(positions) => Box::new(
                positions
                    .iter()
                    .copied()
                    .filter(|&i| i < sel.messages.len()),
            ),
            None => Box::new(0..sel.messages.len()),
        };
        let targets: Vec<usize> = considered
            .filter(|&i| {
                let blob = &sel.messages[i].blob;
                candidates
                    .as_ref()
                    .is_none_or(|c| c.contains(blob) || unindexed.contains(blob))
            })
            .collect();
        let mut hits: Vec<usize> = Vec::new();
        const CHUNK: usize = 512;
        let mut parsed_chunk: Vec<Option<std::sync::Arc<casella_store::SearchFields>>> = Vec::new();
        for (n, &i) in targets.iter().enumerate() {
            let m = &sel.messages[i];
            if want_parsed && n % CHUNK == 0 {
                let blobs: Vec<_> = targets[n..(n + CHUNK).min(targets.len())]
                    .iter()
                    .map(|&j| sel.messages[j].blob.clone())
                    .collect();
                parsed_chunk = store
                    .search_fields(&blobs, want_text)
                    .await
                    .unwrap_or_default();
                parsed_chunk.reverse();
            }
            let parsed = if want_parsed {
                match parsed_chunk.pop().flatten() {
                    Some(p) => Some(p),
                    // An expunged message's metadata may be gone: it matches nothing.
                    None => continue,
                }
            } else {
                None
            };
            let input = SearchInput {
                seq: i as u32 + 1,
                uid: m.uid.0,
                flags: &m.flags,
                recent: m.recent && rev1,
                size: m.size,
                internal_date: m.internal_date,
                save_date: m.save_date,
                modseq: m.modseq.0,
                fields: parsed.as_deref(),
            };
            let keys = if unindexed.contains(&m.blob) {
                full
            } else {
                &reduced
            };
            if matches(keys, &input, &scope) {
                hits.push(i);
            }
        }
        hits
    }
}

/// The mailbox size from which asking the text index beats looking at every
/// message: header fields come from an in-memory cache (a few µs a message),
/// body text is read from the store (tens of µs a message), while the index
/// costs about a millisecond a query plus its matches in every mailbox.
fn index_worthwhile(field: TextField) -> usize {
    match field {
        TextField::Body | TextField::Text => 1_000,
        _ => 5_000,
    }
}

/// Blob ids are hex SHA-256, uniform already: a multiply-rotate over their
/// bytes hashes them several times faster than SipHash, which matters when
/// SEARCH looks up every message of a 100,000-message mailbox.
#[derive(Default)]
struct BlobHasher(u64);

impl Hasher for BlobHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type BlobSet = HashSet<BlobId, BuildHasherDefault<BlobHasher>>;

/// The RETURN options without CONTEXT, which is a hint only (RFC 5267
/// §4.2): `(CONTEXT)` alone means ALL, as `()` does (RFC 4731 §3.1).
pub(crate) fn without_hints(returns: Option<Vec<SearchReturn>>) -> Option<Vec<SearchReturn>> {
    returns.map(|r| {
        let r: Vec<SearchReturn> = r
            .into_iter()
            .filter(|o| *o != SearchReturn::Context)
            .collect();
        if r.is_empty() {
            vec![SearchReturn::All]
        } else {
            r
        }
    })
}

/// Whether the criteria name MODSEQ anywhere (RFC 7162 §3.1.5).
pub(crate) fn mentions_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::ModSeq(_) => true,
        SearchKey::Not(k) => mentions_modseq(k),
        SearchKey::Or(a, b) => mentions_modseq(a) || mentions_modseq(b),
        SearchKey::And(keys) => keys.iter().any(mentions_modseq),
        _ => false,
    }
}

/// The text keys every match must satisfy: the key itself, or the members of a
/// top-level AND (nested ANDs too). OR and NOT give none.
pub fn required_text(key: &SearchKey) -> Vec<(TextField, &str)> {
    match key {
        SearchKey::And(keys) => keys.iter().flat_map(required_text).collect(),
        k => text_key(k).into_iter().collect(),
    }
}

fn text_key(key: &SearchKey) -> Option<(TextField, &str)> {
    Some(match key {
        SearchKey::From(s) => (TextField::From, s.as_str()),
        SearchKey::To(s) => (TextField::To, s.as_str()),
        SearchKey::Cc(s) => (TextField::Cc, s.as_str()),
        SearchKey::Bcc(s) => (TextField::Bcc, s.as_str()),
        SearchKey::Subject(s) => (TextField::Subject, s.as_str()),
        SearchKey::Body(s) => (TextField::Body, s.as_str()),
        SearchKey::Text(s) => (TextField::Text, s.as_str()),
        _ => return None,
    })
}

/// `key` with the text keys the index answered (those `required_text` found)
/// replaced by ALL.
pub fn without_answered(key: SearchKey, answered: &[(TextField, String)]) -> SearchKey {
    match key {
        SearchKey::And(keys) => SearchKey::And(
            keys.into_iter()
                .map(|k| without_answered(k, answered))
                .collect(),
        ),
        k => match text_key(&k) {
            Some((field, needle)) if answered.iter().any(|(f, n)| *f == field && n == needle) => {
                SearchKey::All
            }
            _ => k,
        },
    }
}
