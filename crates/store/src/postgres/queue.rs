//! The shared store's outbound queue.

use async_trait::async_trait;

use super::pool::Conn;
use super::{PgStore, queued_from_row, rows};
use crate::error::{StoreError, StoreResult};
use crate::now_unix;
use crate::queue_store::QueueStore;
use crate::types::*;

#[async_trait]
impl QueueStore for PgStore {
    async fn enqueue(&self, new: NewQueued) -> StoreResult<QueueId> {
        insert_queued(&mut *self.conn().await?, &new).await
    }

    async fn queue_claim(&self, now: i64, lease: i64, limit: usize) -> StoreResult<Vec<Queued>> {
        // SKIP LOCKED: runners on other nodes claiming at the same moment take other
        // entries instead of waiting; the re-check under the row lock (READ
        // COMMITTED) skips entries another runner claimed since our snapshot.
        let r = self
            .conn()
            .await?
            .query(
                concat!(
                    "WITH due AS (
                         SELECT id AS due_id FROM queue
                         WHERE next_attempt <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)
                         ORDER BY next_attempt, id LIMIT $2
                         FOR UPDATE SKIP LOCKED)
                     UPDATE queue SET claimed_until = $3, claimed_by = $4
                     FROM due WHERE queue.id = due.due_id
                     RETURNING ",
                    queue_columns!()
                ),
                &[
                    &now,
                    &(limit.min(i64::MAX as usize) as i64),
                    &now.saturating_add(lease),
                    &self.inner.node_id,
                ],
            )
            .await?;
        let mut due = rows(r, queued_from_row)?;
        due.sort_by_key(|q| (q.next_attempt, q.id));
        Ok(due)
    }

    async fn queue_release_claims(&self) -> StoreResult<()> {
        self.conn()
            .await?
            .execute(
                "UPDATE queue SET claimed_until = NULL, claimed_by = NULL WHERE claimed_by = $1",
                &[&self.inner.node_id],
            )
            .await?;
        Ok(())
    }

    async fn queue_next_attempt(&self) -> StoreResult<Option<i64>> {
        Ok(self
            .conn()
            .await?
            // In index order, stopping at the first unclaimed entry: cheap
            // enough for every node's runner to ask every second.
            .query_opt(
                "SELECT next_attempt FROM queue WHERE claimed_until IS NULL
                 ORDER BY next_attempt LIMIT 1",
                &[],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    async fn queue_list(&self) -> StoreResult<Vec<Queued>> {
        let r = self
            .conn()
            .await?
            .query(
                concat!(
                    "SELECT ",
                    queue_columns!(),
                    " FROM queue ORDER BY created, id"
                ),
                &[],
            )
            .await?;
        rows(r, queued_from_row)
    }

    async fn queue_message(&self, id: QueueId) -> StoreResult<Vec<u8>> {
        let row = self
            .conn()
            .await?
            .query_opt("SELECT message FROM queue WHERE id = $1", &[&id.0])
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("queue entry {}", id.0)))?;
        Ok(row.try_get(0)?)
    }

    async fn queue_update(&self, entry: &Queued) -> StoreResult<()> {
        let e = entry;
        let recipients = serde_json::to_string(&e.recipients).map_err(StoreError::internal)?;
        let n = self
            .conn()
            .await?
            .execute(
                "UPDATE queue SET recipients = $2, next_attempt = $3, attempts = $4, last_error = $5,
                 expires = $6, claimed_until = NULL, claimed_by = NULL WHERE id = $1",
                &[
                    &e.id.0,
                    &recipients,
                    &e.next_attempt,
                    &(e.attempts as i64),
                    &e.last_error,
                    &e.expires,
                ],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("queue entry {}", e.id.0)));
        }
        Ok(())
    }

    async fn queue_retry(&self, id: Option<QueueId>, now: i64) -> StoreResult<QueueRetried> {
        // One statement. Under READ COMMITTED the UPDATE re-checks its WHERE on
        // a row a runner claimed meanwhile (after waiting for its lock), so a
        // claim that commits first is never overwritten. What matched in the
        // statement's snapshot and was not made due is held by a delivery (or
        // was claimed, or delivered and removed, at that very moment).
        let id = id.map(|i| i.0);
        let row = self
            .conn()
            .await?
            .query_one(
                "WITH due AS (
                     UPDATE queue SET next_attempt = $2
                     WHERE ($1::bigint IS NULL OR id = $1)
                       AND (claimed_until IS NULL OR claimed_until <= $2)
                     RETURNING id)
                 SELECT (SELECT count(*) FROM due),
                        (SELECT count(*) FROM queue WHERE $1::bigint IS NULL OR id = $1)",
                &[&id, &now],
            )
            .await?;
        let (due, matched): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        let in_delivery = (matched - due).max(0);
        if let Some(id) = id
            && due == 0
            && in_delivery == 0
        {
            return Err(StoreError::NotFound(format!("queue entry {id}")));
        }
        Ok(QueueRetried {
            due: due as u64,
            in_delivery: in_delivery as u64,
        })
    }

    async fn queue_remove(&self, id: QueueId) -> StoreResult<()> {
        let n = self
            .conn()
            .await?
            .execute("DELETE FROM queue WHERE id = $1", &[&id.0])
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("queue entry {}", id.0)));
        }
        Ok(())
    }
}

/// The one INSERT of a queue entry, due at once: for [`QueueStore::enqueue`]
/// and, inside a delivery's transaction, for the mail model's `enqueue`.
pub(super) async fn insert_queued(conn: &mut Conn, new: &NewQueued) -> StoreResult<QueueId> {
    let recipients = serde_json::to_string(&new.recipients).map_err(StoreError::internal)?;
    let now = now_unix();
    let row = conn
        .query_one(
            "INSERT INTO queue(sender, account_id, recipients, message, envid, ret, created, expires, next_attempt)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7) RETURNING id",
            &[
                &new.sender,
                &new.account.map(|a| a.0),
                &recipients,
                &new.message,
                &new.envid,
                &new.ret,
                &now,
                &new.expires,
            ],
        )
        .await?;
    Ok(QueueId(row.try_get(0)?))
}
