//! The change feed: every committed change to a mailbox is published here, after
//! commit, so IDLE and other sessions learn of it. One broadcast channel per
//! account; a backend for several nodes feeds the same channels from its
//! notifications (PostgreSQL LISTEN/NOTIFY).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

use crate::types::{AccountId, FlagSet, MailboxId, ModSeq, Uid};

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
}

/// Per-account broadcast channels, created on first subscription.
#[derive(Default)]
pub struct ChangeFeed {
    channels: Mutex<HashMap<AccountId, broadcast::Sender<Change>>>,
}

impl ChangeFeed {
    pub fn subscribe(&self, account: AccountId) -> broadcast::Receiver<Change> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(account)
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    /// Publishes changes that are already committed.
    pub fn publish(&self, account: AccountId, changes: impl IntoIterator<Item = Change>) {
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
