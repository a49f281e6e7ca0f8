//! STORE and UID STORE — RFC 9051 §6.4.6, with UNCHANGEDSINCE (RFC 7162
//! §3.1.3, the conditional STORE).

use casella_proto_imap::{SequenceSet, StoreAction};
use casella_store::{Flag, FlagChanges, FlagOp, FlagSet, ModSeq, Uid};

use crate::cmd::{store_error, uid_set};
use crate::session::Session;
use crate::view::flag_list;

/// What a STORE asks for besides its set and flags.
pub(crate) struct StoreHow {
    pub action: StoreAction,
    pub silent: bool,
    /// `(UNCHANGEDSINCE n)`: change only messages not changed since MODSEQ n.
    pub unchanged_since: Option<u64>,
}

impl Session {
    pub(crate) async fn cmd_store(
        &mut self,
        tag: &str,
        uid: bool,
        set: SequenceSet,
        how: StoreHow,
        flags: Vec<String>,
    ) {
        let StoreHow {
            action,
            silent,
            unchanged_since,
        } = how;
        let unchanged_since = unchanged_since.map(ModSeq);
        if unchanged_since.is_some() {
            // RFC 7162 §3.1: a CONDSTORE enabling command.
            self.enable_condstore();
        }
        let condstore = self.condstore;
        let verb = if uid { "UID STORE" } else { "STORE" };
        let targets = match self.resolve(&set, uid) {
            Ok(t) => t,
            Err(e) => {
                self.tagged(tag, &format!("BAD {e}"));
                return;
            }
        };
        let mut wanted = FlagSet::new();
        for f in &flags {
            // \Recent cannot be stored (RFC 3501 §2.3.2); ignore it like Dovecot.
            if f.eq_ignore_ascii_case("\\Recent") {
                continue;
            }
            match Flag::parse(f) {
                Some(flag) => {
                    wanted.insert(flag);
                }
                None => {
                    self.tagged(tag, &format!("BAD Invalid flag {f}"));
                    return;
                }
            }
        }
        let Some(sel) = self.selected.as_ref() else {
            return;
        };
        if sel.read_only {
            self.tagged(tag, "NO [READ-ONLY] The mailbox is read-only");
            return;
        }
        let mailbox = sel.id();
        let uids: Vec<_> = targets
            .iter()
            .filter(|(seq, _)| sel.by_seq(*seq).is_some_and(|m| !m.expunged))
            .map(|(_, u)| *u)
            .collect();
        let op = match action {
            StoreAction::Replace => FlagOp::Replace,
            StoreAction::Add => FlagOp::Add,
            StoreAction::Remove => FlagOp::Remove,
        };
        let FlagChanges { updates, modified } = if uids.is_empty() {
            FlagChanges::default()
        } else {
            match self
                .store()
                .store_flags_if(mailbox, &uids, op, &wanted, unchanged_since)
                .await
            {
                Ok(changes) => changes,
                Err(e) => {
                    let reply = store_error(&e);
                    self.tagged(tag, &reply);
                    return;
                }
            }
        };
        let rev1 = !self.rev2;
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        for u in &updates {
            if let Ok(i) = sel.messages.binary_search_by_key(&u.uid, |m| m.uid) {
                sel.messages[i].flags = u.flags.clone();
                sel.messages[i].modseq = u.modseq;
            }
            for f in &u.flags {
                if let Flag::Keyword(k) = f
                    && sel.keywords.insert(k.clone())
                {
                    // A new keyword: announce it (RFC 9051 §7.3.5).
                    let line = sel.flags_line();
                    self.out.line(&line);
                }
            }
        }
        // With UNCHANGEDSINCE every message the STORE succeeded for is
        // reported with its MODSEQ, also with .SILENT (RFC 7162 §3.1.3);
        // those it failed for are left out and named in MODIFIED.
        let conditional = unchanged_since.is_some();
        // Both ascending: looked up by binary search (a STORE 1:* on a large
        // mailbox must not cost the square of its size).
        let mut updated: Vec<Uid> = updates.iter().map(|u| u.uid).collect();
        updated.sort_unstable();
        let mut lines = Vec::new();
        let mut failed = Vec::new();
        for (seq, u) in &targets {
            let Some(m) = sel.by_seq(*seq) else { continue };
            if m.expunged {
                continue;
            }
            if modified.binary_search(u).is_ok() {
                failed.push(if uid { *u } else { Uid(*seq) });
                continue;
            }
            // With CONDSTORE on, a message whose flags changed is reported
            // with its MODSEQ even with .SILENT (RFC 7162 §3.1.3).
            let report_modseq = conditional || (condstore && updated.binary_search(u).is_ok());
            if silent && !report_modseq {
                continue;
            }
            // The new flags of every message in the set (as Dovecot does,
            // also for those whose flags did not change).
            let mut items = Vec::new();
            if uid {
                items.push(format!("UID {}", u.0));
            }
            if !silent {
                items.push(format!("FLAGS ({})", flag_list(&m.flags, rev1 && m.recent)));
            }
            if report_modseq || condstore {
                items.push(format!("MODSEQ ({})", m.modseq.0));
            }
            lines.push(format!("* {seq} FETCH ({})", items.join(" ")));
        }
        for l in lines {
            self.line(&l);
        }
        let status = if failed.is_empty() {
            format!("OK {verb} completed")
        } else {
            failed.sort_unstable();
            format!(
                "OK [MODIFIED {}] Conditional STORE failed",
                uid_set(&failed)
            )
        };
        self.finish(tag, &status, uid).await;
    }
}
