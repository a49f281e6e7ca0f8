//! NOTIFY — RFC 5465: the client names mailboxes and events once; the server
//! then tells it of them as they happen, between commands, without IDLE.
//!
//! - The selected mailbox (`SELECTED`, `SELECTED-DELAYED`): new messages,
//!   expunges and flag changes as the usual untagged responses (§5.1–5.3),
//!   with the FETCH items MessageNew asks for; with SELECTED-DELAYED
//!   expunges wait for a command that allows them.
//! - Other mailboxes (`INBOXES`, `PERSONAL`, `SUBSCRIBED`, `SUBTREE`,
//!   `MAILBOXES`): a STATUS response with what changed (§5.1–5.3);
//!   MailboxName as LIST (with OLDNAME for a rename, `\NonExistent` for a
//!   deletion, §5.4), SubscriptionChange as LIST with or without
//!   `\Subscribed` (§5.5).
//! - Not supported: AnnotationChange, MailboxMetadataChange,
//!   ServerMetadataChange (no METADATA) — `NO [BADEVENT (…)]`.
//!
//! The events come from the store's change feed; the session waits for them
//! and for the client's next command at once (the driver's
//! `wait_for_event`).

use std::collections::{BTreeMap, BTreeSet};

use casella_net::{Connection, Next, SessionStream};
use casella_proto_imap::{
    FetchAttr, NotifyEvent, NotifyFilter, NotifyGroup, NotifySet, StatusItem,
};
use casella_store::{Change, Mailbox, MailboxId, StoreError, Uid};
use tokio::sync::broadcast;

use crate::cmd::store_error;
use crate::session::Session;

/// The events casella can report (for `BADEVENT`).
const SUPPORTED: &str = "MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange";

/// A session's NOTIFY SET, and what it last told the client of mailbox
/// names and subscriptions (to report their changes).
pub(crate) struct Notifications {
    groups: Vec<NotifyGroup>,
    names: BTreeMap<MailboxId, String>,
    subscriptions: BTreeSet<String>,
}

/// What an event in a mailbox other than the selected one asks to report.
#[derive(Default, Clone, Copy)]
struct Wanted {
    new: bool,
    expunge: bool,
    flags: bool,
    names: bool,
    subscriptions: bool,
}

impl Wanted {
    fn of(events: &[NotifyEvent]) -> Wanted {
        let mut w = Wanted::default();
        for e in events {
            match e {
                NotifyEvent::MessageNew(_) => w.new = true,
                NotifyEvent::MessageExpunge => w.expunge = true,
                NotifyEvent::FlagChange => w.flags = true,
                NotifyEvent::MailboxName => w.names = true,
                NotifyEvent::SubscriptionChange => w.subscriptions = true,
                NotifyEvent::Other(_) => {}
            }
        }
        w
    }

    fn or(self, o: Wanted) -> Wanted {
        Wanted {
            new: self.new || o.new,
            expunge: self.expunge || o.expunge,
            flags: self.flags || o.flags,
            names: self.names || o.names,
            subscriptions: self.subscriptions || o.subscriptions,
        }
    }

    /// The STATUS items that say what these message events changed: for
    /// an event, MESSAGES and UIDNEXT for new messages, MESSAGES for
    /// expunges (RFC 5465 §5.1, §5.2); the first STATUS of NOTIFY SET STATUS
    /// (`initial`) says UIDVALIDITY too, as a base to compare with.
    fn status_items(self, initial: bool) -> Vec<StatusItem> {
        let mut items = Vec::new();
        if self.new || self.expunge {
            items.push(StatusItem::Messages);
        }
        if self.new {
            items.push(StatusItem::UidNext);
        }
        if (initial && self.new) || self.flags {
            items.push(StatusItem::UidValidity);
        }
        if self.flags {
            items.push(StatusItem::HighestModSeq);
        }
        items
    }
}

impl Notifications {
    fn is_selected_filter(f: &NotifyFilter) -> bool {
        matches!(f, NotifyFilter::Selected | NotifyFilter::SelectedDelayed)
    }

    /// The events asked for a mailbox `name` that is not the selected one.
    fn wanted_for(&self, name: &str) -> Wanted {
        let mut w = Wanted::default();
        for g in &self.groups {
            let covered = match &g.filter {
                NotifyFilter::Selected | NotifyFilter::SelectedDelayed => false,
                // Where new mail is delivered: INBOX.
                NotifyFilter::Inboxes => name == "INBOX",
                NotifyFilter::Personal => true,
                NotifyFilter::Subscribed => self.subscriptions.contains(name),
                NotifyFilter::Subtree(roots) => roots.iter().any(|r| {
                    name == r
                        || name
                            .strip_prefix(r.as_str())
                            .is_some_and(|t| t.starts_with('/'))
                }),
                NotifyFilter::Mailboxes(names) => names.iter().any(|n| n == name),
            };
            if covered {
                w = w.or(Wanted::of(&g.events));
            }
        }
        w
    }

    /// The selected mailbox's group: (delayed, MessageNew's FETCH items), or
    /// `None` when no group covers it.
    fn selected(&self) -> Option<(bool, Vec<FetchAttr>)> {
        self.groups
            .iter()
            .find(|g| Self::is_selected_filter(&g.filter) && !g.events.is_empty())
            .map(|g| {
                let delayed = g.filter == NotifyFilter::SelectedDelayed;
                let items = g
                    .events
                    .iter()
                    .find_map(|e| match e {
                        NotifyEvent::MessageNew(items) => Some(items.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                (delayed, items)
            })
    }
}

/// Checks a NOTIFY SET against RFC 5465: `Err(reply)` when it is refused.
fn check(set: &NotifySet) -> Result<(), String> {
    let mut unsupported = Vec::new();
    for g in &set.groups {
        let has = |f: fn(&NotifyEvent) -> bool| g.events.iter().any(f);
        // (RFC 5465 §5 asks clients for MessageNew and MessageExpunge
        // together; Dovecot takes either alone, and so do we.)
        // §5.1: FETCH items only for the selected mailbox.
        if !Notifications::is_selected_filter(&g.filter)
            && has(|e| matches!(e, NotifyEvent::MessageNew(items) if !items.is_empty()))
        {
            return Err("BAD MessageNew FETCH items are for the selected mailbox only".into());
        }
        for e in &g.events {
            if let NotifyEvent::Other(name) = e {
                unsupported.push(name.clone());
            }
        }
    }
    if !unsupported.is_empty() {
        return Err(format!(
            "NO [BADEVENT ({SUPPORTED})] Not supported: {}",
            unsupported.join(" ")
        ));
    }
    Ok(())
}

impl Session {
    /// NOTIFY NONE / NOTIFY SET — RFC 5465 §3.
    pub(crate) async fn cmd_notify(&mut self, tag: &str, set: Option<NotifySet>) {
        let Some(mut set) = set else {
            self.notify = None;
            self.finish(tag, "OK NOTIFY completed", true).await;
            return;
        };
        if let Err(reply) = check(&set) {
            self.tagged(tag, &reply);
            return;
        }
        // Names as the store keeps them (modified UTF-7 decoded, INBOX).
        for g in &mut set.groups {
            if let NotifyFilter::Subtree(names) | NotifyFilter::Mailboxes(names) = &mut g.filter {
                for n in names.iter_mut() {
                    if let Ok(decoded) = crate::names::from_wire(n, self.utf8()) {
                        *n = decoded;
                    }
                }
            }
        }
        // Changes the feed holds from before are in the snapshot below (and
        // the selected mailbox is brought up to date before the reply).
        let selected_id = self.selected.as_ref().map(|s| s.id());
        let mut selected_dirty = false;
        if let Some(auth) = self.auth.as_mut() {
            loop {
                match auth.changes.try_recv() {
                    Ok(c) => selected_dirty |= selected_id.is_some() && c.mailbox() == selected_id,
                    Err(broadcast::error::TryRecvError::Lagged(_)) => selected_dirty = true,
                    Err(_) => break,
                }
            }
        }
        let (mailboxes, subscriptions) = match self.notify_snapshot().await {
            Ok(s) => s,
            Err(e) => {
                let reply = store_error(&e);
                self.tagged(tag, &reply);
                return;
            }
        };
        let notifications = Notifications {
            groups: set.groups,
            names: mailboxes.iter().map(|m| (m.id, m.name.clone())).collect(),
            subscriptions,
        };
        // §3.1: with STATUS, each mailbox's state now, so that later
        // notifications have something to start from.
        if set.status {
            let selected = self.selected.as_ref().map(|s| s.id());
            for mb in &mailboxes {
                if Some(mb.id) == selected {
                    continue;
                }
                let items = notifications.wanted_for(&mb.name).status_items(true);
                if !items.is_empty() {
                    self.send_status(mb, &items).await;
                }
            }
        }
        self.notify = Some(notifications);
        if selected_dirty {
            self.resync(true).await;
        }
        self.finish(tag, "OK NOTIFY completed", true).await;
    }

    async fn notify_snapshot(&self) -> Result<(Vec<Mailbox>, BTreeSet<String>), StoreError> {
        let store = self.store();
        let account = self.account_id();
        let mailboxes = store.list_mailboxes(account).await?;
        let subscriptions = store.subscriptions(account).await?.into_iter().collect();
        Ok((mailboxes, subscriptions))
    }

    async fn send_status(&mut self, mb: &Mailbox, items: &[StatusItem]) {
        match self.status_line(mb, items).await {
            Ok(line) => self.out.response(&line),
            Err(e) => tracing::warn!(error = %e, "NOTIFY STATUS failed for one mailbox"),
        }
    }

    /// Waits for the next change of the account (the driver drops this when
    /// the client speaks first; receiving is cancel-safe).
    pub(crate) async fn wait_for_change(&mut self) {
        let Some(auth) = self.auth.as_mut() else {
            return std::future::pending().await;
        };
        let change = match auth.changes.recv().await {
            Ok(c) => Some(c),
            Err(broadcast::error::RecvError::Lagged(_)) => None,
            Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
        };
        self.pending_change = Some(change);
    }

    /// Tells the client what the change it waited for means (and what else
    /// is queued by now).
    pub(crate) async fn notify_change<S: SessionStream>(&mut self, io: &mut Connection<S>) -> Next {
        let mut changes = vec![self.pending_change.take().flatten()];
        if let Some(auth) = self.auth.as_mut() {
            loop {
                match auth.changes.try_recv() {
                    Ok(c) => changes.push(Some(c)),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => changes.push(None),
                    Err(_) => break,
                }
            }
        }
        let selected = self.selected.as_ref().map(|s| s.id());
        let mut selected_changed = false;
        let mut others: BTreeMap<MailboxId, Wanted> = BTreeMap::new();
        let mut names_changed = false;
        for change in changes {
            match change {
                // Lagged: anything may have changed.
                None => {
                    selected_changed = true;
                    names_changed = true;
                }
                Some(Change::MailboxList) => names_changed = true,
                Some(c) => {
                    let Some(id) = c.mailbox() else { continue };
                    if Some(id) == selected {
                        selected_changed = true;
                        continue;
                    }
                    let event = match c {
                        Change::Appended { .. } => Wanted {
                            new: true,
                            ..Wanted::default()
                        },
                        Change::Expunged { .. } => Wanted {
                            expunge: true,
                            ..Wanted::default()
                        },
                        Change::Flags { .. } => Wanted {
                            flags: true,
                            ..Wanted::default()
                        },
                        _ => Wanted {
                            new: true,
                            expunge: true,
                            flags: true,
                            ..Wanted::default()
                        },
                    };
                    let e = others.entry(id).or_default();
                    *e = e.or(event);
                }
            }
        }
        if selected_changed {
            let next = self.notify_selected(io).await;
            if next != Next::Continue {
                return next;
            }
        }
        for (id, happened) in others {
            self.notify_other(id, happened).await;
        }
        if names_changed {
            self.notify_names().await;
        }
        if self.gone {
            return Next::Close;
        }
        Next::Continue
    }

    /// The selected mailbox's changes, with MessageNew's FETCH items for the
    /// messages that arrived (§5.1).
    async fn notify_selected<S: SessionStream>(&mut self, io: &mut Connection<S>) -> Next {
        let Some((delayed, items)) = self.notify.as_ref().and_then(|n| n.selected()) else {
            return Next::Continue;
        };
        let before = self.selected.as_ref().map_or(0, |s| s.max_uid());
        self.resync(!delayed).await;
        if self.gone {
            return Next::Close;
        }
        if items.is_empty() {
            return Next::Continue;
        }
        let targets: Vec<(u32, Uid)> = self.selected.as_ref().map_or(Vec::new(), |sel| {
            sel.messages
                .iter()
                .enumerate()
                .filter(|(_, m)| m.uid.0 > before && !m.expunged)
                .map(|(i, m)| (i as u32 + 1, m.uid))
                .collect()
        });
        if targets.is_empty() {
            return Next::Continue;
        }
        // A UID in every FETCH, so the client can tell the messages apart.
        let mut attrs = items;
        if !attrs.contains(&FetchAttr::Uid) {
            attrs.insert(0, FetchAttr::Uid);
        }
        match self.fetch_targets(&targets, attrs, io).await {
            Ok(_) => Next::Continue,
            Err(super::fetch::FetchStop::Broken) => Next::Close,
            Err(super::fetch::FetchStop::Reply(reply)) => {
                tracing::warn!(reply, "NOTIFY MessageNew FETCH failed");
                Next::Continue
            }
        }
    }

    /// A STATUS response for a change in another mailbox the client watches.
    async fn notify_other(&mut self, id: MailboxId, happened: Wanted) {
        let Some(name) = self.notify.as_ref().and_then(|n| n.names.get(&id).cloned()) else {
            return;
        };
        let Some(wanted) = self.notify.as_ref().map(|n| n.wanted_for(&name)) else {
            return;
        };
        let relevant = Wanted {
            new: happened.new && wanted.new,
            expunge: happened.expunge && wanted.expunge,
            flags: happened.flags && wanted.flags,
            ..Wanted::default()
        };
        let items = relevant.status_items(false);
        if items.is_empty() {
            return;
        }
        match self.store().mailbox(id).await {
            Ok(mb) => self.send_status(&mb, &items).await,
            Err(e) => tracing::warn!(error = %e, "NOTIFY: reading a mailbox failed"),
        }
    }

    /// Mailboxes created, deleted or renamed, and subscriptions changed,
    /// since the client was last told (§5.4, §5.5).
    async fn notify_names(&mut self) {
        let Ok((mailboxes, subscriptions)) = self.notify_snapshot().await else {
            return;
        };
        let Some(n) = self.notify.as_ref() else {
            return;
        };
        let now: BTreeMap<MailboxId, String> =
            mailboxes.iter().map(|m| (m.id, m.name.clone())).collect();
        let mut lines: Vec<(String, &str, Option<String>)> = Vec::new();
        for (id, name) in &now {
            match n.names.get(id) {
                None if n.wanted_for(name).names => lines.push((name.clone(), "", None)),
                Some(old) if old != name && n.wanted_for(name).names => {
                    lines.push((name.clone(), "", Some(old.clone())))
                }
                _ => {}
            }
        }
        for (id, name) in &n.names {
            if !now.contains_key(id) && n.wanted_for(name).names {
                lines.push((name.clone(), "\\NonExistent", None));
            }
        }
        for name in subscriptions.symmetric_difference(&n.subscriptions) {
            if n.wanted_for(name).subscriptions {
                let attr = if subscriptions.contains(name) {
                    "\\Subscribed"
                } else {
                    ""
                };
                lines.push((name.clone(), attr, None));
            }
        }
        for (name, attr, old) in lines {
            let mut out = format!("* LIST ({attr}) \"/\" ").into_bytes();
            self.encode_name(&mut out, &name);
            if let Some(old) = old {
                // RFC 5465 §5.4: OLDNAME, the name before a RENAME.
                out.extend_from_slice(b" (\"OLDNAME\" (");
                self.encode_name(&mut out, &old);
                out.extend_from_slice(b"))");
            }
            self.out.response(&out);
        }
        if let Some(n) = self.notify.as_mut() {
            n.names = now;
            n.subscriptions = subscriptions;
        }
    }
}
