//! The maildrop of a logged-in POP3 session: the messages it serves and their
//! UIDLs, RETR and TOP (byte-stuffed, read ahead in order), and the UPDATE
//! state's removal at QUIT (RFC 1939 §6).

use std::collections::HashMap;
use std::sync::Arc;

use casella_mime::Presentation;
use casella_net::Slot;
use casella_store::{
    Account, AccountId, BlobId, Flag, FlagOp, FlagSet, MailStore, MailboxId, MaildropLock,
    MessageRef, POP3_DELETED_KEYWORD, PopDeleteAction, SpecialUse, StoreError, Uid,
};

use crate::SortOrder;
use crate::session::Session;

pub(crate) struct Maildrop {
    pub(crate) account: Account,
    pub(crate) lock: MaildropLock,
    /// Where this session's writes go: through its lock's fence when the lock
    /// can be lost (a shared database), so a session that lost it cannot write.
    pub(crate) store: Arc<dyn MailStore>,
    pub(crate) _user_slot: Slot<AccountId>,
    pub(crate) messages: Vec<PopMessage>,
    /// What the client is shown of each message.
    pub(crate) presentation: Presentation,
    /// Messages read ahead of the client's RETR/TOP (index, bytes), in order.
    pub(crate) ahead: std::collections::VecDeque<(usize, Vec<u8>)>,
}

pub(crate) struct PopMessage {
    pub(crate) mailbox: MailboxId,
    pub(crate) uid: Uid,
    pub(crate) size: u32,
    pub(crate) blob: BlobId,
    pub(crate) uidl: String,
    pub(crate) deleted: bool,
}

impl Session {
    /// The messages POP3 serves: the account's chosen folders (INBOX by default), each
    /// in ascending UID order. UIDLs are `<uidvalidity><uid>` in hex (as Dovecot's
    /// default), stable across sessions and restarts and unique across folders.
    pub(crate) async fn open_maildrop(
        &self,
        account: &Account,
        presentation: Presentation,
    ) -> Result<Vec<PopMessage>, StoreError> {
        let mut messages = self.folder_messages(account).await?;
        // Exchange's EnableExactRFC822Size: sizes of the messages as shown.
        if self.config.exact_rfc822_size && !presentation.is_identity() {
            for m in &mut messages {
                let raw = self.store().read_blob(&m.blob).await?;
                if let Some(shown) = presentation.apply(&raw, &casella_mime::parse(&raw).body) {
                    m.size = shown.len().min(u32::MAX as usize) as u32;
                }
            }
        }
        if self.config.sort_order == SortOrder::Descending {
            messages.reverse();
        }
        Ok(messages)
    }

    pub(crate) async fn folder_messages(
        &self,
        account: &Account,
    ) -> Result<Vec<PopMessage>, StoreError> {
        let mut messages = Vec::new();
        for name in &account.settings.pop.folders {
            let Some(mailbox) = self.store().mailbox_by_name(account.id, name).await? else {
                continue;
            };
            let hidden = Flag::Keyword(POP3_DELETED_KEYWORD.to_string());
            for m in self.store().list_messages(mailbox.id).await? {
                if m.flags.contains(&hidden) {
                    continue;
                }
                messages.push(PopMessage {
                    mailbox: mailbox.id,
                    uid: m.uid,
                    size: m.size,
                    blob: m.blob,
                    uidl: format!("{:08x}{:08x}", mailbox.uid_validity.0, m.uid.0),
                    deleted: false,
                });
            }
        }
        Ok(messages)
    }

    /// RETR (whole message) and TOP (header and `lines` body lines), byte-stuffed
    /// (RFC 1939 §3).
    pub(crate) async fn retrieve(&mut self, drop: &mut Maildrop, n: u32, lines: Option<u32>) {
        let (blob, size, mailbox, uid) = match message(drop, n) {
            Ok(m) => (m.blob.clone(), m.size, m.mailbox, m.uid),
            Err(e) => {
                self.reply(e);
                return;
            }
        };
        let mut raw = match self.read_message(drop, n as usize - 1, &blob).await {
            Ok(raw) => raw,
            Err(e) => {
                tracing::error!(error = %e, "reading message failed");
                self.reply("-ERR [SYS/TEMP] The message could not be read, try again later");
                return;
            }
        };
        let mut size = size;
        if !drop.presentation.is_identity()
            && let Some(shown) = drop
                .presentation
                .apply(&raw, &casella_mime::parse(&raw).body)
        {
            raw = shown;
            size = raw.len().min(u32::MAX as usize) as u32;
        }
        let content = match lines {
            None => &raw[..],
            Some(l) => top(&raw, l),
        };
        match lines {
            None => self.reply(&format!("+OK {size} octets")),
            Some(_) => self.reply("+OK Top of message follows"),
        }
        let out = self.out.raw();
        stuff_into(content, out);
        out.extend_from_slice(b".\r\n");
        if lines.is_none() && drop.account.settings.pop.mark_read {
            let seen: FlagSet = [Flag::Seen].into_iter().collect();
            if let Err(e) = drop
                .store
                .store_flags(mailbox, &[uid], FlagOp::Add, &seen)
                .await
            {
                tracing::warn!(error = %e, "marking a retrieved message as read failed");
            }
        }
    }

    /// The bytes of message `index` (whose blob is `blob`). Clients download
    /// in order, so a miss reads this and the next few undeleted messages in
    /// one store trip (at most `AHEAD_COUNT`, and `AHEAD_BYTES` beyond the
    /// first) and keeps the rest for the next commands.
    pub(crate) async fn read_message(
        &self,
        drop: &mut Maildrop,
        index: usize,
        blob: &BlobId,
    ) -> Result<Vec<u8>, casella_store::StoreError> {
        while let Some((i, _)) = drop.ahead.front() {
            if *i >= index {
                break;
            }
            drop.ahead.pop_front();
        }
        if let Some((i, _)) = drop.ahead.front()
            && *i == index
            && let Some((_, raw)) = drop.ahead.pop_front()
        {
            return Ok(raw);
        }
        drop.ahead.clear();
        let mut indexes = vec![index];
        let mut blobs = vec![blob.clone()];
        let mut bytes = 0u64;
        for (i, m) in drop.messages.iter().enumerate().skip(index + 1) {
            if blobs.len() >= AHEAD_COUNT || bytes + u64::from(m.size) > AHEAD_BYTES {
                break;
            }
            if !m.deleted {
                bytes += u64::from(m.size);
                indexes.push(i);
                blobs.push(m.blob.clone());
            }
        }
        if blobs.len() == 1 {
            return self.store().read_blob(blob).await;
        }
        let mut read = self.store().read_blobs(&blobs).await?.into_iter();
        let first = read.next().flatten();
        for (i, raw) in indexes.into_iter().skip(1).zip(read) {
            match raw {
                Some(raw) => drop.ahead.push_back((i, raw)),
                None => break,
            }
        }
        match first {
            Some(raw) => Ok(raw),
            // Say why, as a single read would.
            None => self.store().read_blob(blob).await,
        }
    }

    /// The UPDATE state (RFC 1939 §6): remove what DELE marked, all or nothing.
    pub(crate) async fn update(&mut self, drop: &mut Maildrop) {
        let deleted: Vec<MessageRef> = drop
            .messages
            .iter()
            .filter(|m| m.deleted)
            .map(|m| MessageRef {
                mailbox: m.mailbox,
                uid: m.uid,
            })
            .collect();
        if deleted.is_empty() {
            self.reply("+OK casella POP3 server signing off");
            return;
        }
        // Through the lock's fence: refused (InUse) if another session has the
        // maildrop by now.
        let store = &*drop.store;
        let result = match drop.account.settings.pop.delete_action {
            PopDeleteAction::Expunge => store.expunge(drop.account.id, &deleted).await.map(|_| ()),
            PopDeleteAction::MoveToTrash => {
                self.move_to_trash(store, &drop.account, &deleted).await
            }
            PopDeleteAction::HideFromPop => self.hide_from_pop(store, &deleted).await,
        };
        match result {
            Ok(()) => {
                let n = deleted.len();
                tracing::info!(protocol = "pop3", user = %drop.account.address, deleted = n, "update");
                self.reply(&format!(
                    "+OK casella POP3 server signing off ({n} messages deleted)"
                ));
            }
            Err(e @ StoreError::InUse(_)) => {
                tracing::error!(error = %e, user = %drop.account.address, "POP3 update refused: maildrop lock lost");
                self.reply(
                    "-ERR [IN-USE] This session lost the maildrop lock to another session; \
                     no messages were deleted",
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "POP3 update failed");
                self.reply("-ERR [SYS/TEMP] Deleted messages could not be removed; none were");
            }
        }
    }

    /// Marks the messages so POP3 no longer lists them; IMAP still shows them.
    pub(crate) async fn hide_from_pop(
        &self,
        store: &dyn MailStore,
        refs: &[MessageRef],
    ) -> Result<(), StoreError> {
        let keyword: FlagSet = [Flag::Keyword(POP3_DELETED_KEYWORD.to_string())]
            .into_iter()
            .collect();
        let mut by_mailbox: Vec<(MailboxId, Vec<Uid>)> = Vec::new();
        for r in refs {
            match by_mailbox.iter_mut().find(|(m, _)| *m == r.mailbox) {
                Some((_, uids)) => uids.push(r.uid),
                None => by_mailbox.push((r.mailbox, vec![r.uid])),
            }
        }
        for (mailbox, uids) in by_mailbox {
            store
                .store_flags(mailbox, &uids, FlagOp::Add, &keyword)
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn move_to_trash(
        &self,
        store: &dyn MailStore,
        account: &Account,
        refs: &[MessageRef],
    ) -> Result<(), StoreError> {
        let boxes = store.list_mailboxes(account.id).await?;
        let Some(trash) = boxes
            .iter()
            .find(|m| m.special_use == Some(SpecialUse::Trash))
        else {
            return store.expunge(account.id, refs).await.map(|_| ());
        };
        let mut by_box: HashMap<MailboxId, Vec<Uid>> = HashMap::new();
        for r in refs.iter().filter(|r| r.mailbox != trash.id) {
            by_box.entry(r.mailbox).or_default().push(r.uid);
        }
        for (mailbox, uids) in by_box {
            store.copy(mailbox, &uids, trash.id).await?;
        }
        let moved: Vec<MessageRef> = refs
            .iter()
            .filter(|r| r.mailbox != trash.id)
            .copied()
            .collect();
        store.expunge(account.id, &moved).await.map(|_| ())
    }
}

/// The reply to a command after the maildrop lock was lost (RFC 3206 §4, §5):
/// [IN-USE] when another session holds the maildrop now (the client's next login
/// waits for that one), [SYS/TEMP] when this node could not keep the lock (the
/// database was out of reach): a passing server problem, try again later.
pub(crate) fn lock_lost_text(e: &StoreError) -> &'static str {
    match e {
        StoreError::InUse(_) => {
            "-ERR [IN-USE] Another session has taken over this maildrop; this session ends \
             and no messages were deleted"
        }
        _ => {
            "-ERR [SYS/TEMP] The maildrop lock was lost (the mail store was out of reach); \
             this session ends and no messages were deleted, log in again"
        }
    }
}

pub(crate) fn message(drop: &Maildrop, n: u32) -> Result<&PopMessage, &'static str> {
    match drop.messages.get(n as usize - 1) {
        None => Err("-ERR No such message"),
        Some(m) if m.deleted => Err("-ERR Message is deleted"),
        Some(m) => Ok(m),
    }
}

pub(crate) fn message_mut(drop: &mut Maildrop, n: u32) -> Result<&mut PopMessage, &'static str> {
    match drop.messages.get_mut(n as usize - 1) {
        None => Err("-ERR No such message"),
        Some(m) if m.deleted => Err("-ERR Message is deleted"),
        Some(m) => Ok(m),
    }
}

/// The header, the blank line, and the first `lines` lines of the body (RFC 1939 §7).
fn top(raw: &[u8], lines: u32) -> &[u8] {
    let body_start = match raw.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => i + 4,
        None => return raw,
    };
    let mut end = body_start;
    for _ in 0..lines {
        match raw[end..].iter().position(|&b| b == b'\n') {
            Some(i) => end += i + 1,
            None => {
                end = raw.len();
                break;
            }
        }
    }
    &raw[..end]
}

/// Messages a RETR/TOP reads ahead at most, and the bytes beyond the first.
const AHEAD_COUNT: usize = 16;
const AHEAD_BYTES: u64 = 1 << 20;

/// Appends `content` byte-stuffed: a line starting with "." gets another "."; the
/// result ends with CRLF so the terminating ".\r\n" is on its own line.
fn stuff_into(content: &[u8], out: &mut Vec<u8>) {
    out.reserve(content.len() + 16);
    // Copied a line at a time up to each "\n." (found with memchr), not byte by byte.
    let mut rest = content;
    if rest.first() == Some(&b'.') {
        out.push(b'.');
    }
    while let Some(i) = memchr::memmem::find(rest, b"\n.") {
        out.extend_from_slice(&rest[..=i]);
        out.push(b'.');
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    if !content.is_empty() && !content.ends_with(b"\r\n") {
        if content.ends_with(b"\r") {
            out.push(b'\n');
        } else {
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing_matches_the_byte_by_byte_rule() {
        // Every line starting with "." gets one more; nothing else changes.
        let reference = |content: &[u8]| {
            let mut out = Vec::new();
            let mut at_line_start = true;
            for &b in content {
                if at_line_start && b == b'.' {
                    out.push(b'.');
                }
                out.push(b);
                at_line_start = b == b'\n';
            }
            out
        };
        let alphabet = [b'.', b'\r', b'\n', b'a'];
        let mut seed = 0x2545_f491_u32;
        for len in 0..200 {
            let content: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    alphabet[(seed % 4) as usize]
                })
                .collect();
            let mut out = Vec::new();
            stuff_into(&content, &mut out);
            let expected = reference(&content);
            assert!(out.starts_with(&expected), "{content:?}");
            assert!(out.len() - expected.len() <= 2);
        }
    }

    #[test]
    fn stuffing() {
        let mut out = Vec::new();
        stuff_into(b".a\r\nb\r\n..c\r\n.\r\n", &mut out);
        assert_eq!(out, b"..a\r\nb\r\n...c\r\n..\r\n");
        out.clear();
        stuff_into(b"no end", &mut out);
        assert_eq!(out, b"no end\r\n");
    }

    #[test]
    fn top_lines() {
        let raw = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n";
        assert_eq!(top(raw, 0), b"A: 1\r\nB: 2\r\n\r\n");
        assert_eq!(top(raw, 2), b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n");
        assert_eq!(top(raw, 10), &raw[..]);
        assert_eq!(top(b"only header\r\n", 3), b"only header\r\n");
    }
}
