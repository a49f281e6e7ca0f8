//! [`LifecycleStore`] for every backend: expunged messages kept recoverable
//! (their blob references move from the message rows to `recoverable` rows),
//! restored with new UIDs, purged for good; the messages retention takes out
//! of Deleted Items and Junk are found by SAVEDATE (RFC 8514) and expunged
//! like any other, so they become recoverable too.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::changes::Change;
use crate::error::StoreResult;
use crate::lifecycle_store::{
    LifecycleStore, RecoverFilter, RecoverableItem, Restored, RetentionRun, Usage,
};
use crate::model::backend::{MailBackend, MailTx, MessageRow, job};
use crate::model::mailboxes::create_in_tx;
use crate::model::messages::{lock_counters, publish, releases};
use crate::records::{ReadCost, SqlRow, SqlTx, SqlValue, sql_job};
use crate::types::*;

/// How many retention runs are kept.
const RUNS_KEPT: i64 = 100;

/// Keeps messages of a locked mailbox recoverable before they are expunged
/// (`uids`) or the mailbox is deleted (`None`: all of them): a recoverable row
/// per message, holding the reference its message row held.
pub(super) async fn keep_recoverable(
    tx: &mut dyn MailTx,
    mailbox: &Mailbox,
    uids: Option<&[Uid]>,
    now: i64,
) -> StoreResult<()> {
    let head = [
        SqlValue::Int(mailbox.account.0),
        SqlValue::text(&mailbox.name),
        SqlValue::Int(now),
        SqlValue::Int(mailbox.id.0),
    ];
    match uids {
        None => {
            tx.execute(
                "INSERT INTO recoverable(account_id, folder, blob, size, internal_date, flags,
                     deleted_at)
                 SELECT $1, $2, blob, size, internal_date, flags, $3
                 FROM messages WHERE mailbox_id = $4 ORDER BY uid",
                &head,
            )
            .await?;
        }
        Some(uids) => {
            let mut uids = uids.to_vec();
            uids.sort_unstable();
            uids.dedup();
            for uid in uids {
                let mut params = head.to_vec();
                params.push(SqlValue::Int(uid.0 as i64));
                tx.execute(
                    "INSERT INTO recoverable(account_id, folder, blob, size, internal_date,
                         flags, deleted_at)
                     SELECT $1, $2, blob, size, internal_date, flags, $3
                     FROM messages WHERE mailbox_id = $4 AND uid = $5",
                    &params,
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Removes the account's recoverable items inside an open transaction
/// (deleting the account), releasing their blobs.
pub async fn forget_recoverable_in_tx(tx: &mut dyn MailTx, account: AccountId) -> StoreResult<()> {
    let blobs = tx
        .query(
            "DELETE FROM recoverable WHERE account_id = $1 RETURNING blob",
            &[SqlValue::Int(account.0)],
        )
        .await?
        .iter()
        .map(|r| Ok(BlobId(r.text(0)?)))
        .collect::<StoreResult<Vec<_>>>()?;
    tx.adjust_blob_refs(&releases(blobs)).await
}

macro_rules! recoverable_columns {
    ($rest:literal) => {
        concat!(
            "SELECT id, account_id, folder, blob, size, internal_date, flags, deleted_at \
             FROM recoverable ",
            $rest
        )
    };
}

fn item_from_row(r: &SqlRow) -> StoreResult<RecoverableItem> {
    Ok(RecoverableItem {
        id: r.int(0)?,
        account: AccountId(r.int(1)?),
        folder: r.text(2)?,
        blob: BlobId(r.text(3)?),
        size: r.int(4)?.clamp(0, u32::MAX as i64) as u32,
        internal_date: r.int(5)?,
        flags: flags_from_string(&r.text(6)?),
        deleted_at: r.int(7)?,
    })
}

fn run_from_row(r: &SqlRow) -> StoreResult<RetentionRun> {
    let count = |i| r.int(i).map(|n| n.max(0) as u64);
    Ok(RetentionRun {
        node: r.text(0)?,
        started: r.int(1)?,
        finished: r.int(2)?,
        expired: count(3)?,
        purged: count(4)?,
        error: r.opt_text(5)?,
    })
}

fn limit(n: usize) -> SqlValue<'static> {
    SqlValue::Int(n.min(i64::MAX as usize) as i64)
}

#[async_trait]
impl<B: MailBackend> LifecycleStore for B {
    fn time_source(&self) -> &crate::Clock {
        self.clock()
    }

    async fn saved_before(
        &self,
        mailbox: MailboxId,
        saved_before: i64,
        limit_to: usize,
    ) -> StoreResult<Vec<Uid>> {
        let params = vec![
            SqlValue::Int(mailbox.0),
            SqlValue::Int(saved_before),
            limit(limit_to),
        ];
        crate::records::read_rows(
            self,
            ReadCost::Large,
            // A row without a save date (0: written by a node older than
            // the schema) is never taken as old.
            "SELECT uid FROM messages WHERE mailbox_id = $1 AND save_date > 0
                 AND save_date < $2
             ORDER BY uid LIMIT $3",
            params,
            |r| Ok(Uid(r.int(0)?.clamp(0, u32::MAX as i64) as u32)),
        )
        .await
    }

    async fn purge_recoverable(&self, deleted_before: i64, limit_to: usize) -> StoreResult<u64> {
        let n = self
            .transact(job(move |tx| {
                Box::pin(async move {
                    let blobs = tx
                        .query(
                            "DELETE FROM recoverable WHERE id IN (
                                 SELECT id FROM recoverable WHERE deleted_at < $1
                                 ORDER BY deleted_at, id LIMIT $2)
                             RETURNING blob",
                            &[SqlValue::Int(deleted_before), limit(limit_to)],
                        )
                        .await?
                        .iter()
                        .map(|r| Ok(BlobId(r.text(0)?)))
                        .collect::<StoreResult<Vec<_>>>()?;
                    let n = blobs.len() as u64;
                    tx.adjust_blob_refs(&releases(blobs)).await?;
                    Ok(n)
                })
            }))
            .await?;
        if n > 0 {
            self.collect_garbage().await?;
        }
        Ok(n)
    }

    async fn recoverable(
        &self,
        account: AccountId,
        filter: &RecoverFilter,
    ) -> StoreResult<Vec<RecoverableItem>> {
        let params = vec![
            SqlValue::Int(account.0),
            SqlValue::Int(filter.since.unwrap_or(i64::MIN)),
        ];
        let mut items = crate::records::read_rows(
            self,
            ReadCost::Large,
            recoverable_columns!(
                "WHERE account_id = $1 AND deleted_at >= $2 ORDER BY deleted_at, id"
            ),
            params,
            item_from_row,
        )
        .await?;
        if let Some(folder) = &filter.folder {
            let wanted = super::names::canonical_name(folder);
            items.retain(|i| i.folder == wanted);
        }
        Ok(items)
    }

    async fn restore_recoverable(
        &self,
        account: AccountId,
        ids: &[i64],
    ) -> StoreResult<Vec<Restored>> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let now = self.clock().now();
        let (restored, changes) = self
            .transact(job(move |tx| {
                Box::pin(async move { restore_in_tx(tx, account, &ids, now).await })
            }))
            .await?;
        publish(self, vec![(account, changes)]);
        Ok(restored)
    }

    async fn usage(&self, account: AccountId) -> StoreResult<Usage> {
        let rows = crate::records::read_rows(
            self,
            ReadCost::Small,
            "SELECT total_size, message_count FROM mailboxes WHERE account_id = $1",
            vec![SqlValue::Int(account.0)],
            |r| Ok((r.int(0)?.max(0) as u64, r.int(1)?.max(0) as u64)),
        )
        .await?;
        Ok(rows.into_iter().fold(Usage::default(), |u, (b, m)| Usage {
            bytes: u.bytes.saturating_add(b),
            messages: u.messages.saturating_add(m),
        }))
    }

    async fn record_retention_run(&self, run: &RetentionRun) -> StoreResult<()> {
        let run = run.clone();
        self.transact(job(move |tx| {
            Box::pin(async move {
                let count = |n: u64| SqlValue::Int(n.min(i64::MAX as u64) as i64);
                tx.execute(
                    "INSERT INTO retention_runs(node, started, finished, expired, purged, error)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        SqlValue::text(&run.node),
                        SqlValue::Int(run.started),
                        SqlValue::Int(run.finished),
                        count(run.expired),
                        count(run.purged),
                        SqlValue::opt_text(run.error.as_deref()),
                    ],
                )
                .await?;
                tx.execute(
                    "DELETE FROM retention_runs WHERE id <= (
                         SELECT id FROM retention_runs ORDER BY id DESC LIMIT 1 OFFSET $1)",
                    &[SqlValue::Int(RUNS_KEPT)],
                )
                .await?;
                Ok(())
            })
        }))
        .await
    }

    async fn retention_runs(&self, limit_to: usize) -> StoreResult<Vec<RetentionRun>> {
        self.read_records(
            ReadCost::Small,
            sql_job(move |c: &mut dyn SqlTx| {
                Box::pin(async move {
                    c.query(
                        "SELECT node, started, finished, expired, purged, error
                         FROM retention_runs ORDER BY id DESC LIMIT $1",
                        &[limit(limit_to)],
                    )
                    .await?
                    .iter()
                    .map(run_from_row)
                    .collect()
                })
            }),
        )
        .await
    }
}

/// Restores recoverable items inside a transaction: each to the mailbox of
/// its folder's name (made again when gone), under one new MODSEQ per
/// mailbox, with SAVEDATE now. The reference each item held moves to its new
/// message row.
async fn restore_in_tx(
    tx: &mut dyn MailTx,
    account: AccountId,
    ids: &[i64],
    now: i64,
) -> StoreResult<(Vec<Restored>, Vec<Change>)> {
    let mut items = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(row) = tx
            .query_opt(
                recoverable_columns!("WHERE id = $1 AND account_id = $2 FOR UPDATE"),
                &[SqlValue::Int(*id), SqlValue::Int(account.0)],
            )
            .await?
        {
            items.push(item_from_row(&row)?);
        }
    }
    // The mailbox of each folder, made again where it is gone.
    let mut folders: BTreeMap<String, MailboxId> = BTreeMap::new();
    let mut made = false;
    for item in &items {
        if folders.contains_key(&item.folder) {
            continue;
        }
        let mailbox = match tx.find_mailbox(account, &item.folder).await? {
            Some(mb) => mb,
            None => {
                made = true;
                create_in_tx(tx, account, &item.folder, None).await?
            }
        };
        folders.insert(item.folder.clone(), mailbox.id);
    }
    let ids: Vec<MailboxId> = folders.values().copied().collect();
    let mut locked = lock_counters(tx, &ids).await?;
    let mut restored = Vec::with_capacity(items.len());
    let mut rows: BTreeMap<MailboxId, Vec<MessageRow>> = BTreeMap::new();
    let mut changes = Vec::new();
    for item in &items {
        let mailbox = folders[&item.folder];
        let c = locked
            .get_mut(&mailbox)
            .ok_or_else(|| crate::StoreError::NotFound(format!("mailbox {}", mailbox.0)))?;
        let uid = c.next_uid()?;
        let modseq = c.modseq();
        c.add(item.size);
        // Most were expunged because they were \Deleted: a restored message
        // is not, or the next EXPUNGE would take it again.
        let mut flags = item.flags.clone();
        flags.remove(&Flag::Deleted);
        rows.entry(mailbox).or_default().push(MessageRow {
            uid,
            blob: item.blob.clone(),
            size: item.size,
            internal_date: item.internal_date,
            save_date: now,
            flags,
        });
        changes.push(Change::Appended {
            mailbox,
            uid,
            modseq,
        });
        restored.push(Restored {
            id: item.id,
            mailbox,
            folder: item.folder.clone(),
            uid,
        });
        tx.execute(
            "DELETE FROM recoverable WHERE id = $1",
            &[SqlValue::Int(item.id)],
        )
        .await?;
    }
    for (mailbox, rows) in &rows {
        let c = &locked[mailbox];
        if let Some(modseq) = c.modseq_taken() {
            tx.insert_messages(*mailbox, modseq, rows).await?;
        }
        c.save(tx).await?;
    }
    if made {
        changes.push(Change::MailboxList);
    }
    tx.announce(account, &changes);
    Ok((restored, changes))
}
