//! SELECT, EXAMINE (RFC 9051 §6.3.2–3), CLOSE (§6.4.1), UNSELECT (§6.4.2),
//! EXPUNGE (§6.4.3) and UID EXPUNGE (§6.4.9, RFC 4315).

use casella_proto_imap::{SelectParams, SequenceSet};
use casella_store::{Flag, MessageRef};

use crate::cmd::store_error;
use crate::session::Session;
use crate::view::Selected;

impl Session {
    pub(crate) async fn cmd_select(
        &mut self,
        tag: &str,
        name: &str,
        params: SelectParams,
        read_only: bool,
    ) {
        if params.qresync.is_some() && !self.qresync {
            // RFC 7162 §3.2.5: QRESYNC must be enabled first.
            self.tagged(tag, "BAD QRESYNC parameter requires ENABLE QRESYNC first");
            return;
        }
        // RFC 9051 §6.3.2: a failed SELECT leaves no mailbox selected; a
        // successful one replaces the previous selection without expunging it,
        // and a rev2 client is told with OK [CLOSED], as is a client that
        // enabled QRESYNC (RFC 7162 §3.2.11).
        if self.selected.take().is_some() && (self.rev2 || self.qresync) {
            self.line("* OK [CLOSED] Previous mailbox closed");
        }
        self.saved_search.clear();
        let Some(name) = self.mailbox_arg(tag, name) else {
            return;
        };
        let Some(mb) = self.find_mailbox(tag, &name).await else {
            return;
        };
        let store = self.store();
        // Drain the feed: the view starts from the store's current state.
        if let Some(auth) = self.auth.as_mut() {
            while auth.changes.try_recv().is_ok() {}
        }
        let view = match Selected::open(&*store, mb, read_only).await {
            Ok(mut v) => {
                v.vanished = self.qresync;
                v
            }
            Err(e) => {
                let reply = store_error(&e);
                self.tagged(tag, &reply);
                return;
            }
        };
        let flags = view.flags_line();
        self.line(&flags);
        if read_only {
            self.line("* OK [PERMANENTFLAGS ()] Read-only mailbox");
        } else {
            self.line("* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted");
        }
        self.line(&format!("* {} EXISTS", view.exists()));
        if !self.rev2 {
            // RFC 3501 §6.3.1: RECENT, and the first unseen message.
            let recent = view.messages.iter().filter(|m| m.recent).count();
            self.line(&format!("* {recent} RECENT"));
            if let Some(i) = view
                .messages
                .iter()
                .position(|m| !m.flags.contains(&Flag::Seen))
            {
                self.line(&format!("* OK [UNSEEN {}] First unseen message", i + 1));
            }
        }
        self.line(&format!(
            "* OK [UIDVALIDITY {}] UIDs valid",
            view.mailbox.uid_validity.0
        ));
        self.line(&format!(
            "* OK [UIDNEXT {}] Predicted next UID",
            view.mailbox.uid_next.0
        ));
        // RFC 7162 §3.1.2.1: every SELECT/EXAMINE says the mailbox's
        // HIGHESTMODSEQ (the store keeps MODSEQs for every mailbox).
        self.line(&format!(
            "* OK [HIGHESTMODSEQ {}] Highest",
            view.mailbox.highest_modseq.0
        ));
        if params.condstore {
            // RFC 7162 §3.1.8: SELECT (CONDSTORE) enables CONDSTORE.
            self.condstore = true;
        }
        if self.rev2 {
            // RFC 9051 §6.3.2: the mailbox's LIST response, attributes accurate.
            let prefix = format!("{}/", view.mailbox.name);
            let children = match store.list_mailboxes(view.mailbox.account).await {
                Ok(all) => all.iter().any(|m| m.name.starts_with(&prefix)),
                Err(_) => false,
            };
            let mut attrs = vec![if children {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            }];
            if let Some(role) = view.mailbox.special_use {
                attrs.push(role.attribute());
            }
            let mut out = format!("* LIST ({}) \"/\" ", attrs.join(" ")).into_bytes();
            self.encode_name(&mut out, &view.mailbox.name);
            self.out.response(&out);
        }
        let (code, verb) = if read_only {
            ("READ-ONLY", "EXAMINE")
        } else {
            ("READ-WRITE", "SELECT")
        };
        self.selected = Some(view);
        if let Some(q) = &params.qresync
            && let Err(e) = self.qresync_select(q).await
        {
            self.selected = None;
            let reply = store_error(&e);
            self.tagged(tag, &reply);
            return;
        }
        self.tagged(tag, &format!("OK [{code}] {verb} completed"));
    }

    /// CLOSE expunges \Deleted messages silently (unless read-only); UNSELECT does not.
    pub(crate) async fn cmd_close(&mut self, tag: &str, expunge: bool) {
        let Some(sel) = self.selected.take() else {
            return;
        };
        self.saved_search.clear();
        if expunge && !sel.read_only {
            let refs: Vec<MessageRef> = sel
                .messages
                .iter()
                .filter(|m| m.flags.contains(&Flag::Deleted) && !m.expunged)
                .map(|m| MessageRef {
                    mailbox: sel.id(),
                    uid: m.uid,
                })
                .collect();
            if !refs.is_empty() {
                let account = sel.mailbox.account;
                if let Err(e) = self.store().expunge(account, &refs).await {
                    let reply = store_error(&e);
                    self.tagged(tag, &reply);
                    return;
                }
            }
        }
        let verb = if expunge { "CLOSE" } else { "UNSELECT" };
        self.tagged(tag, &format!("OK {verb} completed"));
    }

    /// EXPUNGE / UID EXPUNGE: removes \Deleted messages (of `set` for UID EXPUNGE).
    pub(crate) async fn cmd_expunge(&mut self, tag: &str, set: Option<SequenceSet>) {
        let in_set = match &set {
            Some(s) => match self.resolve(s, true) {
                Ok(v) => Some(v.into_iter().map(|(_, u)| u).collect::<Vec<_>>()),
                Err(e) => {
                    self.tagged(tag, &format!("BAD {e}"));
                    return;
                }
            },
            None => None,
        };
        let Some(sel) = self.selected.as_ref() else {
            return;
        };
        if sel.read_only {
            self.tagged(tag, "NO [READ-ONLY] The mailbox is read-only");
            return;
        }
        let refs: Vec<MessageRef> = sel
            .messages
            .iter()
            .filter(|m| m.flags.contains(&Flag::Deleted) && !m.expunged)
            .filter(|m| in_set.as_ref().is_none_or(|s| s.contains(&m.uid)))
            .map(|m| MessageRef {
                mailbox: sel.id(),
                uid: m.uid,
            })
            .collect();
        let account = sel.mailbox.account;
        if !refs.is_empty() {
            match self.store().expunge(account, &refs).await {
                Ok(removed) => {
                    let uids: Vec<_> = removed.iter().map(|r| r.uid).collect();
                    if let Some(sel) = self.selected.as_mut() {
                        let lines = sel.remove_uids(&uids);
                        for l in lines {
                            self.line(&l);
                        }
                    }
                }
                Err(e) => {
                    let reply = store_error(&e);
                    self.tagged(tag, &reply);
                    return;
                }
            }
        }
        let verb = if set.is_some() {
            "UID EXPUNGE"
        } else {
            "EXPUNGE"
        };
        self.sync_selected(true).await;
        // With CONDSTORE on, the tagged OK says the MODSEQ the client is now
        // up to (RFC 7162 §3.2.10's example; what it has been told of, after
        // the sync above).
        let highest = self
            .selected
            .as_ref()
            .filter(|_| self.condstore)
            .map(|sel| format!("[HIGHESTMODSEQ {}] ", sel.synced.0))
            .unwrap_or_default();
        self.tagged(tag, &format!("OK {highest}{verb} completed"));
    }
}
