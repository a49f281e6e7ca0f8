//! STORE and UID STORE — RFC 9051 §6.4.6.

use casella_proto_imap::{SequenceSet, StoreAction};
use casella_store::{Flag, FlagOp, FlagSet};

use crate::cmd::store_error;
use crate::session::Session;
use crate::view::flag_list;

impl Session {
    pub(crate) async fn cmd_store(
        &mut self,
        tag: &str,
        uid: bool,
        set: SequenceSet,
        action: StoreAction,
        silent: bool,
        flags: Vec<String>,
    ) {
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
        let updates = if uids.is_empty() {
            Vec::new()
        } else {
            match self.store().store_flags(mailbox, &uids, op, &wanted).await {
                Ok(u) => u,
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
                    self.out.raw().extend_from_slice(line.as_bytes());
                    self.out.raw().extend_from_slice(b"\r\n");
                }
            }
        }
        if !silent {
            // The new flags of every message in the set (as Dovecot does, also for
            // those whose flags did not change).
            let mut lines = Vec::new();
            for (seq, u) in &targets {
                let Some(m) = sel.by_seq(*seq) else { continue };
                if m.expunged {
                    continue;
                }
                let flags = flag_list(&m.flags, rev1 && m.recent);
                if uid {
                    lines.push(format!("* {seq} FETCH (UID {} FLAGS ({flags}))", u.0));
                } else {
                    lines.push(format!("* {seq} FETCH (FLAGS ({flags}))"));
                }
            }
            for l in lines {
                self.line(&l);
            }
        }
        self.finish(tag, &format!("OK {verb} completed"), uid).await;
    }
}
