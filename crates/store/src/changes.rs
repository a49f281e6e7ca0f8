//! The change feed: every committed change to a mailbox is published here, after
//! commit, so IDLE and other sessions learn of it. One broadcast channel per
//! account; a backend for several nodes feeds the same channels from its
//! notifications (PostgreSQL LISTEN/NOTIFY).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

use crate::types::{AccountId, FlagSet, FlagUpdate, MailboxId, ModSeq, Uid};

/// Capacity of each account's channel; a session that falls further behind is told
/// it lagged and must resynchronise from the store.
const CHANNEL_CAPACITY: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Appended {
        mailbox: MailboxId,
        uid: Uid,
        modseq: ModSeq,
    },
    Flags {
        mailbox: MailboxId,
        uid: Uid,
        flags: FlagSet,
        modseq: ModSeq,
    },
    Expunged {
        mailbox: MailboxId,
        uids: Vec<Uid>,
        modseq: ModSeq,
    },
    /// A mailbox was created, deleted or renamed.
    MailboxList,
    /// The mailbox changed in a way this process did not see (another process or
    /// node wrote to it): sessions resynchronise from the store.
    MailboxChanged { mailbox: MailboxId },
}

impl Change {
    /// One `Flags` change per flag update made in `mailbox`.
    pub fn from_flag_updates(mailbox: MailboxId, updates: &[FlagUpdate]) -> Vec<Change> {
        updates
            .iter()
            .map(|u| Change::Flags {
                mailbox,
                uid: u.uid,
                flags: u.flags.clone(),
                modseq: u.modseq,
            })
            .collect()
    }

    /// The mailbox the change is about, if any.
    pub fn mailbox(&self) -> Option<MailboxId> {
        match self {
            Change::Appended { mailbox, .. }
            | Change::Flags { mailbox, .. }
            | Change::Expunged { mailbox, .. }
            | Change::MailboxChanged { mailbox } => Some(*mailbox),
            Change::MailboxList => None,
        }
    }

    fn modseq(&self) -> Option<ModSeq> {
        match self {
            Change::Appended { modseq, .. }
            | Change::Flags { modseq, .. }
            | Change::Expunged { modseq, .. } => Some(*modseq),
            _ => None,
        }
    }
}

/// Per-account broadcast channels, created on first subscription.
#[derive(Default)]
pub struct ChangeFeed {
    channels: Mutex<HashMap<AccountId, broadcast::Sender<Change>>>,
    /// The highest MODSEQ announced per mailbox, so a watcher can tell changes made
    /// elsewhere from our own.
    announced: Mutex<HashMap<MailboxId, ModSeq>>,
}

impl ChangeFeed {
    pub fn subscribe(&self, account: AccountId) -> broadcast::Receiver<Change> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(account)
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    /// Accounts with at least one live subscriber.
    pub fn subscribed_accounts(&self) -> Vec<AccountId> {
        let map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .filter(|(_, tx)| tx.receiver_count() > 0)
            .map(|(a, _)| *a)
            .collect()
    }

    /// Whether the account has a live subscriber here (a watcher skips the others).
    pub fn is_subscribed(&self, account: AccountId) -> bool {
        let map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&account).is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// Called by a watcher that read a mailbox's MODSEQ from the store: if it is
    /// newer than anything announced here, the change came from elsewhere.
    pub fn observe(&self, account: AccountId, mailbox: MailboxId, modseq: ModSeq) {
        let newer = {
            let mut announced = self.announced.lock().unwrap_or_else(|p| p.into_inner());
            let known = announced.entry(mailbox).or_insert(ModSeq(0));
            if modseq > *known {
                *known = modseq;
                true
            } else {
                false
            }
        };
        if newer {
            self.publish(account, [Change::MailboxChanged { mailbox }]);
        }
    }

    /// Publishes changes that are already committed.
    pub fn publish(&self, account: AccountId, changes: impl IntoIterator<Item = Change>) {
        let changes: Vec<Change> = changes.into_iter().collect();
        {
            let mut announced = self.announced.lock().unwrap_or_else(|p| p.into_inner());
            for c in &changes {
                if let (Some(m), Some(s)) = (c.mailbox(), c.modseq()) {
                    let known = announced.entry(m).or_insert(ModSeq(0));
                    *known = (*known).max(s);
                }
            }
        }
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = map.get(&account) else {
            return;
        };
        if tx.receiver_count() == 0 {
            map.remove(&account);
            return;
        }
        for c in changes {
            let _ = tx.send(c);
        }
    }
}
