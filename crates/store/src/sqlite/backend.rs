//! The embedded store as a backend of the mail model: its transaction runner
//! (group commit on the writer thread), plain reads, and its blob store
//! (small messages inside the database, large ones as files).

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension};

use super::mail_tx::{SqliteTx, run_ready};
use super::sql::{SqliteReader, ThreadConnection};
use super::{
    INLINE_MAX, MAILBOX_COLUMNS, MaildropGuard, ReadSize, SqliteStore, find_mailbox, get_mailbox,
    mailbox_from_row, per_blob, stored_bytes, summary_from_row, text_index,
};
use crate::blob::BlobStore;
use crate::changes::ChangeFeed;
use crate::error::{StoreError, StoreResult};
use crate::maildrop::MaildropLock;
use crate::model::{MailBackend, ParsedCaches, TxJob};
use crate::records::{ReadCost, SqlJob};
use crate::types::*;
use crate::{MessageStructure, SearchFields};

#[async_trait]
impl MailBackend for SqliteStore {
    async fn transact<T: Send + 'static>(&self, job: TxJob<T>) -> StoreResult<T> {
        self.write(move |conn: &Connection, inner| {
            let mut tx = SqliteTx::new(conn, inner);
            run_ready(job(&mut tx))
        })
        .await
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
        self.read(ReadSize::Small, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = ?1 ORDER BY name"
            ))?;
            Ok(stmt
                .query_map([account.0], mailbox_from_row)?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn mailbox(&self, id: MailboxId) -> StoreResult<Mailbox> {
        self.read(ReadSize::Small, move |c| get_mailbox(c, id))
            .await
    }

    async fn find_mailbox(&self, account: AccountId, name: &str) -> StoreResult<Option<Mailbox>> {
        let name = name.to_string();
        self.read(ReadSize::Small, move |c| find_mailbox(c, account, &name))
            .await
    }

    async fn list_messages(&self, mailbox: MailboxId) -> StoreResult<Vec<MessageSummary>> {
        self.read(ReadSize::Large, move |c| {
            // Distinguish "no such mailbox" from "empty".
            get_mailbox(c, mailbox)?;
            let mut stmt = c.prepare_cached(
                "SELECT uid, modseq, size, internal_date, flags, blob, save_date FROM messages
                 WHERE mailbox_id = ?1 ORDER BY uid",
            )?;
            let rows = stmt.query_map([mailbox.0], summary_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn changed_since(
        &self,
        mailbox: MailboxId,
        since: ModSeq,
    ) -> StoreResult<Vec<MessageSummary>> {
        self.read_changes(
            "SELECT uid, modseq, size, internal_date, flags, blob, save_date FROM messages
             WHERE mailbox_id = ?1 AND modseq > ?2 LIMIT ?3",
            mailbox,
            since,
            summary_from_row,
            |m| m.uid,
        )
        .await
    }

    async fn expunged_since(&self, mailbox: MailboxId, since: ModSeq) -> StoreResult<Vec<Uid>> {
        self.read_changes(
            "SELECT uid FROM expunged WHERE mailbox_id = ?1 AND modseq > ?2 LIMIT ?3",
            mailbox,
            since,
            |r| Ok(Uid(r.get(0)?)),
            |u| *u,
        )
        .await
    }

    async fn structures(&self, blobs: Vec<BlobId>) -> StoreResult<Vec<Option<MessageStructure>>> {
        self.read(ReadSize::rows(blobs.len()), move |c| {
            per_blob(c, "SELECT parsed FROM blobs WHERE hash = ?1", &blobs, |r| {
                serde_json::from_str::<MessageStructure>(&r.get::<_, String>(0)?)
                    .map_err(StoreError::internal)
            })
        })
        .await
    }

    async fn search_fields(
        &self,
        blobs: Vec<BlobId>,
        text: bool,
    ) -> StoreResult<Vec<Option<SearchFields>>> {
        if !text {
            return self
                .read(ReadSize::rows(blobs.len()), move |c| {
                    per_blob(c, "SELECT search FROM blobs WHERE hash = ?1", &blobs, |r| {
                        crate::search_columns::from_columns(&r.get::<_, String>(0)?, None)
                    })
                })
                .await;
        }
        // Each row holds a message's whole text, to be parsed: never inline.
        self.read(ReadSize::Large, move |c| {
            per_blob(
                c,
                "SELECT search, search_text FROM blobs WHERE hash = ?1",
                &blobs,
                |r| {
                    let text: String = r.get(1)?;
                    crate::search_columns::from_columns(&r.get::<_, String>(0)?, Some(&text))
                },
            )
        })
        .await
    }

    async fn raise_recent(&self, mailbox: MailboxId, up_to: Uid) -> StoreResult<Uid> {
        self.write(move |tx, _| {
            let previous: u32 = tx
                .prepare_cached("SELECT recent_uid FROM mailboxes WHERE id = ?1")?
                .query_row([mailbox.0], |r| r.get(0))
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("mailbox {}", mailbox.0)))?;
            if up_to.0 > previous {
                tx.prepare_cached("UPDATE mailboxes SET recent_uid = ?2 WHERE id = ?1")?
                    .execute(rusqlite::params![mailbox.0, up_to.0])?;
            }
            Ok(Uid(previous))
        })
        .await
    }

    async fn text_candidates(
        &self,
        mailbox: MailboxId,
        field: TextField,
        needle: &str,
    ) -> StoreResult<Option<TextCandidates>> {
        if !self.inner.text_index || !text_index::answers(needle) {
            return Ok(None);
        }
        let needle = needle.to_string();
        self.read(ReadSize::Large, move |c| {
            text_index::candidates(c, mailbox, field, &needle).map(Some)
        })
        .await
    }

    async fn lock_maildrop(&self, account: AccountId) -> StoreResult<MaildropLock> {
        let mut held = self
            .inner
            .maildrops
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !held.insert(account) {
            return Err(StoreError::InUse(
                "maildrop is locked by another session".into(),
            ));
        }
        Ok(MaildropLock::new(Box::new(MaildropGuard {
            inner: self.inner.clone(),
            account,
        })))
    }

    async fn collect_garbage(&self) -> StoreResult<()> {
        self.collect_blobs().await
    }

    async fn read_records<T: Send + 'static>(
        &self,
        cost: ReadCost,
        job: SqlJob<T>,
    ) -> StoreResult<T> {
        let size = match cost {
            ReadCost::Small => ReadSize::Small,
            ReadCost::Large => ReadSize::Large,
        };
        self.read(size, move |c| {
            run_ready(job(&mut SqliteReader(ThreadConnection::new(c))))
        })
        .await
    }

    /// One node owns the embedded store: every claim is its own.
    fn node_name(&self) -> &str {
        "embedded"
    }
}

/// Messages up to `INLINE_MAX` live in the database (durable with their
/// batch's one fsync), larger ones in files under `blobs/`.
#[async_trait]
impl BlobStore for SqliteStore {
    fn max_size(&self) -> usize {
        u32::MAX as usize
    }

    fn inline(&self, size: usize) -> bool {
        size <= INLINE_MAX
    }

    async fn put(&self, id: &BlobId, raw: &[u8]) -> StoreResult<()> {
        BlobStore::put(&self.inner.blobs, id, raw).await
    }

    async fn get(&self, ids: Vec<BlobId>, header_only: bool) -> StoreResult<Vec<Option<Vec<u8>>>> {
        let (ids, found) = self
            .read(ReadSize::rows(ids.len()), move |c| {
                let found: Vec<Option<Vec<u8>>> = ids
                    .iter()
                    .map(|b| stored_bytes(c, b, header_only).ok().flatten())
                    .collect();
                Ok((ids, found))
            })
            .await?;
        self.fill_from_files(ids, found, header_only).await
    }
}
