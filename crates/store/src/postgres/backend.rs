//! The shared store as a backend of the mail model: its transaction runner
//! (fenced for a POP3 session's writes), plain reads, and its blob store
//! (bytes in the `blobs` rows, written with the metadata).

use async_trait::async_trait;

use super::mail_tx::PgTx;
use super::sql::PgReader;
use super::{
    MAX_MESSAGE_SIZE, PgStore, find_mailbox, get_mailbox, locks, mailbox_from_row,
    not_found_mailbox, rows, search_fields_of, summary_from_row, valid_blob_id,
};
use crate::blob::BlobStore;
use crate::changes::ChangeFeed;
use crate::error::{StoreError, StoreResult};
use crate::maildrop::MaildropLock;
use crate::model::{MailBackend, ParsedCaches, TxJob};
use crate::records::{ReadCost, SqlJob};
use crate::types::*;
use crate::{MessageStructure, SearchFields};

/// A MODSEQ as a query parameter (PostgreSQL has no unsigned 64-bit type).
fn modseq_param(m: ModSeq) -> i64 {
    m.0.min(i64::MAX as u64) as i64
}

#[async_trait]
impl MailBackend for PgStore {
    async fn transact<T: Send + 'static>(&self, job: TxJob<T>) -> StoreResult<T> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let result = async {
            // A POP3 session's write: refused unless its maildrop lease is
            // still its own (`locks`, invariant point 3).
            if let Some(fence) = self.fence {
                locks::check_fence(&mut tx, fence).await?;
            }
            let mut mail = PgTx {
                tx: &mut tx,
                instance: &self.inner.instance,
            };
            job(&mut mail).await
        }
        .await;
        match result {
            Ok(v) => tx.commit().await.map(|()| v),
            Err(e) => {
                tx.rollback().await;
                Err(e)
            }
        }
    }

    fn blobs(&self) -> &dyn BlobStore {
        self
    }

    fn feed(&self) -> &ChangeFeed {
        &self.inner.feed
    }

    fn caches(&self) -> &ParsedCaches {
        &self.inner.caches
    }

    fn clock(&self) -> &crate::Clock {
        &self.inner.clock
    }

    async fn mailboxes(&self, account: AccountId) -> StoreResult<Vec<Mailbox>> {
        let r = self
            .conn()
            .await?
            .query(
                concat!(
                    "SELECT ",
                    mailbox_columns!(),
                    " FROM mailboxes WHERE account_id = $1 ORDER BY name"
                ),
                &[&account.0],
            )
            .await?;
        rows(r, mailbox_from_row)
    }

    async fn mailbox(&self, id: MailboxId) -> StoreResult<Mailbox> {
        get_mailbox(&mut *self.conn().await?, id).await
    }

    async fn find_mailbox(&self, account: AccountId, name: &str) -> StoreResult<Option<Mailbox>> {
        find_mailbox(&mut *self.conn().await?, account, name).await
    }

    async fn list_messages(&self, mailbox: MailboxId) -> StoreResult<Vec<MessageSummary>> {
        let mut conn = self.conn().await?;
        let r = conn
            .query(
                concat!(
                    "SELECT ",
                    summary_columns!(),
                    " FROM messages WHERE mailbox_id = $1 ORDER BY uid"
                ),
                &[&mailbox.0],
            )
            .await?;
        if r.is_empty() {
            // Distinguish "no such mailbox" from "empty".
            get_mailbox(&mut conn, mailbox).await?;
        }
        rows(r, summary_from_row)
    }

    async fn changed_since(
        &self,
        mailbox: MailboxId,
        since: ModSeq,
    ) -> StoreResult<Vec<MessageSummary>> {
        let r = self
            .conn()
            .await?
            .query(
                concat!(
                    "SELECT ",
                    summary_columns!(),
                    " FROM messages WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid"
                ),
                &[&mailbox.0, &modseq_param(since)],
            )
            .await?;
        rows(r, summary_from_row)
    }

    async fn expunged_since(&self, mailbox: MailboxId, since: ModSeq) -> StoreResult<Vec<Uid>> {
        let r = self
            .conn()
            .await?
            .query(
                "SELECT uid FROM expunged WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid",
                &[&mailbox.0, &modseq_param(since)],
            )
            .await?;
        r.iter()
            .map(|r| Ok(Uid(r.try_get::<_, i64>(0)? as u32)))
            .collect()
    }

    async fn structures(&self, blobs: Vec<BlobId>) -> StoreResult<Vec<Option<MessageStructure>>> {
        // Rows from before the split hold the whole ParsedMessage in `parsed`;
        // MessageStructure reads it all the same.
        let found = self
            .blob_rows(
                &blobs,
                "SELECT hash, parsed FROM blobs WHERE hash = ANY($1)",
            )
            .await?;
        blobs
            .iter()
            .map(|b| match found.get(&b.0) {
                Some(row) => {
                    let json: String = row.try_get(1)?;
                    serde_json::from_str::<MessageStructure>(&json)
                        .map(Some)
                        .map_err(StoreError::internal)
                }
                None => Ok(None),
            })
            .collect()
    }

    async fn search_fields(
        &self,
        blobs: Vec<BlobId>,
        text: bool,
    ) -> StoreResult<Vec<Option<SearchFields>>> {
        let sql = if text {
            "SELECT hash, search, search_text, CASE WHEN search IS NULL THEN parsed END
             FROM blobs WHERE hash = ANY($1)"
        } else {
            "SELECT hash, search, NULL::text, CASE WHEN search IS NULL THEN parsed END
             FROM blobs WHERE hash = ANY($1)"
        };
        let found = self.blob_rows(&blobs, sql).await?;
        blobs
            .iter()
            .map(|b| {
                found
                    .get(&b.0)
                    .map(|r| search_fields_of(r, text))
                    .transpose()
            })
            .collect()
    }

    async fn raise_recent(&self, mailbox: MailboxId, up_to: Uid) -> StoreResult<Uid> {
        // One statement: the CTE locks the row and reads the old watermark,
        // the UPDATE raises it (never lowers).
        let row = self
            .conn()
            .await?
            .query_opt(
                "WITH old AS (SELECT id, recent_uid FROM mailboxes WHERE id = $1 FOR UPDATE)
                 UPDATE mailboxes SET recent_uid = GREATEST(old.recent_uid, $2)
                 FROM old WHERE mailboxes.id = old.id
                 RETURNING old.recent_uid",
                &[&mailbox.0, &(up_to.0 as i64)],
            )
            .await?
            .ok_or_else(|| not_found_mailbox(mailbox))?;
        Ok(Uid(row.try_get::<_, i64>(0)? as u32))
    }

    async fn lock_maildrop(&self, account: AccountId) -> StoreResult<MaildropLock> {
        locks::lock(self, account).await
    }

    /// Every cost alike: the pool's connections wait on the network, not on
    /// a thread.
    async fn read_records<T: Send + 'static>(
        &self,
        _cost: ReadCost,
        job: SqlJob<T>,
    ) -> StoreResult<T> {
        let mut reader = PgReader(self.conn().await?);
        job(&mut reader).await
    }

    fn node_name(&self) -> &str {
        &self.inner.node_id
    }
}

/// Bytes live in the `blobs` row beside the parsed metadata and travel in the
/// appending transaction itself; deleting the row (at refcount zero, in the
/// transaction that released the last reference) is the collection.
#[async_trait]
impl BlobStore for PgStore {
    fn max_size(&self) -> usize {
        MAX_MESSAGE_SIZE
    }

    fn inline(&self, _size: usize) -> bool {
        true
    }

    async fn put(&self, _id: &BlobId, _raw: &[u8]) -> StoreResult<()> {
        // Never called: every message travels inline (`inline`).
        Err(StoreError::Internal(
            "the PostgreSQL store keeps bytes with their metadata".into(),
        ))
    }

    async fn get(&self, ids: Vec<BlobId>, header_only: bool) -> StoreResult<Vec<Option<Vec<u8>>>> {
        for id in &ids {
            valid_blob_id(id)?;
        }
        let found = self
            .blob_rows(&ids, "SELECT hash, content FROM blobs WHERE hash = ANY($1)")
            .await?;
        ids.iter()
            .map(|id| {
                let Some(row) = found.get(&id.0) else {
                    return Ok(None);
                };
                let mut raw: Vec<u8> = row.try_get(1)?;
                if header_only {
                    raw.truncate(casella_mime::header_len(&raw));
                }
                Ok(Some(raw))
            })
            .collect()
    }
}
