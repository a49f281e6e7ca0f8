//! The embedded store's outbound queue.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{ReadSize, SqliteStore};
use crate::error::{StoreError, StoreResult};
use crate::now_unix;
use crate::queue_store::QueueStore;
use crate::types::*;

const QUEUE_COLUMNS: &str = "id, sender, account_id, recipients, length(message), envid, ret, created, expires, next_attempt, attempts, last_error, claimed_until";

fn queued_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Queued> {
    let recipients: String = r.get(3)?;
    Ok(Queued {
        id: QueueId(r.get(0)?),
        sender: r.get(1)?,
        account: r.get::<_, Option<i64>>(2)?.map(AccountId),
        recipients: serde_json::from_str(&recipients).unwrap_or_default(),
        size: r.get::<_, i64>(4)? as u64,
        envid: r.get(5)?,
        ret: r.get(6)?,
        created: r.get(7)?,
        expires: r.get(8)?,
        next_attempt: r.get(9)?,
        attempts: r.get(10)?,
        last_error: r.get(11)?,
        claimed_until: r.get(12)?,
    })
}

#[async_trait]
impl QueueStore for SqliteStore {
    async fn enqueue(&self, new: NewQueued) -> StoreResult<QueueId> {
        self.write(move |tx, _| insert_queued(tx, &new)).await
    }

    async fn queue_claim(&self, now: i64, lease: i64, limit: usize) -> StoreResult<Vec<Queued>> {
        self.write(move |tx, _| {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {QUEUE_COLUMNS} FROM queue
                 WHERE next_attempt <= ?1 AND (claimed_until IS NULL OR claimed_until <= ?1)
                 ORDER BY next_attempt, id LIMIT ?2"
            ))?;
            let due: Vec<Queued> = stmt
                .query_map(params![now, limit as i64], queued_from_row)?
                .collect::<Result<_, _>>()?;
            let mut due = due;
            for q in &mut due {
                tx.prepare_cached("UPDATE queue SET claimed_until = ?2 WHERE id = ?1")?
                    .execute(params![q.id.0, now + lease])?;
                q.claimed_until = Some(now + lease);
            }
            Ok(due)
        })
        .await
    }

    async fn queue_release_claims(&self) -> StoreResult<()> {
        // One node owns the embedded store: every claim is ours.
        self.write(|tx, _| {
            tx.prepare_cached(
                "UPDATE queue SET claimed_until = NULL WHERE claimed_until IS NOT NULL",
            )?
            .execute([])?;
            Ok(())
        })
        .await
    }

    async fn queue_next_attempt(&self) -> StoreResult<Option<i64>> {
        self.read(ReadSize::Small, |c| {
            Ok(
                // In index order, stopping at the first unclaimed entry: cheap
                // enough for the runner to ask every second.
                c.prepare_cached(
                    "SELECT next_attempt FROM queue WHERE claimed_until IS NULL
                     ORDER BY next_attempt LIMIT 1",
                )?
                .query_row([], |r| r.get(0))
                .optional()?,
            )
        })
        .await
    }

    async fn queue_list(&self) -> StoreResult<Vec<Queued>> {
        self.read(ReadSize::Large, |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {QUEUE_COLUMNS} FROM queue ORDER BY created, id"
            ))?;
            Ok(stmt
                .query_map([], queued_from_row)?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn queue_message(&self, id: QueueId) -> StoreResult<Vec<u8>> {
        self.read(ReadSize::Large, move |c| {
            c.prepare_cached("SELECT message FROM queue WHERE id = ?1")?
                .query_row([id.0], |r| r.get(0))
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("queue entry {}", id.0)))
        })
        .await
    }

    async fn queue_update(&self, entry: &Queued) -> StoreResult<()> {
        let e = entry.clone();
        self.write(move |tx, _| {
            let recipients = serde_json::to_string(&e.recipients).map_err(StoreError::internal)?;
            let n = tx
                .prepare_cached(
                    "UPDATE queue SET recipients = ?2, next_attempt = ?3, attempts = ?4,
                 last_error = ?5,
                 expires = ?6, claimed_until = NULL WHERE id = ?1",
                )?
                .execute(params![
                    e.id.0,
                    recipients,
                    e.next_attempt,
                    e.attempts,
                    e.last_error,
                    e.expires
                ])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("queue entry {}", e.id.0)));
            }
            Ok(())
        })
        .await
    }

    async fn queue_retry(&self, id: Option<QueueId>, now: i64) -> StoreResult<QueueRetried> {
        self.write(move |tx, _| {
            let id = id.map(|i| i.0);
            let due = tx
                .prepare_cached(
                    "UPDATE queue SET next_attempt = ?2
                     WHERE (?1 IS NULL OR id = ?1)
                       AND (claimed_until IS NULL OR claimed_until <= ?2)",
                )?
                .execute(params![id, now])? as u64;
            let in_delivery: i64 = tx
                .prepare_cached(
                    "SELECT count(*) FROM queue
                     WHERE (?1 IS NULL OR id = ?1) AND claimed_until > ?2",
                )?
                .query_row(params![id, now], |r| r.get(0))?;
            if let Some(id) = id
                && due == 0
                && in_delivery == 0
            {
                return Err(StoreError::NotFound(format!("queue entry {id}")));
            }
            Ok(QueueRetried {
                due,
                in_delivery: in_delivery as u64,
            })
        })
        .await
    }

    async fn queue_remove(&self, id: QueueId) -> StoreResult<()> {
        self.write(move |tx, _| {
            if tx
                .prepare_cached("DELETE FROM queue WHERE id = ?1")?
                .execute([id.0])?
                == 0
            {
                return Err(StoreError::NotFound(format!("queue entry {}", id.0)));
            }
            Ok(())
        })
        .await
    }
}

/// The one INSERT of a queue entry, due at once: for [`QueueStore::enqueue`]
/// and, inside a delivery's transaction, for the mail model's `enqueue`.
pub(super) fn insert_queued(conn: &rusqlite::Connection, new: &NewQueued) -> StoreResult<QueueId> {
    let recipients = serde_json::to_string(&new.recipients).map_err(StoreError::internal)?;
    let now = now_unix();
    conn.prepare_cached(
        "INSERT INTO queue(sender, account_id, recipients, message, envid, ret,
         created, expires, next_attempt)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?7)",
    )?
    .execute(params![
        new.sender,
        new.account.map(|a| a.0),
        recipients,
        new.message,
        new.envid,
        new.ret,
        now,
        new.expires
    ])?;
    Ok(QueueId(conn.last_insert_rowid()))
}
