//! [`QueueStore`] written once for every backend: the outbound queue as SQL
//! over [`SqlTx`].
//!
//! Claims: a runner takes due entries for a lease, marked with its node's
//! name ([`MailBackend::node_name`]) so the node can take its own back after a
//! restart. On PostgreSQL the due entries are picked `FOR UPDATE SKIP
//! LOCKED`: runners on other nodes claiming at the same moment take other
//! entries instead of waiting, and the WHERE is checked again on a row that
//! changed since the snapshot (READ COMMITTED), so an entry claimed meanwhile
//! is skipped. The embedded store's writes never overlap.

use async_trait::async_trait;

use super::sql::{ReadCost, SqlRow, SqlTx, SqlValue, sql_job};
use super::{read_row, read_rows};
use crate::error::{StoreError, StoreResult};
use crate::model::{MailBackend, job};
use crate::now_unix;
use crate::queue_store::QueueStore;
use crate::types::*;

/// An entry's columns (in [`queued_from_row`]'s order, the message's length
/// for its bytes) and `$rest`.
macro_rules! queue_columns {
    ($rest:literal) => {
        concat!(
            "id, sender, account_id, recipients, length(message), envid, ret, created, \
             expires, next_attempt, attempts, last_error, claimed_until ",
            $rest
        )
    };
}

fn queued_from_row(r: &SqlRow) -> StoreResult<Queued> {
    Ok(Queued {
        id: QueueId(r.int(0)?),
        sender: r.text(1)?,
        account: r.opt_int(2)?.map(AccountId),
        recipients: serde_json::from_str(&r.text(3)?).unwrap_or_default(),
        size: r.int(4)? as u64,
        envid: r.opt_text(5)?,
        ret: r.opt_text(6)?,
        created: r.int(7)?,
        expires: r.int(8)?,
        next_attempt: r.int(9)?,
        attempts: r.int(10)?.clamp(0, u32::MAX as i64) as u32,
        last_error: r.opt_text(11)?,
        claimed_until: r.opt_int(12)?,
    })
}

fn not_found(id: i64) -> StoreError {
    StoreError::NotFound(format!("queue entry {id}"))
}

/// The one INSERT of a queue entry, due at once: for [`QueueStore::enqueue`]
/// and, inside a delivery's transaction, for the mail model's
/// `deliver_and_queue` (a submission's local copies and its queue entry
/// commit together).
pub async fn insert_queued(tx: &mut dyn SqlTx, new: &NewQueued) -> StoreResult<QueueId> {
    let recipients = serde_json::to_string(&new.recipients).map_err(StoreError::internal)?;
    let now = now_unix();
    let row = tx
        .query_one(
            "INSERT INTO queue(sender, account_id, recipients, message, envid, ret,
                 created, expires, next_attempt)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7) RETURNING id",
            &[
                SqlValue::text(&new.sender),
                SqlValue::opt_int(new.account.map(|a| a.0)),
                SqlValue::text(&recipients),
                SqlValue::Bytes(new.message.as_slice().into()),
                SqlValue::opt_text(new.envid.as_deref()),
                SqlValue::opt_text(new.ret.as_deref()),
                SqlValue::Int(now),
                SqlValue::Int(new.expires),
            ],
        )
        .await?;
    Ok(QueueId(row.int(0)?))
}

#[async_trait]
impl<B: MailBackend> QueueStore for B {
    async fn enqueue(&self, new: NewQueued) -> StoreResult<QueueId> {
        self.transact(job(move |tx| {
            Box::pin(async move { insert_queued(tx, &new).await })
        }))
        .await
    }

    async fn queue_claim(&self, now: i64, lease: i64, limit: usize) -> StoreResult<Vec<Queued>> {
        let node = self.node_name().to_string();
        let limit = limit.min(i64::MAX as usize) as i64;
        self.transact(job(move |tx| {
            Box::pin(async move {
                let due = tx
                    .query(
                        "SELECT id FROM queue
                         WHERE next_attempt <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)
                         ORDER BY next_attempt, id LIMIT $2 FOR UPDATE SKIP LOCKED",
                        &[SqlValue::Int(now), SqlValue::Int(limit)],
                    )
                    .await?;
                let mut claimed = Vec::with_capacity(due.len());
                for row in due {
                    let found = tx
                        .query_opt(
                            concat!(
                                "UPDATE queue SET claimed_until = $2, claimed_by = $3
                                 WHERE id = $1 RETURNING ",
                                queue_columns!("")
                            ),
                            &[
                                SqlValue::Int(row.int(0)?),
                                SqlValue::Int(now.saturating_add(lease)),
                                SqlValue::text(&node),
                            ],
                        )
                        .await?;
                    if let Some(found) = found {
                        claimed.push(queued_from_row(&found)?);
                    }
                }
                claimed.sort_by_key(|q| (q.next_attempt, q.id));
                Ok(claimed)
            })
        }))
        .await
    }

    async fn queue_release_claims(&self) -> StoreResult<()> {
        let node = self.node_name().to_string();
        self.transact(job(move |tx| {
            Box::pin(async move {
                tx.execute(
                    "UPDATE queue SET claimed_until = NULL, claimed_by = NULL
                     WHERE claimed_by = $1",
                    &[SqlValue::text(&node)],
                )
                .await?;
                Ok(())
            })
        }))
        .await
    }

    async fn queue_next_attempt(&self) -> StoreResult<Option<i64>> {
        // In index order, stopping at the first unclaimed entry: cheap enough
        // for every node's runner to ask every second.
        read_row(
            self,
            "SELECT next_attempt FROM queue WHERE claimed_until IS NULL
             ORDER BY next_attempt LIMIT 1",
            Vec::new(),
            |r| r.int(0),
        )
        .await
    }

    async fn queue_list(&self) -> StoreResult<Vec<Queued>> {
        read_rows(
            self,
            ReadCost::Large,
            concat!("SELECT ", queue_columns!("FROM queue ORDER BY created, id")),
            Vec::new(),
            queued_from_row,
        )
        .await
    }

    async fn queue_message(&self, id: QueueId) -> StoreResult<Vec<u8>> {
        self.read_records(
            ReadCost::Large,
            sql_job(move |c| {
                Box::pin(async move {
                    c.query_opt(
                        "SELECT message FROM queue WHERE id = $1",
                        &[SqlValue::Int(id.0)],
                    )
                    .await?
                    .ok_or_else(|| not_found(id.0))?
                    .into_bytes(0)
                })
            }),
        )
        .await
    }

    async fn queue_update(&self, entry: &Queued) -> StoreResult<()> {
        let e = entry.clone();
        let recipients = serde_json::to_string(&e.recipients).map_err(StoreError::internal)?;
        self.transact(job(move |tx| {
            Box::pin(async move {
                let n = tx
                    .execute(
                        "UPDATE queue SET recipients = $2, next_attempt = $3, attempts = $4,
                             last_error = $5, expires = $6, claimed_until = NULL,
                             claimed_by = NULL
                         WHERE id = $1",
                        &[
                            SqlValue::Int(e.id.0),
                            SqlValue::text(&recipients),
                            SqlValue::Int(e.next_attempt),
                            SqlValue::Int(i64::from(e.attempts)),
                            SqlValue::opt_text(e.last_error.as_deref()),
                            SqlValue::Int(e.expires),
                        ],
                    )
                    .await?;
                if n == 0 {
                    return Err(not_found(e.id.0));
                }
                Ok(())
            })
        }))
        .await
    }

    async fn queue_retry(&self, id: Option<QueueId>, now: i64) -> StoreResult<QueueRetried> {
        self.transact(job(move |tx| {
            Box::pin(async move {
                // The UPDATE touches only entries no runner holds: under READ
                // COMMITTED it checks its WHERE again on a row claimed
                // meanwhile (after waiting for its lock), so a claim that
                // commits first is never overwritten. What it matched and did
                // not make due is held by a delivery; the entries it made due
                // stay locked until this commits, so the count after it is
                // consistent with it.
                let now = SqlValue::Int(now);
                let (due, matched) = match id {
                    Some(id) => {
                        let params = [SqlValue::Int(id.0), now];
                        let due = tx
                            .execute(
                                "UPDATE queue SET next_attempt = $2
                                 WHERE id = $1 AND (claimed_until IS NULL OR claimed_until <= $2)",
                                &params,
                            )
                            .await?;
                        let matched = tx
                            .query_one("SELECT count(*) FROM queue WHERE id = $1", &params[..1])
                            .await?
                            .int(0)?;
                        (due, matched)
                    }
                    None => {
                        let params = [now];
                        let due = tx
                            .execute(
                                "UPDATE queue SET next_attempt = $1
                                 WHERE claimed_until IS NULL OR claimed_until <= $1",
                                &params,
                            )
                            .await?;
                        let matched = tx
                            .query_one("SELECT count(*) FROM queue", &[])
                            .await?
                            .int(0)?;
                        (due, matched)
                    }
                };
                let in_delivery = (matched - due as i64).max(0) as u64;
                if let Some(id) = id
                    && due == 0
                    && in_delivery == 0
                {
                    return Err(not_found(id.0));
                }
                Ok(QueueRetried { due, in_delivery })
            })
        }))
        .await
    }

    async fn queue_remove(&self, id: QueueId) -> StoreResult<()> {
        self.transact(job(move |tx| {
            Box::pin(async move {
                let n = tx
                    .execute("DELETE FROM queue WHERE id = $1", &[SqlValue::Int(id.0)])
                    .await?;
                if n == 0 {
                    return Err(not_found(id.0));
                }
                Ok(())
            })
        }))
        .await
    }
}
