//! CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS —
//! RFC 9051 §6.3.4–§6.3.11; LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819),
//! SPECIAL-USE and CREATE-SPECIAL-USE (RFC 6154), STATUS=SIZE (RFC 8438).

use std::collections::HashSet;

use casella_proto_imap::{ListCommand, ListReturn, ListSelect, StatusItem, encode};
use casella_store::{Flag, Mailbox, SpecialUse, StoreError};

use crate::cmd::store_error;
use crate::listing::{Names, Selection};
use crate::names::{SEPARATOR, from_wire, join_reference, matching, to_wire};
use crate::session::Session;

impl Session {
    pub(crate) fn account_id(&self) -> casella_store::AccountId {
        self.auth
            .as_ref()
            .map(|a| a.account.id)
            .unwrap_or(casella_store::AccountId(0))
    }

    /// Decodes a mailbox name from the wire, answering BAD when it is not valid.
    pub(crate) fn mailbox_arg(&mut self, tag: &str, name: &str) -> Option<String> {
        match from_wire(name, self.utf8()) {
            Ok(n) if !n.is_empty() => Some(n),
            Ok(_) => {
                self.tagged(tag, "NO [CANNOT] Empty mailbox name");
                None
            }
            // The command is well formed; the name cannot exist (every stored
            // name has a modified UTF-7 form, RFC 9051 §5.1.3): NO, not BAD, as
            // Dovecot answers.
            Err(e) => {
                self.tagged(tag, &format!("NO [CANNOT] {e}"));
                None
            }
        }
    }

    /// A mailbox name as a LIST/STATUS argument on the wire.
    pub(crate) fn encode_name(&self, out: &mut Vec<u8>, name: &str) {
        let wire = to_wire(name, self.utf8());
        if wire.is_ascii() {
            encode::astring(out, &wire);
        } else {
            encode::quoted_or_literal_utf8(out, &wire, self.utf8());
        }
    }

    pub(crate) async fn find_mailbox(&mut self, tag: &str, name: &str) -> Option<Mailbox> {
        let store = self.store();
        match store.mailbox_by_name(self.account_id(), name).await {
            Ok(Some(m)) => Some(m),
            Ok(None) => {
                self.tagged(tag, "NO [NONEXISTENT] No such mailbox");
                None
            }
            Err(e) => {
                let reply = store_error(&e);
                self.tagged(tag, &reply);
                None
            }
        }
    }

    /// The destination of APPEND, COPY or MOVE: a missing one is answered with
    /// `NO [TRYCREATE]` (RFC 9051 §6.3.12, §6.4.7) so the client can create it.
    pub(crate) async fn destination(&mut self, tag: &str, name: &str) -> Option<Mailbox> {
        let store = self.store();
        match store.mailbox_by_name(self.account_id(), name).await {
            Ok(Some(m)) => Some(m),
            Ok(None) => {
                self.tagged(tag, "NO [TRYCREATE] No such mailbox");
                None
            }
            Err(e) => {
                let reply = store_error(&e);
                self.tagged(tag, &reply);
                None
            }
        }
    }

    /// CREATE — RFC 9051 §6.3.4; `(USE (...))` — RFC 6154 §3. Superior names are
    /// created as needed.
    pub(crate) async fn cmd_create(&mut self, tag: &str, name: &str, uses: &[String]) {
        let Some(name) = self.mailbox_arg(tag, name) else {
            return;
        };
        if name == "INBOX" {
            self.tagged(tag, "NO [ALREADYEXISTS] INBOX exists already");
            return;
        }
        let mut role = None;
        for u in uses {
            match SpecialUse::from_attribute(u) {
                Some(r) if role.is_none() => role = Some(r),
                Some(_) => {
                    self.tagged(
                        tag,
                        "NO [USE] Only one special use per mailbox is supported",
                    );
                    return;
                }
                None => {
                    self.tagged(tag, &format!("NO [USE] Unknown special use {u}"));
                    return;
                }
            }
        }
        let store = self.store();
        let account = self.account_id();
        let parts: Vec<&str> = name.split(SEPARATOR).collect();
        for i in 1..parts.len() {
            let parent = parts[..i].join("/");
            match store.create_mailbox(account, &parent, None).await {
                Ok(_) | Err(StoreError::Exists(_)) => {}
                Err(e) => {
                    let reply = store_error(&e);
                    self.tagged(tag, &reply);
                    return;
                }
            }
        }
        match store.create_mailbox(account, &name, role).await {
            Ok(_) => self.finish(tag, "OK CREATE completed", true).await,
            Err(e) => {
                let reply = store_error(&e);
                self.tagged(tag, &reply)
            }
        }
    }

    /// DELETE — RFC 9051 §6.3.5. A mailbox with inferiors is refused (as Dovecot
    /// does) rather than left as a \Noselect name.
    pub(crate) async fn cmd_delete(&mut self, tag: &str, name: &str) {
        let Some(name) = self.mailbox_arg(tag, name) else {
            return;
        };
        if name == "INBOX" {
            self.tagged(tag, "NO [CANNOT] INBOX cannot be deleted");
            return;
        }
        let Some(mb) = self.find_mailbox(tag, &name).await else {
            return;
        };
        let store = self.store();
        let prefix = format!("{name}/");
        match store.list_mailboxes(self.account_id()).await {
            Ok(all) if all.iter().any(|m| m.name.starts_with(&prefix)) => {
                self.tagged(tag, "NO [HASCHILDREN] Delete the mailboxes inside it first");
                return;
            }
            Ok(_) => {}
            Err(e) => {
                let reply = store_error(&e);
                self.tagged(tag, &reply);
                return;
            }
        }
        match store.delete_mailbox(mb.id).await {
            Ok(()) => {
                if self.selected.as_ref().is_some_and(|s| s.id() == mb.id) {
                    self.selected = None;
                }
                self.finish(tag, "OK DELETE completed", true).await;
            }
            Err(e) => {
                let reply = store_error(&e);
                self.tagged(tag, &reply)
            }
        }
    }

    /// RENAME — RFC 9051 §6.3.6: inferiors move along; renaming INBOX moves its
    /// messages to the new mailbox and leaves INBOX empty.
    pub(crate) async fn cmd_rename(&mut self, tag: &str, from: &str, to: &str) {
        let Some(from) = self.mailbox_arg(tag, from) else {
            return;
        };
        let Some(to) = self.mailbox_arg(tag, to) else {
            return;
        };
        let Some(src) = self.find_mailbox(tag, &from).await else {
            return;
        };
        // Before any superior of the new name is made.
        if from != "INBOX"
            && let Err(e) = casella_store::mailbox_rules::check_rename(&src)
        {
            let reply = store_error(&e);
            self.tagged(tag, &reply);
            return;
        }
        let store = self.store();
        let account = self.account_id();
        match store.mailbox_by_name(account, &to).await {
            Ok(Some(_)) => {
                self.tagged(tag, "NO [ALREADYEXISTS] The new name exists already");
                return;
            }
            Ok(None) => {}
            Err(e) => {
                let reply = store_error(&e);
                self.tagged(tag, &reply);
                return;
            }
        }
        if to.starts_with(&format!("{from}/")) {
            self.tagged(tag, "NO [CANNOT] A mailbox cannot be moved inside itself");
            return;
        }
        // Superior names of the new name.
        let parts: Vec<&str> = to.split(SEPARATOR).collect();
        for i in 1..parts.len() {
            let parent = parts[..i].join("/");
            if let Err(e) = store.create_mailbox(account, &parent, None).await
                && !matches!(e, StoreError::Exists(_))
            {
                let reply = store_error(&e);
                self.tagged(tag, &reply);
                return;
            }
        }
        let result = if from == "INBOX" {
            self.rename_inbox(&src, &to).await
        } else {
            self.rename_tree(&from, &to).await
        };
        match result {
            Ok(()) => self.finish(tag, "OK RENAME completed", true).await,
            Err(e) => {
                let reply = store_error(&e);
                self.tagged(tag, &reply)
            }
        }
    }

    async fn rename_inbox(&self, inbox: &Mailbox, to: &str) -> Result<(), StoreError> {
        let store = self.store();
        let target = store.create_mailbox(inbox.account, to, None).await?;
        let uids: Vec<_> = store
            .list_messages(inbox.id)
            .await?
            .into_iter()
            .map(|m| m.uid)
            .collect();
        if !uids.is_empty() {
            store.move_messages(inbox.id, &uids, target.id).await?;
        }
        Ok(())
    }

    async fn rename_tree(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let store = self.store();
        let all = store.list_mailboxes(self.account_id()).await?;
        let prefix = format!("{from}/");
        for m in &all {
            if m.name == from {
                store.rename_mailbox(m.id, to).await?;
            } else if let Some(rest) = m.name.strip_prefix(&prefix) {
                store.rename_mailbox(m.id, &format!("{to}/{rest}")).await?;
            }
        }
        Ok(())
    }

    /// SUBSCRIBE / UNSUBSCRIBE — RFC 9051 §6.3.7, §6.3.8: the subscription
    /// list holds names; a name needs no mailbox (Dovecot agrees), and
    /// UNSUBSCRIBE of a name not on the list is not an error.
    pub(crate) async fn cmd_subscribe(&mut self, tag: &str, name: &str, on: bool) {
        let Some(name) = self.mailbox_arg(tag, name) else {
            return;
        };
        match self
            .store()
            .set_subscribed(self.account_id(), &name, on)
            .await
        {
            Ok(()) => {
                let verb = if on { "SUBSCRIBE" } else { "UNSUBSCRIBE" };
                self.finish(tag, &format!("OK {verb} completed"), true)
                    .await
            }
            Err(e) => {
                let reply = store_error(&e);
                self.tagged(tag, &reply)
            }
        }
    }

    /// The account's mailboxes and subscribed names as a listing sees them
    /// (hidden folders left out unless shown).
    async fn listing_sources(&self) -> Result<(Vec<Mailbox>, Vec<String>), StoreError> {
        let store = self.store();
        let mut mailboxes = store.list_mailboxes(self.account_id()).await?;
        let mut subscriptions = store.subscriptions(self.account_id()).await?;
        if !self.config.show_hidden_folders {
            mailboxes.retain(|m| !is_hidden(&m.name));
            subscriptions.retain(|n| !is_hidden(n));
        }
        Ok((mailboxes, subscriptions))
    }

    /// LIST — RFC 9051 §6.3.9 with RFC 5258 selection/return options, RFC 5819
    /// STATUS return, RFC 6154 special-use attributes. What is listed is
    /// decided in `listing`; here only the wire form.
    pub(crate) async fn cmd_list(&mut self, tag: &str, list: ListCommand) {
        let utf8 = self.utf8();
        // RFC 9051 §5.1.3: no mailbox has a name that is not valid modified
        // UTF-7, so such a reference or pattern matches nothing: an empty OK.
        let Ok(reference) = from_wire_keep(&list.reference, utf8) else {
            self.finish(tag, "OK LIST completed", true).await;
            return;
        };
        // RFC 9051 §6.3.9: an empty pattern asks for the hierarchy delimiter.
        if list.patterns.len() == 1 && list.patterns[0].is_empty() && list.select.is_empty() {
            self.line("* LIST (\\Noselect) \"/\" \"\"");
            self.finish(tag, "OK LIST completed", true).await;
            return;
        }
        let (mailboxes, subscriptions) = match self.listing_sources().await {
            Ok(s) => s,
            Err(e) => {
                let reply = store_error(&e);
                self.tagged(tag, &reply);
                return;
            }
        };
        let mut patterns = Vec::new();
        // A pattern that is not valid modified UTF-7 matches nothing.
        for p in &list.patterns {
            if let Ok(p) = from_wire_keep(p, utf8) {
                patterns.push(join_reference(&reference, &p));
            }
        }
        let selection = Selection {
            subscribed: list.select.contains(&ListSelect::Subscribed),
            special_use: list.select.contains(&ListSelect::SpecialUse),
            recursive: list.select.contains(&ListSelect::RecursiveMatch),
            return_subscribed: list.select.contains(&ListSelect::Subscribed)
                || list.returns.contains(&ListReturn::Subscribed),
        };
        let status_items: Option<Vec<StatusItem>> = list.returns.iter().find_map(|r| match r {
            ListReturn::Status(items) => Some(items.clone()),
            _ => None,
        });
        let names = Names::new(&mailboxes, &subscriptions, selection.subscribed);
        let all = names.all();
        let matched: HashSet<&str> = all
            .iter()
            .zip(matching(&patterns, &all).await)
            .filter_map(|(n, m)| m.then_some(*n))
            .collect();
        for entry in names.list(selection, &matched) {
            let mut out = format!("* LIST ({}) \"/\" ", entry.attributes.join(" ")).into_bytes();
            self.encode_name(&mut out, &entry.name);
            if entry.childinfo_subscribed {
                out.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            self.out.response(&out);
            if let (Some(items), Some(mb)) = (&status_items, entry.mailbox) {
                match self.status_line(mb, items).await {
                    Ok(line) => {
                        self.out.response(&line);
                    }
                    Err(e) => tracing::warn!(error = %e, "LIST-STATUS failed for one mailbox"),
                }
            }
        }
        self.finish(tag, "OK LIST completed", true).await;
    }

    /// LSUB — RFC 3501 §6.3.9 (rev1).
    pub(crate) async fn cmd_lsub(&mut self, tag: &str, reference: &str, pattern: &str) {
        let utf8 = self.utf8();
        let (Ok(reference), Ok(pattern)) = (
            from_wire_keep(reference, utf8),
            from_wire_keep(pattern, utf8),
        ) else {
            // Nothing can match a name that is not valid modified UTF-7.
            self.finish(tag, "OK LSUB completed", true).await;
            return;
        };
        if pattern.is_empty() {
            self.line("* LSUB (\\Noselect) \"/\" \"\"");
            self.finish(tag, "OK LSUB completed", true).await;
            return;
        }
        let (mailboxes, subscriptions) = match self.listing_sources().await {
            Ok(s) => s,
            Err(e) => {
                let reply = store_error(&e);
                self.tagged(tag, &reply);
                return;
            }
        };
        let names = Names::new(&mailboxes, &subscriptions, true);
        let all = names.all();
        let full = join_reference(&reference, &pattern);
        let matched: HashSet<&str> = all
            .iter()
            .zip(matching(&[full], &all).await)
            .filter_map(|(n, m)| m.then_some(*n))
            .collect();
        for entry in names.lsub(&matched) {
            let attributes = if entry.noselect { "\\Noselect" } else { "" };
            let mut out = format!("* LSUB ({attributes}) \"/\" ").into_bytes();
            self.encode_name(&mut out, &entry.name);
            self.out.response(&out);
        }
        self.finish(tag, "OK LSUB completed", true).await;
    }

    /// STATUS — RFC 9051 §6.3.11.
    pub(crate) async fn cmd_status(&mut self, tag: &str, name: &str, items: &[StatusItem]) {
        let Some(name) = self.mailbox_arg(tag, name) else {
            return;
        };
        let Some(mb) = self.find_mailbox(tag, &name).await else {
            return;
        };
        if items.contains(&StatusItem::HighestModSeq) {
            // RFC 7162 §3.1: a CONDSTORE enabling command.
            self.enable_condstore();
        }
        match self.status_line(&mb, items).await {
            Ok(line) => {
                self.out.response(&line);
                self.finish(tag, "OK STATUS completed", true).await;
            }
            Err(e) => {
                let reply = store_error(&e);
                self.tagged(tag, &reply)
            }
        }
    }

    /// `* STATUS name (ITEM n ...)`.
    pub(crate) async fn status_line(
        &self,
        mb: &Mailbox,
        items: &[StatusItem],
    ) -> Result<Vec<u8>, StoreError> {
        let store = self.store();
        let needs_list = items.iter().any(|i| {
            matches!(
                i,
                StatusItem::Messages
                    | StatusItem::Unseen
                    | StatusItem::Deleted
                    | StatusItem::DeletedStorage
                    | StatusItem::Size
                    | StatusItem::Recent
            )
        });
        let list = if needs_list {
            store.list_messages(mb.id).await?
        } else {
            Vec::new()
        };
        let mut parts = Vec::new();
        for item in items {
            let (name, value) = match item {
                StatusItem::Messages => ("MESSAGES", list.len() as u64),
                StatusItem::Recent => (
                    "RECENT",
                    list.iter().filter(|m| m.uid > mb.recent_watermark).count() as u64,
                ),
                StatusItem::UidNext => ("UIDNEXT", mb.uid_next.0 as u64),
                StatusItem::UidValidity => ("UIDVALIDITY", mb.uid_validity.0 as u64),
                StatusItem::Unseen => (
                    "UNSEEN",
                    list.iter()
                        .filter(|m| !m.flags.contains(&Flag::Seen))
                        .count() as u64,
                ),
                StatusItem::Deleted => (
                    "DELETED",
                    list.iter()
                        .filter(|m| m.flags.contains(&Flag::Deleted))
                        .count() as u64,
                ),
                StatusItem::DeletedStorage => (
                    "DELETED-STORAGE",
                    list.iter()
                        .filter(|m| m.flags.contains(&Flag::Deleted))
                        .map(|m| u64::from(m.size))
                        .sum(),
                ),
                StatusItem::Size => ("SIZE", list.iter().map(|m| m.size as u64).sum()),
                StatusItem::HighestModSeq => ("HIGHESTMODSEQ", mb.highest_modseq.0),
            };
            parts.push(format!("{name} {value}"));
        }
        let mut out = b"* STATUS ".to_vec();
        self.encode_name(&mut out, &mb.name);
        out.extend_from_slice(format!(" ({})", parts.join(" ")).as_bytes());
        Ok(out)
    }
}

/// Decodes a reference or pattern without the INBOX/trailing-separator
/// normalisation of mailbox names.
fn from_wire_keep(s: &str, utf8: bool) -> Result<String, String> {
    if utf8 {
        return Ok(s.to_string());
    }
    casella_proto_imap::mutf7::decode(s).map_err(|_| format!("{s:?} is not valid modified UTF-7"))
}

/// A hidden folder: some level of its name starts with "." (the Unix convention
/// for hidden entries); LIST and LSUB leave it out unless `show-hidden-folders`
/// is on. It can still be selected by name.
pub(crate) fn is_hidden(name: &str) -> bool {
    name.split('/').any(|level| level.starts_with('.'))
}
