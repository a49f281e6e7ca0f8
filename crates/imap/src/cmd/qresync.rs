//! QRESYNC (RFC 7162 §3.2): a reselecting client is told what changed and
//! what vanished since the MODSEQ it knows, in SELECT/EXAMINE (§3.2.5) and
//! UID FETCH (CHANGEDSINCE … VANISHED) (§3.2.6).
//!
//! The store keeps every mailbox's expunge log for the mailbox's life (it is
//! removed only with the mailbox), so the answer is always exact: the
//! sequence-match data a client may send to help a server that forgot is
//! accepted and not needed.

use casella_proto_imap::{QresyncParams, SequenceSet};
use casella_store::{StoreError, Uid};

use crate::cmd::uid_set;
use crate::session::Session;
use crate::view::flag_list;

impl Session {
    /// The largest UID a UID set's `*` can stand for when it names expunged
    /// messages too: the highest UID ever given in the mailbox.
    fn largest_uid_ever(&self) -> u32 {
        self.selected.as_ref().map_or(0, |sel| {
            sel.max_uid().max(sel.mailbox.uid_next.0.saturating_sub(1))
        })
    }

    /// `* VANISHED (EARLIER) uids` for the messages of `set` expunged after
    /// `since` (nothing when none were).
    pub(crate) async fn report_vanished_earlier(
        &mut self,
        set: &SequenceSet,
        since: u64,
    ) -> Result<(), StoreError> {
        let Some(id) = self.selected.as_ref().map(|s| s.id()) else {
            return Ok(());
        };
        let largest = self.largest_uid_ever();
        let mut gone: Vec<Uid> = self
            .store()
            .expunged_since(id, casella_store::ModSeq(since))
            .await?
            .into_iter()
            .filter(|u| set.contains(u.0, largest))
            .collect();
        self.vanished_earlier(&mut gone);
        Ok(())
    }

    fn vanished_earlier(&mut self, gone: &mut [Uid]) {
        if !gone.is_empty() {
            gone.sort_unstable();
            let line = format!("* VANISHED (EARLIER) {}", uid_set(gone));
            self.line(&line);
        }
    }

    /// SELECT/EXAMINE (QRESYNC (...)) — RFC 7162 §3.2.5.1: with the
    /// UIDVALIDITY the client knows, a FETCH (UID FLAGS MODSEQ) for each
    /// message changed after its MODSEQ and one VANISHED (EARLIER) for what
    /// was expunged since — both limited to the UIDs it says it knows, if it
    /// says. Another UIDVALIDITY: nothing more than a plain SELECT.
    pub(crate) async fn qresync_select(
        &mut self,
        params: &QresyncParams,
    ) -> Result<(), StoreError> {
        let Some(sel) = self.selected.as_ref() else {
            return Ok(());
        };
        if sel.mailbox.uid_validity.0 != params.uid_validity {
            return Ok(());
        }
        let largest = self.largest_uid_ever();
        let known = |u: Uid| {
            params
                .known_uids
                .as_ref()
                .is_none_or(|k| k.contains(u.0, largest))
        };
        let rev1 = !self.rev2;
        let changed: Vec<String> = sel
            .messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.modseq.0 > params.modseq && known(m.uid))
            .map(|(i, m)| {
                format!(
                    "* {} FETCH (UID {} FLAGS ({}) MODSEQ ({}))",
                    i + 1,
                    m.uid.0,
                    flag_list(&m.flags, rev1 && m.recent),
                    m.modseq.0
                )
            })
            .collect();
        let id = sel.id();
        for line in changed {
            self.line(&line);
        }
        let mut gone: Vec<Uid> = self
            .store()
            .expunged_since(id, casella_store::ModSeq(params.modseq))
            .await?
            .into_iter()
            .filter(|u| known(*u))
            .collect();
        self.vanished_earlier(&mut gone);
        Ok(())
    }
}
