//! The embedded store's transaction primitives for the mail model. A job runs
//! on the writer thread inside the batch's transaction; every primitive is a
//! plain SQLite call, so the job's future completes in one poll
//! ([`run_ready`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::sql::{ThreadConnection, sql_execute, sql_query};
use super::{INLINE_MAX, Inner, find_mailbox, get_mailbox};
use crate::error::{StoreError, StoreResult};
use crate::model::MailTx;
use crate::model::prepare::PreparedMessage;
use crate::records::{SqlRow, SqlTx, SqlValue};
use crate::types::*;

/// Runs a future whose every await completes at once (a job over [`SqliteTx`]).
pub(super) fn run_ready<T>(future: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(v) => v,
        Poll::Pending => Err(StoreError::Internal(
            "a store job waited for something outside its transaction".into(),
        )),
    }
}

/// The writer connection inside its transaction. The writer thread is the
/// only writer, so "locking" a mailbox is reading it.
pub(super) struct SqliteTx<'c> {
    conn: ThreadConnection<'c>,
    inner: &'c Inner,
}

impl<'c> SqliteTx<'c> {
    /// Only on the writer thread, for a job run there by [`run_ready`].
    pub(super) fn new(conn: &'c Connection, inner: &'c Inner) -> SqliteTx<'c> {
        SqliteTx {
            conn: ThreadConnection::new(conn),
            inner,
        }
    }
}

#[async_trait]
impl SqlTx for SqliteTx<'_> {
    async fn execute(&mut self, sql: &'static str, params: &[SqlValue<'_>]) -> StoreResult<u64> {
        sql_execute(&self.conn, sql, params)
    }

    async fn query(
        &mut self,
        sql: &'static str,
        params: &[SqlValue<'_>],
    ) -> StoreResult<Vec<SqlRow>> {
        sql_query(&self.conn, sql, params)
    }

    /// The writer thread is the only writer: nothing to wait for.
    async fn lock_key(&mut self, _key: &str) -> StoreResult<()> {
        Ok(())
    }
}

#[async_trait]
impl MailTx for SqliteTx<'_> {
    async fn lock_mailboxes(&mut self, ids: &[MailboxId]) -> StoreResult<Vec<Mailbox>> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .map(|id| get_mailbox(&self.conn, id))
            .collect()
    }

    async fn find_mailbox(
        &mut self,
        account: AccountId,
        name: &str,
    ) -> StoreResult<Option<Mailbox>> {
        find_mailbox(&self.conn, account, name)
    }

    async fn next_uid_validity(&mut self, at_least: u32) -> StoreResult<UidValidity> {
        let last: Option<String> = self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = 'last_uidvalidity'")?
            .query_row([], |r| r.get(0))
            .optional()?;
        let last: u32 = last.and_then(|s| s.parse().ok()).unwrap_or(0);
        let next = at_least.max(last.saturating_add(1)).max(1);
        self.conn
            .prepare_cached(
                "INSERT INTO meta(key, value) VALUES('last_uidvalidity', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute([next.to_string()])?;
        Ok(UidValidity(next))
    }

    async fn remove_mailbox(&mut self, id: MailboxId) -> StoreResult<Vec<BlobId>> {
        let blobs = self
            .conn
            .prepare_cached("DELETE FROM messages WHERE mailbox_id = ?1 RETURNING blob")?
            .query_map([id.0], |r| Ok(BlobId(r.get(0)?)))?
            .collect::<Result<_, _>>()?;
        self.conn
            .prepare_cached("DELETE FROM expunged WHERE mailbox_id = ?1")?
            .execute([id.0])?;
        self.conn
            .prepare_cached("DELETE FROM mailboxes WHERE id = ?1")?
            .execute([id.0])?;
        Ok(blobs)
    }

    async fn messages(
        &mut self,
        mailbox: MailboxId,
        uids: &[Uid],
    ) -> StoreResult<Vec<MessageSummary>> {
        let mut get = self.conn.prepare_cached(
            "SELECT uid, modseq, size, internal_date, flags, blob, save_date FROM messages
             WHERE mailbox_id = ?1 AND uid = ?2",
        )?;
        let mut out = Vec::with_capacity(uids.len());
        for uid in uids {
            if let Some(m) = get
                .query_row(params![mailbox.0, uid.0], super::summary_from_row)
                .optional()?
            {
                out.push(m);
            }
        }
        Ok(out)
    }

    async fn insert_messages(
        &mut self,
        mailbox: MailboxId,
        modseq: ModSeq,
        rows: &[crate::model::MessageRow],
    ) -> StoreResult<()> {
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO messages(mailbox_id, uid, modseq, blob, size, internal_date, flags,
                                  save_date)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for r in rows {
            insert.execute(params![
                mailbox.0,
                r.uid.0,
                modseq.0 as i64,
                r.blob.0,
                r.size,
                r.internal_date,
                flags_to_string(&r.flags),
                r.save_date
            ])?;
        }
        Ok(())
    }

    async fn update_flags(
        &mut self,
        mailbox: MailboxId,
        modseq: ModSeq,
        rows: &[(Uid, FlagSet)],
    ) -> StoreResult<()> {
        let mut set = self.conn.prepare_cached(
            "UPDATE messages SET flags = ?3, modseq = ?4 WHERE mailbox_id = ?1 AND uid = ?2",
        )?;
        for (uid, flags) in rows {
            set.execute(params![
                mailbox.0,
                uid.0,
                flags_to_string(flags),
                modseq.0 as i64
            ])?;
        }
        Ok(())
    }

    async fn expunge_messages(
        &mut self,
        mailbox: MailboxId,
        modseq: ModSeq,
        uids: &[Uid],
    ) -> StoreResult<Vec<(Uid, BlobId, u32)>> {
        let mut delete = self.conn.prepare_cached(
            "DELETE FROM messages WHERE mailbox_id = ?1 AND uid = ?2 RETURNING blob, size",
        )?;
        let mut remember = self.conn.prepare_cached(
            "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) VALUES (?1, ?2, ?3)",
        )?;
        let mut gone = Vec::new();
        for uid in uids {
            let row: Option<(String, u32)> = delete
                .query_row(params![mailbox.0, uid.0], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((blob, size)) = row {
                remember.execute(params![mailbox.0, uid.0, modseq.0 as i64])?;
                gone.push((*uid, BlobId(blob), size));
            }
        }
        Ok(gone)
    }

    async fn add_blobs(&mut self, blobs: &[(&PreparedMessage, i64)]) -> StoreResult<()> {
        for (p, count) in blobs {
            self.conn
                .prepare_cached(
                    "INSERT INTO blobs(hash, size, refcount, parsed, search, search_text)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(hash) DO UPDATE SET refcount = refcount + excluded.refcount",
                )?
                .execute(params![
                    p.blob.0,
                    p.size,
                    count,
                    p.structure_json,
                    p.search_json,
                    p.search_text_json
                ])?;
            self.inner.index_signal.note_added();
            if p.raw.len() <= INLINE_MAX {
                self.conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO inline_blobs(hash, content) VALUES (?1, ?2)",
                    )?
                    .execute(params![p.blob.0, p.raw])?;
            } else if !self.inner.blobs.exists(&p.blob)? {
                // Under the write lock the collector cannot remove the file
                // now; it may have removed it since the model wrote it.
                self.inner.blobs.put_as(&p.blob, &p.raw)?;
            }
        }
        Ok(())
    }

    async fn set_search_fields(&mut self, rows: &[(BlobId, String)]) -> StoreResult<()> {
        let mut set = self
            .conn
            .prepare_cached("UPDATE blobs SET search = ?2 WHERE hash = ?1")?;
        for (blob, json) in rows {
            set.execute(params![blob.0, json])?;
        }
        Ok(())
    }

    async fn adjust_blob_refs(&mut self, deltas: &BTreeMap<BlobId, i64>) -> StoreResult<()> {
        let mut adjust = self
            .conn
            .prepare_cached("UPDATE blobs SET refcount = refcount + ?2 WHERE hash = ?1")?;
        for (blob, delta) in deltas {
            if *delta != 0 {
                adjust.execute(params![blob.0, delta])?;
            }
        }
        Ok(())
    }
}
