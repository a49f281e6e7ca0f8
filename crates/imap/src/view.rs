//! The selected mailbox as this session sees it — RFC 9051 §2.3.1.2 sequence
//! numbers, and how changes made elsewhere are folded in (§7.5.1: EXISTS any time,
//! EXPUNGE only between commands other than FETCH/STORE/SEARCH).

use std::collections::{BTreeSet, HashSet};

use crate::cmd::uid_set;
use crate::context::{Context, update_line};
use casella_store::{
    BlobId, Flag, FlagSet, MailStore, Mailbox, MailboxId, MessageSummary, ModSeq, StoreError,
    StoreResult, Uid,
};

/// One message of the view.
#[derive(Debug, Clone)]
pub struct ViewMessage {
    pub uid: Uid,
    pub flags: FlagSet,
    pub modseq: ModSeq,
    pub size: u32,
    pub internal_date: i64,
    /// When it was saved to this mailbox (RFC 8514); 0 when unknown.
    pub save_date: i64,
    pub blob: BlobId,
    /// \Recent in this session (IMAP4rev1).
    pub recent: bool,
    /// Expunged elsewhere, not yet reported with EXPUNGE (a ghost keeps its number).
    pub expunged: bool,
}

impl ViewMessage {
    fn new(m: MessageSummary, recent: bool) -> ViewMessage {
        ViewMessage {
            recent,
            uid: m.uid,
            flags: m.flags,
            modseq: m.modseq,
            size: m.size,
            internal_date: m.internal_date,
            save_date: m.save_date,
            blob: m.blob,
            expunged: false,
        }
    }
}

pub struct Selected {
    pub mailbox: Mailbox,
    pub read_only: bool,
    /// Ascending UIDs; index + 1 is the sequence number.
    pub messages: Vec<ViewMessage>,
    /// Everything up to this MODSEQ is reflected in `messages`.
    pub synced: ModSeq,
    /// Keywords announced in FLAGS so far.
    pub keywords: BTreeSet<String>,
    /// Expunges are reported as `VANISHED` UID sets, not `EXPUNGE` numbers
    /// (QRESYNC enabled, RFC 7162 §3.2.10).
    pub vanished: bool,
    /// Search and sort results kept up to date (RFC 5267 §4.3); they end
    /// with the selection.
    pub contexts: Vec<Context>,
    /// Messages added or changed since the contexts were last brought up to
    /// date (kept only while there are contexts).
    pub touched: BTreeSet<Uid>,
}

/// What a sync found, as untagged lines to send.
#[derive(Default)]
pub struct SyncReport {
    pub lines: Vec<String>,
    /// The mailbox no longer exists.
    pub gone: bool,
}

impl Selected {
    pub fn id(&self) -> MailboxId {
        self.mailbox.id
    }

    pub fn exists(&self) -> u32 {
        self.messages.len() as u32
    }

    pub fn max_uid(&self) -> u32 {
        self.messages.last().map(|m| m.uid.0).unwrap_or(0)
    }

    /// Sequence number (1-based) of a UID in the view.
    pub fn seq_of(&self, uid: Uid) -> Option<u32> {
        self.messages
            .binary_search_by_key(&uid, |m| m.uid)
            .ok()
            .map(|i| i as u32 + 1)
    }

    pub fn by_seq(&self, seq: u32) -> Option<&ViewMessage> {
        self.messages.get((seq as usize).checked_sub(1)?)
    }

    /// Opens the view: lists messages and claims \Recent (unless read-only).
    pub async fn open(
        store: &dyn MailStore,
        mailbox: Mailbox,
        read_only: bool,
    ) -> StoreResult<Selected> {
        let synced = mailbox.highest_modseq;
        let list = store.list_messages(mailbox.id).await?;
        let max = list.last().map(|m| m.uid).unwrap_or(Uid(0));
        // Claiming is a write: skip it when every message was claimed already.
        let recent_above = if read_only || max <= mailbox.recent_watermark {
            mailbox.recent_watermark
        } else {
            store.claim_recent(mailbox.id, max).await?
        };
        let mut keywords = BTreeSet::new();
        let messages = list
            .into_iter()
            .map(|m| {
                collect_keywords(&m.flags, &mut keywords);
                let recent = m.uid > recent_above;
                ViewMessage::new(m, recent)
            })
            .collect();
        Ok(Selected {
            mailbox,
            read_only,
            messages,
            synced,
            keywords,
            vanished: false,
            contexts: Vec::new(),
            touched: BTreeSet::new(),
        })
    }

    pub fn flags_line(&self) -> String {
        let mut s = String::from("\\Answered \\Flagged \\Deleted \\Seen \\Draft");
        for k in &self.keywords {
            s.push(' ');
            s.push_str(k);
        }
        format!("* FLAGS ({s})")
    }

    /// Brings the view up to date with the store. New messages are always
    /// reported (EXISTS, and RECENT for rev1); flag changes as FETCH FLAGS; expunges
    /// only when `allow_expunge`, otherwise they stay as ghosts until then.
    pub async fn sync(
        &mut self,
        store: &dyn MailStore,
        allow_expunge: bool,
        rev1: bool,
        condstore: bool,
    ) -> StoreResult<SyncReport> {
        let mut report = SyncReport::default();
        let current = match store.mailbox(self.id()).await {
            Ok(m) => m,
            Err(StoreError::NotFound(_)) => {
                report.gone = true;
                return Ok(report);
            }
            Err(e) => return Err(e),
        };
        if current.highest_modseq > self.synced {
            // Read the expunges first: anything committed before `current` was read
            // is in both lists; later changes come again next time (idempotent).
            let expunged = store.expunged_since(self.id(), self.synced).await?;
            let changed = store.changed_since(self.id(), self.synced).await?;
            for uid in expunged {
                if let Ok(i) = self.messages.binary_search_by_key(&uid, |m| m.uid) {
                    self.messages[i].expunged = true;
                }
            }
            let old_max = Uid(self.max_uid());
            let mut new_keywords = false;
            let mut added = Vec::new();
            for m in changed {
                match self.messages.binary_search_by_key(&m.uid, |v| v.uid) {
                    Ok(i) => {
                        if !self.contexts.is_empty() {
                            self.touched.insert(m.uid);
                        }
                        let v = &mut self.messages[i];
                        v.modseq = v.modseq.max(m.modseq);
                        if v.flags != m.flags && !v.expunged {
                            new_keywords |= collect_keywords(&m.flags, &mut self.keywords);
                            v.flags = m.flags;
                            let seq = i + 1;
                            let recent = rev1 && v.recent;
                            // RFC 7162 §3.1.4: with CONDSTORE on, every
                            // untagged FETCH carries the message's MODSEQ.
                            let modseq = if condstore {
                                format!(" MODSEQ ({})", v.modseq.0)
                            } else {
                                String::new()
                            };
                            report.lines.push(format!(
                                "* {seq} FETCH (FLAGS ({}){modseq})",
                                flag_list(&v.flags, recent)
                            ));
                        }
                    }
                    Err(_) if m.uid > old_max => added.push(m),
                    // An older UID we do not have was expunged already.
                    Err(_) => {}
                }
            }
            if new_keywords
                || added
                    .iter()
                    .any(|m| has_new_keyword(&m.flags, &self.keywords))
            {
                for m in &added {
                    collect_keywords(&m.flags, &mut self.keywords);
                }
                report.lines.insert(0, self.flags_line());
            }
            if !added.is_empty() {
                let max = added.last().map(|m| m.uid).unwrap_or(old_max);
                let recent_above = if self.read_only || max <= current.recent_watermark {
                    current.recent_watermark
                } else {
                    store.claim_recent(self.id(), max).await?
                };
                for m in added {
                    if !self.contexts.is_empty() {
                        self.touched.insert(m.uid);
                    }
                    let recent = m.uid > recent_above;
                    self.messages.push(ViewMessage::new(m, recent));
                }
                report.lines.push(format!("* {} EXISTS", self.exists()));
                if rev1 {
                    let recent = self.messages.iter().filter(|m| m.recent).count();
                    report.lines.push(format!("* {recent} RECENT"));
                }
            }
            self.synced = current.highest_modseq;
            self.mailbox = current;
        }
        if allow_expunge {
            report.lines.extend(self.report_expunges());
        }
        Ok(report)
    }

    /// EXPUNGE lines for every ghost, removing them. Numbers are given as each
    /// removal leaves them (RFC 9051 §7.5.1: each EXPUNGE renumbers the rest).
    /// With QRESYNC on, one `VANISHED` line of their UIDs instead (RFC 7162
    /// §3.2.10).
    pub fn report_expunges(&mut self) -> Vec<String> {
        let mut lines = self.remove_from_contexts();
        if self.vanished {
            let gone: Vec<Uid> = self.ghosts().collect();
            if gone.is_empty() {
                return lines;
            }
            self.messages.retain(|m| !m.expunged);
            lines.push(format!("* VANISHED {}", uid_set(&gone)));
            return lines;
        }
        let mut i = 0;
        while i < self.messages.len() {
            if self.messages[i].expunged {
                lines.push(format!("* {} EXPUNGE", i + 1));
                self.messages.remove(i);
            } else {
                i += 1;
            }
        }
        lines
    }

    /// The UIDs of messages expunged elsewhere and not yet reported.
    fn ghosts(&self) -> impl Iterator<Item = Uid> + '_ {
        self.messages.iter().filter(|m| m.expunged).map(|m| m.uid)
    }

    /// The REMOVEFROM updates of the contexts holding messages about to be
    /// reported expunged, numbered as the client knows them before the
    /// EXPUNGE lines (RFC 5267 §4.3.4). With VANISHED, a context of message
    /// numbers drops them silently: the client learns only UIDs.
    fn remove_from_contexts(&mut self) -> Vec<String> {
        if self.contexts.is_empty() {
            return Vec::new();
        }
        let gone: HashSet<Uid> = self.ghosts().collect();
        if gone.is_empty() {
            return Vec::new();
        }
        let mut lines = Vec::new();
        for i in 0..self.contexts.len() {
            let change = self.contexts[i].remove_expunged(&gone);
            let context = &self.contexts[i];
            let number = |u: Uid| -> Option<u32> {
                if context.uid {
                    Some(u.0)
                } else if self.vanished {
                    None
                } else {
                    self.seq_of(u)
                }
            };
            lines.extend(update_line(&context.tag, context.uid, &change, &number));
        }
        for uid in &gone {
            self.touched.remove(uid);
        }
        lines
    }

    /// Removes messages this session expunged itself, returning EXPUNGE lines.
    pub fn remove_uids(&mut self, uids: &[Uid]) -> Vec<String> {
        for uid in uids {
            if let Ok(i) = self.messages.binary_search_by_key(uid, |m| m.uid) {
                self.messages[i].expunged = true;
            }
        }
        self.report_expunges()
    }
}

/// Adds the keywords of `flags` to `known`; true if any was new.
fn collect_keywords(flags: &FlagSet, known: &mut BTreeSet<String>) -> bool {
    let mut new = false;
    for f in flags {
        if let Flag::Keyword(k) = f {
            new |= known.insert(k.clone());
        }
    }
    new
}

fn has_new_keyword(flags: &FlagSet, known: &BTreeSet<String>) -> bool {
    flags
        .iter()
        .any(|f| matches!(f, Flag::Keyword(k) if !known.contains(k)))
}

/// `\Seen \Flagged $Label` — with `\Recent` first when asked (rev1).
pub fn flag_list(flags: &FlagSet, recent: bool) -> String {
    let mut s = String::new();
    if recent {
        s.push_str("\\Recent");
    }
    for f in flags {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(f.as_str());
    }
    s
}
