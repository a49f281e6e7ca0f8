//! COPY (RFC 9051 §6.4.7) and MOVE (§6.4.8, RFC 6851), with COPYUID (RFC 4315 §3).

use casella_proto_imap::SequenceSet;
use casella_store::{AccountId, MailboxId, MessageRef, StoreResult, Uid};

use crate::cmd::{store_error, uid_set};
use crate::session::Session;

impl Session {
    pub(crate) async fn cmd_copy(
        &mut self,
        tag: &str,
        uid: bool,
        set: SequenceSet,
        name: &str,
        is_move: bool,
    ) {
        let verb = match (uid, is_move) {
            (false, false) => "COPY",
            (true, false) => "UID COPY",
            (false, true) => "MOVE",
            (true, true) => "UID MOVE",
        };
        let targets = match self.resolve(&set, uid) {
            Ok(t) => t,
            Err(e) => {
                self.tagged(tag, &format!("BAD {e}"));
                return;
            }
        };
        let Some(name) = self.mailbox_arg(tag, name) else {
            return;
        };
        let store = self.store();
        let Some(sel) = self.selected.as_ref() else {
            return;
        };
        if is_move && sel.read_only {
            self.tagged(tag, "NO [READ-ONLY] The mailbox is read-only");
            return;
        }
        let Some(dest) = self.destination(tag, &name).await else {
            return;
        };
        let Some(sel) = self.selected.as_ref() else {
            return;
        };
        let source = sel.id();
        let account = sel.mailbox.account;
        // Ghosts (expunged elsewhere) cannot be copied any more.
        let copied: Vec<(Uid, u32)> = targets
            .iter()
            .filter_map(|(seq, u)| {
                sel.by_seq(*seq)
                    .filter(|m| !m.expunged)
                    .map(|m| (*u, m.size))
            })
            .collect();
        let uids: Vec<Uid> = copied.iter().map(|(u, _)| *u).collect();
        if uids.is_empty() {
            // RFC 9051 §6.4.7: nothing to do is still success.
            self.finish(tag, &format!("OK {verb} completed"), !is_move || uid)
                .await;
            return;
        }
        // A COPY adds to the account (RFC 9208 §4.3); a MOVE within it does not.
        let bytes: u64 = copied.iter().map(|(_, size)| u64::from(*size)).sum();
        if !is_move
            && self
                .check_quota(tag, bytes, uids.len() as u64)
                .await
                .is_err()
        {
            return;
        }
        let result = if is_move && dest.id == source {
            self.move_within(account, source, &uids).await
        } else if is_move {
            store.move_messages(source, &uids, dest.id).await
        } else {
            store.copy(source, &uids, dest.id).await
        };
        let pairs = match result {
            Ok(p) => p,
            Err(e) => {
                let reply = store_error(&e);
                self.tagged(tag, &reply);
                return;
            }
        };
        let src: Vec<_> = pairs.iter().map(|(s, _)| *s).collect();
        let dst: Vec<_> = pairs.iter().map(|(_, d)| *d).collect();
        let copyuid = if pairs.is_empty() {
            String::new()
        } else {
            format!(
                "[COPYUID {} {} {}] ",
                dest.uid_validity.0,
                uid_set(&src),
                uid_set(&dst)
            )
        };
        if is_move {
            // RFC 6851 §4.3: COPYUID in an untagged OK before the EXPUNGEs.
            if !copyuid.is_empty() {
                self.line(&format!("* OK {copyuid}Moved"));
            }
            if let Some(sel) = self.selected.as_mut() {
                for l in sel.remove_uids(&src) {
                    self.out.line(&l);
                }
            }
            self.finish(tag, &format!("OK {verb} completed"), true)
                .await;
        } else {
            self.finish(tag, &format!("OK {copyuid}{verb} completed"), true)
                .await;
        }
    }

    /// MOVE into the selected mailbox itself (RFC 6851 §3.3 puts no bar on
    /// it; Dovecot performs it): the messages get new UIDs and the old ones
    /// are expunged, as a COPY followed by an expunge of exactly the copied
    /// messages. Two commits, not one: should the expunge fail, the copies
    /// stay and the originals too (nothing is lost), and the client is told NO.
    async fn move_within(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        uids: &[Uid],
    ) -> StoreResult<Vec<(Uid, Uid)>> {
        let store = self.store();
        let pairs = store.copy(mailbox, uids, mailbox).await?;
        let refs: Vec<MessageRef> = pairs
            .iter()
            .map(|&(uid, _)| MessageRef { mailbox, uid })
            .collect();
        store.expunge(account, &refs).await?;
        Ok(pairs)
    }
}
