//! Message operations: appends and deliveries (UIDs and one MODSEQ per
//! mailbox per command), flag changes, expunges, copies and moves. Each is one
//! transaction; its changes are published after the commit.

use std::collections::{BTreeMap, HashMap};

use crate::changes::Change;
use crate::error::{StoreError, StoreResult};
use crate::model::backend::{MailBackend, MailTx, MessageRow, job};
use crate::model::mailboxes::lock_one;
use crate::model::prepare::{PreparedMessage, prepare_all};
use crate::model::{lifecycle, mailbox_rows};
use crate::records::queue::insert_queued;
use crate::types::*;

/// The counters of a locked mailbox as a transaction moves them.
pub(super) struct Counters {
    pub(super) mailbox: Mailbox,
    /// The MODSEQ this transaction took for the mailbox, once it took one.
    modseq: Option<ModSeq>,
}

impl Counters {
    fn new(mailbox: Mailbox) -> Counters {
        Counters {
            mailbox,
            modseq: None,
        }
    }

    /// The transaction's one MODSEQ for this mailbox (RFC 7162 §3.1.3 lets one
    /// command's changes share it), taken on first use.
    pub(super) fn modseq(&mut self) -> ModSeq {
        *self.modseq.get_or_insert_with(|| {
            self.mailbox.highest_modseq = ModSeq(self.mailbox.highest_modseq.0 + 1);
            self.mailbox.highest_modseq
        })
    }

    /// Counts a message in (its size and one more message).
    pub(super) fn add(&mut self, size: u32) {
        self.mailbox.total_size = self.mailbox.total_size.saturating_add(size.into());
        self.mailbox.message_count = self.mailbox.message_count.saturating_add(1);
    }

    /// Counts a message out.
    fn remove(&mut self, size: u32) {
        self.mailbox.total_size = self.mailbox.total_size.saturating_sub(size.into());
        self.mailbox.message_count = self.mailbox.message_count.saturating_sub(1);
    }

    /// The MODSEQ this transaction took for the mailbox, if it took one.
    pub(super) fn modseq_taken(&self) -> Option<ModSeq> {
        self.modseq
    }

    /// The next UID (RFC 9051 §2.3.1.1: strictly ascending, never reused).
    pub(super) fn next_uid(&mut self) -> StoreResult<Uid> {
        let uid = self.mailbox.uid_next;
        if uid.0 == u32::MAX {
            return Err(StoreError::Invalid("mailbox has run out of UIDs".into()));
        }
        self.mailbox.uid_next = Uid(uid.0 + 1);
        Ok(uid)
    }

    /// Writes the counters back if this transaction moved them.
    pub(super) async fn save(&self, tx: &mut dyn MailTx) -> StoreResult<()> {
        if self.modseq.is_some() {
            mailbox_rows::save_mailbox(tx, &self.mailbox).await?;
        }
        Ok(())
    }
}

/// Each blob once with the number of references `messages` add to it, in blob order.
fn blob_counts<'p>(messages: &[&'p PreparedMessage]) -> Vec<(&'p PreparedMessage, i64)> {
    let mut counts: BTreeMap<&BlobId, (&PreparedMessage, i64)> = BTreeMap::new();
    for p in messages {
        counts.entry(&p.blob).or_insert((p, 0)).1 += 1;
    }
    counts.into_values().collect()
}

/// One reference fewer for each blob listed (once per message).
pub fn releases(blobs: impl IntoIterator<Item = BlobId>) -> BTreeMap<BlobId, i64> {
    let mut deltas = BTreeMap::new();
    for b in blobs {
        *deltas.entry(b).or_insert(0) -= 1;
    }
    deltas
}

/// Appends to locked mailboxes: for each (mailbox, messages), UIDs from its
/// UIDNEXT under one new MODSEQ. Returns what was appended, in the given order.
async fn append_in_tx(
    tx: &mut dyn MailTx,
    targets: &mut BTreeMap<MailboxId, Counters>,
    appends: &[(MailboxId, Vec<&PreparedMessage>)],
    now: i64,
) -> StoreResult<(Vec<Appended>, Vec<Change>)> {
    let all: Vec<&PreparedMessage> = appends
        .iter()
        .flat_map(|(_, m)| m.iter().copied())
        .collect();
    tx.add_blobs(&blob_counts(&all)).await?;
    let mut appended = Vec::with_capacity(all.len());
    let mut changes = Vec::with_capacity(all.len());
    for (mailbox, messages) in appends {
        let c = targets
            .get_mut(mailbox)
            .ok_or_else(|| StoreError::NotFound(format!("mailbox {}", mailbox.0)))?;
        let modseq = c.modseq();
        let mut rows = Vec::with_capacity(messages.len());
        for p in messages {
            let uid = c.next_uid()?;
            c.add(p.size);
            rows.push(MessageRow {
                uid,
                blob: p.blob.clone(),
                size: p.size,
                internal_date: p.internal_date,
                save_date: now,
                flags: p.flags.clone(),
            });
            appended.push(Appended {
                mailbox: *mailbox,
                uid_validity: c.mailbox.uid_validity,
                uid,
                modseq,
                size: p.size,
            });
            changes.push(Change::Appended {
                mailbox: *mailbox,
                uid,
                modseq,
            });
        }
        tx.insert_messages(*mailbox, modseq, &rows).await?;
    }
    Ok((appended, changes))
}

/// Locks `ids` (ascending, the lock order) and keeps their counters.
pub(super) async fn lock_counters(
    tx: &mut dyn MailTx,
    ids: &[MailboxId],
) -> StoreResult<BTreeMap<MailboxId, Counters>> {
    Ok(tx
        .lock_mailboxes(ids)
        .await?
        .into_iter()
        .map(|mb| (mb.id, Counters::new(mb)))
        .collect())
}

/// Publishes committed changes, grouped by account as they were made.
pub(super) fn publish<B: MailBackend>(backend: &B, changes: Vec<(AccountId, Vec<Change>)>) {
    for (account, changes) in changes {
        if !changes.is_empty() {
            backend.feed().publish(account, changes);
        }
    }
}

/// MULTIAPPEND: all or nothing, in order, one MODSEQ.
pub async fn append_batch<B: MailBackend>(
    backend: &B,
    mailbox: MailboxId,
    messages: Vec<NewMessage>,
) -> StoreResult<Vec<Appended>> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    // Parse, hash and write large bytes before the transaction: the slow part.
    let prepared = prepare_all(backend.blobs(), messages).await?;
    let now = backend.clock().now();
    let (appended, account, changes) = backend
        .transact(job(move |tx| {
            Box::pin(async move {
                let mut targets = lock_counters(tx, &[mailbox]).await?;
                let all: Vec<&PreparedMessage> = prepared.iter().collect();
                let (appended, changes) =
                    append_in_tx(tx, &mut targets, &[(mailbox, all)], now).await?;
                let c = &targets[&mailbox];
                c.save(tx).await?;
                let account = c.mailbox.account;
                tx.announce(account, &changes);
                Ok((appended, account, changes))
            })
        }))
        .await?;
    publish(backend, vec![(account, changes)]);
    Ok(appended)
}

/// Local delivery to several accounts' INBOXes in one transaction, the bytes
/// stored once (one blob, a reference per copy), and the queue entry for the
/// remote recipients, when there is one, in the same transaction.
pub async fn deliver_and_queue<B: MailBackend>(
    backend: &B,
    accounts: &[AccountId],
    raw: Vec<u8>,
    queued: Option<NewQueued>,
) -> StoreResult<Delivered> {
    let mut distinct: Vec<AccountId> = Vec::with_capacity(accounts.len());
    for a in accounts {
        if !distinct.contains(a) {
            distinct.push(*a);
        }
    }
    if distinct.is_empty() {
        let queued = match queued {
            Some(new) => Some(
                backend
                    .transact(job(move |tx| {
                        Box::pin(async move { insert_queued(tx, &new).await })
                    }))
                    .await?,
            ),
            None => None,
        };
        return Ok(Delivered {
            appended: Vec::new(),
            queued,
        });
    }
    let message = NewMessage {
        raw,
        internal_date: None,
        flags: FlagSet::new(),
        binary: false,
    };
    let prepared = prepare_all(backend.blobs(), vec![message])
        .await?
        .pop()
        .ok_or_else(|| StoreError::Internal("nothing prepared".into()))?;
    let wanted = distinct.clone();
    let now = backend.clock().now();
    let (appended, changes, queue_id) = backend
        .transact(job(move |tx| {
            Box::pin(async move {
                let mut inboxes = Vec::with_capacity(distinct.len());
                for account in &distinct {
                    let inbox = tx
                        .find_mailbox(*account, "INBOX")
                        .await?
                        .ok_or_else(|| StoreError::NotFound("INBOX".into()))?;
                    inboxes.push((*account, inbox.id));
                }
                let ids: Vec<MailboxId> = inboxes.iter().map(|(_, m)| *m).collect();
                let mut targets = lock_counters(tx, &ids).await?;
                let appends: Vec<(MailboxId, Vec<&PreparedMessage>)> =
                    ids.iter().map(|m| (*m, vec![&prepared])).collect();
                let (appended, changes) = append_in_tx(tx, &mut targets, &appends, now).await?;
                for c in targets.values() {
                    c.save(tx).await?;
                }
                let mut by_account = Vec::with_capacity(inboxes.len());
                for (account, inbox) in &inboxes {
                    let mine: Vec<Change> = changes
                        .iter()
                        .filter(|c| c.mailbox() == Some(*inbox))
                        .cloned()
                        .collect();
                    tx.announce(*account, &mine);
                    by_account.push((*account, mine));
                }
                let queue_id = match &queued {
                    Some(new) => Some(insert_queued(tx, new).await?),
                    None => None,
                };
                Ok((appended, by_account, queue_id))
            })
        }))
        .await?;
    publish(backend, changes);
    // `appended` follows `wanted` (one per distinct account); answer in the
    // order asked, a repeated account with its one copy.
    Ok(Delivered {
        appended: accounts
            .iter()
            .filter_map(|a| wanted.iter().position(|w| w == a))
            .map(|i| appended[i].clone())
            .collect(),
        queued: queue_id,
    })
}

/// The flags after `op` (RFC 9051 §6.4.6: FLAGS replaces, +FLAGS adds,
/// -FLAGS removes).
fn apply(op: FlagOp, current: &FlagSet, flags: &FlagSet) -> FlagSet {
    match op {
        FlagOp::Replace => flags.clone(),
        FlagOp::Add => current.union(flags).cloned().collect(),
        FlagOp::Remove => current.difference(flags).cloned().collect(),
    }
}

/// STORE: changes flags of the UIDs given (missing ones skipped); only
/// messages whose flags change get the command's one new MODSEQ. With
/// `unchanged_since` (RFC 7162 §3.1.3), a message whose MODSEQ is above it is
/// not touched and is reported in `modified` — tested under the mailbox's
/// lock, so no change can slip in between the test and the update.
pub async fn store_flags<B: MailBackend>(
    backend: &B,
    mailbox: MailboxId,
    uids: &[Uid],
    op: FlagOp,
    flags: &FlagSet,
    unchanged_since: Option<ModSeq>,
) -> StoreResult<FlagChanges> {
    let uids = uids.to_vec();
    let flags = flags.clone();
    let (changes, account) = backend
        .transact(job(move |tx| {
            Box::pin(async move {
                let mut c = Counters::new(lock_one(tx, mailbox).await?);
                let mut current: HashMap<Uid, (FlagSet, ModSeq)> = tx
                    .messages(mailbox, &uids)
                    .await?
                    .into_iter()
                    .map(|m| (m.uid, (m.flags, m.modseq)))
                    .collect();
                let mut updates: Vec<FlagUpdate> = Vec::new();
                let mut modified: Vec<Uid> = Vec::new();
                for uid in uids {
                    let Some((cur, modseq)) = current.get_mut(&uid) else {
                        continue;
                    };
                    if unchanged_since.is_some_and(|limit| *modseq > limit) {
                        modified.push(uid);
                        continue;
                    }
                    let new = apply(op, cur, &flags);
                    if new == *cur {
                        continue;
                    }
                    *cur = new.clone();
                    *modseq = c.modseq();
                    updates.push(FlagUpdate {
                        uid,
                        flags: new,
                        modseq: *modseq,
                    });
                }
                if let Some(modseq) = c.modseq {
                    // The last state of each UID (one listed twice changed twice).
                    let last: BTreeMap<Uid, FlagSet> =
                        updates.iter().map(|u| (u.uid, u.flags.clone())).collect();
                    let rows: Vec<(Uid, FlagSet)> = last.into_iter().collect();
                    tx.update_flags(mailbox, modseq, &rows).await?;
                    c.save(tx).await?;
                    tx.announce(
                        c.mailbox.account,
                        &Change::from_flag_updates(mailbox, &updates),
                    );
                }
                modified.sort_unstable();
                modified.dedup();
                Ok((FlagChanges { updates, modified }, c.mailbox.account))
            })
        }))
        .await?;
    publish(
        backend,
        vec![(
            account,
            Change::from_flag_updates(mailbox, &changes.updates),
        )],
    );
    Ok(changes)
}

/// Expunges from a locked mailbox under its one MODSEQ; the change to
/// publish (none when nothing was there) and the blobs released.
async fn expunge_in_tx(
    tx: &mut dyn MailTx,
    c: &mut Counters,
    uids: &[Uid],
    released: &mut Vec<BlobId>,
) -> StoreResult<Option<Change>> {
    let mut uids = uids.to_vec();
    uids.sort_unstable();
    uids.dedup();
    // The MODSEQ this expunge would take; kept only if something was there.
    let modseq = c.modseq.unwrap_or(ModSeq(c.mailbox.highest_modseq.0 + 1));
    let mut gone = tx.expunge_messages(c.mailbox.id, modseq, &uids).await?;
    if gone.is_empty() {
        return Ok(None);
    }
    let taken = c.modseq();
    debug_assert_eq!(taken, modseq);
    gone.sort_unstable_by_key(|(uid, _, _)| *uid);
    let mut expunged = Vec::with_capacity(gone.len());
    for (uid, blob, size) in gone {
        c.remove(size);
        expunged.push(uid);
        released.push(blob);
    }
    Ok(Some(Change::Expunged {
        mailbox: c.mailbox.id,
        uids: expunged,
        modseq,
    }))
}

/// Removes the messages, all or nothing, even across mailboxes of the
/// account; returns those that existed. They stay recoverable
/// (`lifecycle`): their blobs keep the references the messages held.
pub async fn expunge<B: MailBackend>(
    backend: &B,
    account: AccountId,
    messages: &[MessageRef],
) -> StoreResult<Vec<MessageRef>> {
    let mut by_mailbox: BTreeMap<MailboxId, Vec<Uid>> = BTreeMap::new();
    for m in messages {
        by_mailbox.entry(m.mailbox).or_default().push(m.uid);
    }
    if by_mailbox.is_empty() {
        return Ok(Vec::new());
    }
    let now = backend.clock().now();
    let (removed, changes) = backend
        .transact(job(move |tx| {
            Box::pin(async move {
                let ids: Vec<MailboxId> = by_mailbox.keys().copied().collect();
                let mut locked = lock_counters(tx, &ids).await?;
                let mut removed = Vec::new();
                let mut changes = Vec::new();
                // The references move to the recoverable items: none released.
                let mut kept = Vec::new();
                for (mailbox, uids) in &by_mailbox {
                    let c = locked
                        .get_mut(mailbox)
                        .ok_or_else(|| StoreError::NotFound(format!("mailbox {}", mailbox.0)))?;
                    if c.mailbox.account != account {
                        return Err(StoreError::NotFound(format!("mailbox {}", mailbox.0)));
                    }
                    lifecycle::keep_recoverable(tx, &c.mailbox, Some(uids), now).await?;
                    if let Some(change) = expunge_in_tx(tx, c, uids, &mut kept).await? {
                        if let Change::Expunged { uids, .. } = &change {
                            removed.extend(uids.iter().map(|&uid| MessageRef {
                                mailbox: *mailbox,
                                uid,
                            }));
                        }
                        changes.push(change);
                    }
                    c.save(tx).await?;
                }
                tx.announce(account, &changes);
                Ok((removed, changes))
            })
        }))
        .await?;
    publish(backend, vec![(account, changes)]);
    Ok(removed)
}

/// (source UID, new UID) pairs, the changes made, and the references the
/// copies add to blobs (for the caller to apply once, with any releases).
type CopyOutcome = (Vec<(Uid, Uid)>, Vec<Change>, BTreeMap<BlobId, i64>);

/// Copies between locked mailboxes of one account in source order (flags and
/// INTERNALDATE kept), under one MODSEQ of the destination.
async fn copy_in_tx(
    tx: &mut dyn MailTx,
    locked: &mut BTreeMap<MailboxId, Counters>,
    from: MailboxId,
    uids: &[Uid],
    to: MailboxId,
    now: i64,
) -> StoreResult<CopyOutcome> {
    let source_account = locked
        .get(&from)
        .ok_or_else(|| StoreError::NotFound(format!("mailbox {}", from.0)))?
        .mailbox
        .account;
    let dst = locked
        .get_mut(&to)
        .ok_or_else(|| StoreError::NotFound(format!("mailbox {}", to.0)))?;
    if source_account != dst.mailbox.account {
        return Err(StoreError::Invalid("copy across accounts".into()));
    }
    let found: HashMap<Uid, MessageSummary> = tx
        .messages(from, uids)
        .await?
        .into_iter()
        .map(|m| (m.uid, m))
        .collect();
    let mut pairs = Vec::new();
    let mut changes = Vec::new();
    let mut rows = Vec::new();
    let mut added: BTreeMap<BlobId, i64> = BTreeMap::new();
    for uid in uids {
        let Some(m) = found.get(uid) else { continue };
        let new = dst.next_uid()?;
        let modseq = dst.modseq();
        dst.add(m.size);
        *added.entry(m.blob.clone()).or_insert(0) += 1;
        rows.push(MessageRow {
            uid: new,
            blob: m.blob.clone(),
            size: m.size,
            internal_date: m.internal_date,
            save_date: now,
            flags: m.flags.clone(),
        });
        pairs.push((*uid, new));
        changes.push(Change::Appended {
            mailbox: to,
            uid: new,
            modseq,
        });
    }
    if let Some(modseq) = dst.modseq {
        tx.insert_messages(to, modseq, &rows).await?;
    }
    Ok((pairs, changes, added))
}

/// COPY: the source is locked too, so its messages (and their blobs) stay put.
pub async fn copy<B: MailBackend>(
    backend: &B,
    from: MailboxId,
    uids: &[Uid],
    to: MailboxId,
) -> StoreResult<Vec<(Uid, Uid)>> {
    copy_or_move(backend, from, uids, to, false).await
}

/// MOVE (RFC 6851 §3.3): copy and expunge in one transaction.
pub async fn move_messages<B: MailBackend>(
    backend: &B,
    from: MailboxId,
    uids: &[Uid],
    to: MailboxId,
) -> StoreResult<Vec<(Uid, Uid)>> {
    if from == to {
        return Err(StoreError::Invalid(
            "source and destination are the same".into(),
        ));
    }
    copy_or_move(backend, from, uids, to, true).await
}

async fn copy_or_move<B: MailBackend>(
    backend: &B,
    from: MailboxId,
    uids: &[Uid],
    to: MailboxId,
    remove: bool,
) -> StoreResult<Vec<(Uid, Uid)>> {
    let uids = uids.to_vec();
    let now = backend.clock().now();
    let (pairs, account, changes) = backend
        .transact(job(move |tx| {
            Box::pin(async move {
                let mut locked = lock_counters(tx, &[from, to]).await?;
                let (pairs, mut changes, mut deltas) =
                    copy_in_tx(tx, &mut locked, from, &uids, to, now).await?;
                let mut released = Vec::new();
                if remove {
                    let moved: Vec<Uid> = pairs.iter().map(|(s, _)| *s).collect();
                    let src = locked
                        .get_mut(&from)
                        .ok_or_else(|| StoreError::NotFound(format!("mailbox {}", from.0)))?;
                    changes.extend(expunge_in_tx(tx, src, &moved, &mut released).await?);
                }
                for c in locked.values() {
                    c.save(tx).await?;
                }
                // A move's releases cancel the copy's new references: one
                // adjustment, none at all when they cancel out.
                for (blob, n) in releases(released) {
                    *deltas.entry(blob).or_insert(0) += n;
                }
                deltas.retain(|_, n| *n != 0);
                if !deltas.is_empty() {
                    tx.adjust_blob_refs(&deltas).await?;
                }
                let account = locked[&to].mailbox.account;
                tx.announce(account, &changes);
                Ok((pairs, account, changes))
            })
        }))
        .await?;
    // No garbage: a moved message keeps its blob.
    publish(backend, vec![(account, changes)]);
    Ok(pairs)
}
