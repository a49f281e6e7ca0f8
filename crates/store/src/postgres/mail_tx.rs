//! The shared store's transaction primitives for the mail model: each one
//! statement (arrays via `unnest` where there are many rows), inside a
//! READ COMMITTED transaction whose consistency comes from the mailbox rows
//! it locks (see the module docs of `postgres`, lock order points 3 and 4).

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::pool::Tx;
use super::{listen, mailbox_from_row, not_found_mailbox, rows, summary_from_row};
use crate::changes::Change;
use crate::error::StoreResult;
use crate::model::prepare::PreparedMessage;
use crate::model::{MailTx, MessageRow};
use crate::types::*;

/// An open transaction of the shared store, as the mail model sees it.
pub(super) struct PgTx<'a, 'c> {
    pub(super) tx: &'a mut Tx<'c>,
    /// This process's name in NOTIFY payloads (its own are ignored).
    pub(super) instance: &'a str,
}

fn uids_param(uids: &[Uid]) -> Vec<i64> {
    uids.iter().map(|u| u.0 as i64).collect()
}

#[async_trait]
impl MailTx for PgTx<'_, '_> {
    async fn lock_mailboxes(&mut self, ids: &[MailboxId]) -> StoreResult<Vec<Mailbox>> {
        let mut wanted: Vec<i64> = ids.iter().map(|m| m.0).collect();
        wanted.sort_unstable();
        wanted.dedup();
        // Rows are locked as the sorted scan returns them: ascending ids.
        let found = rows(
            self.tx
                .query(
                    concat!(
                        "SELECT ",
                        mailbox_columns!(),
                        " FROM mailboxes WHERE id = ANY($1) ORDER BY id FOR UPDATE"
                    ),
                    &[&wanted],
                )
                .await?,
            mailbox_from_row,
        )?;
        if let Some(missing) = wanted
            .iter()
            .find(|id| !found.iter().any(|m| m.id.0 == **id))
        {
            return Err(not_found_mailbox(MailboxId(*missing)));
        }
        Ok(found)
    }

    async fn find_mailbox(
        &mut self,
        account: AccountId,
        name: &str,
    ) -> StoreResult<Option<Mailbox>> {
        super::find_mailbox(self.tx, account, name).await
    }

    async fn next_uid_validity(&mut self, at_least: u32) -> StoreResult<UidValidity> {
        // The counter row serialises nodes.
        let row = self
            .tx
            .query_one(
                "INSERT INTO counters(name, value) VALUES ('uidvalidity', $1)
                 ON CONFLICT (name) DO UPDATE
                 SET value = LEAST(GREATEST(EXCLUDED.value, counters.value + 1), 4294967295)
                 RETURNING value",
                &[&(at_least as i64)],
            )
            .await?;
        Ok(UidValidity(row.try_get::<_, i64>(0)? as u32))
    }

    async fn remove_mailbox(&mut self, id: MailboxId) -> StoreResult<Vec<BlobId>> {
        let gone = self
            .tx
            .query(
                "DELETE FROM messages WHERE mailbox_id = $1 RETURNING blob",
                &[&id.0],
            )
            .await?;
        let blobs = gone
            .iter()
            .map(|r| Ok(BlobId(r.try_get(0)?)))
            .collect::<StoreResult<_>>()?;
        self.tx
            .execute("DELETE FROM expunged WHERE mailbox_id = $1", &[&id.0])
            .await?;
        self.tx
            .execute("DELETE FROM mailboxes WHERE id = $1", &[&id.0])
            .await?;
        Ok(blobs)
    }

    async fn messages(
        &mut self,
        mailbox: MailboxId,
        uids: &[Uid],
    ) -> StoreResult<Vec<MessageSummary>> {
        rows(
            self.tx
                .query(
                    concat!(
                        "SELECT ",
                        summary_columns!(),
                        " FROM messages WHERE mailbox_id = $1 AND uid = ANY($2)"
                    ),
                    &[&mailbox.0, &uids_param(uids)],
                )
                .await?,
            summary_from_row,
        )
    }

    async fn insert_messages(
        &mut self,
        mailbox: MailboxId,
        modseq: ModSeq,
        rows: &[MessageRow],
    ) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let uid: Vec<i64> = rows.iter().map(|r| r.uid.0 as i64).collect();
        let blob: Vec<&str> = rows.iter().map(|r| r.blob.0.as_str()).collect();
        let size: Vec<i64> = rows.iter().map(|r| r.size as i64).collect();
        let date: Vec<i64> = rows.iter().map(|r| r.internal_date).collect();
        let flags: Vec<String> = rows.iter().map(|r| flags_to_string(&r.flags)).collect();
        let saved: Vec<i64> = rows.iter().map(|r| r.save_date).collect();
        self.tx
            .execute(
                "INSERT INTO messages(mailbox_id, uid, modseq, blob, size, internal_date, flags,
                                      save_date)
                 SELECT $1, u, $2, b, s, d, f, v
                 FROM unnest($3::bigint[], $4::text[], $5::bigint[], $6::bigint[], $7::text[],
                             $8::bigint[])
                      AS t(u, b, s, d, f, v)",
                &[
                    &mailbox.0,
                    &(modseq.0 as i64),
                    &uid,
                    &blob,
                    &size,
                    &date,
                    &flags,
                    &saved,
                ],
            )
            .await?;
        Ok(())
    }

    async fn update_flags(
        &mut self,
        mailbox: MailboxId,
        modseq: ModSeq,
        rows: &[(Uid, FlagSet)],
    ) -> StoreResult<()> {
        let uid: Vec<i64> = rows.iter().map(|(u, _)| u.0 as i64).collect();
        let flags: Vec<String> = rows.iter().map(|(_, f)| flags_to_string(f)).collect();
        self.tx
            .execute(
                "UPDATE messages SET flags = d.f, modseq = $2
                 FROM unnest($3::bigint[], $4::text[]) AS d(u, f)
                 WHERE messages.mailbox_id = $1 AND messages.uid = d.u",
                &[&mailbox.0, &(modseq.0 as i64), &uid, &flags],
            )
            .await?;
        Ok(())
    }

    async fn expunge_messages(
        &mut self,
        mailbox: MailboxId,
        modseq: ModSeq,
        uids: &[Uid],
    ) -> StoreResult<Vec<(Uid, BlobId, u32)>> {
        let found = self
            .tx
            .query(
                "DELETE FROM messages WHERE mailbox_id = $1 AND uid = ANY($2)
                 RETURNING uid, blob, size",
                &[&mailbox.0, &uids_param(uids)],
            )
            .await?;
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let mut gone = Vec::with_capacity(found.len());
        for r in &found {
            gone.push((
                Uid(r.try_get::<_, i64>(0)? as u32),
                BlobId(r.try_get(1)?),
                r.try_get::<_, i64>(2)?.clamp(0, u32::MAX as i64) as u32,
            ));
        }
        let expunged: Vec<i64> = gone.iter().map(|(u, _, _)| u.0 as i64).collect();
        self.tx
            .execute(
                "INSERT INTO expunged(mailbox_id, uid, modseq)
                 SELECT $1, u, $2 FROM unnest($3::bigint[]) AS u
                 ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = EXCLUDED.modseq",
                &[&mailbox.0, &(modseq.0 as i64), &expunged],
            )
            .await?;
        Ok(gone)
    }

    async fn add_blobs(&mut self, blobs: &[(&PreparedMessage, i64)]) -> StoreResult<()> {
        for (p, count) in blobs {
            // Known content: only the hash travels.
            let n = self
                .tx
                .execute(
                    "UPDATE blobs SET refcount = refcount + $2 WHERE hash = $1",
                    &[&p.blob.0, count],
                )
                .await?;
            if n == 0 {
                self.tx
                    .execute(
                        "INSERT INTO blobs(hash, size, refcount, parsed, search, search_text, content)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT (hash) DO UPDATE SET refcount = blobs.refcount + EXCLUDED.refcount",
                        &[
                            &p.blob.0,
                            &(p.size as i64),
                            count,
                            &p.structure_json,
                            &p.search_json,
                            &p.search_text_json,
                            &p.raw,
                        ],
                    )
                    .await?;
            }
        }
        Ok(())
    }

    async fn set_search_fields(&mut self, rows: &[(BlobId, String)]) -> StoreResult<()> {
        let (hashes, jsons): (Vec<&str>, Vec<&str>) =
            rows.iter().map(|(b, j)| (b.0.as_str(), j.as_str())).unzip();
        if hashes.is_empty() {
            return Ok(());
        }
        // Lock order point 4: blob rows in ascending hash order.
        self.tx
            .execute(
                "SELECT hash FROM blobs WHERE hash = ANY($1) ORDER BY hash FOR NO KEY UPDATE",
                &[&hashes],
            )
            .await?;
        self.tx
            .execute(
                // A row from before schema version 4 keeps its text in
                // `parsed` while `search` is NULL: left as it is.
                "UPDATE blobs SET search = d.j
                 FROM unnest($1::text[], $2::text[]) AS d(h, j)
                 WHERE blobs.hash = d.h AND blobs.search IS NOT NULL",
                &[&hashes, &jsons],
            )
            .await?;
        Ok(())
    }

    async fn adjust_blob_refs(&mut self, deltas: &BTreeMap<BlobId, i64>) -> StoreResult<()> {
        let (hashes, counts): (Vec<&str>, Vec<i64>) = deltas
            .iter()
            .filter(|(_, n)| **n != 0)
            .map(|(h, n)| (h.0.as_str(), *n))
            .unzip();
        if hashes.is_empty() {
            return Ok(());
        }
        // Lock order point 4: blob rows in ascending hash order.
        self.tx
            .execute(
                "SELECT hash FROM blobs WHERE hash = ANY($1) ORDER BY hash FOR NO KEY UPDATE",
                &[&hashes],
            )
            .await?;
        self.tx
            .execute(
                "UPDATE blobs SET refcount = refcount + d.n
                 FROM unnest($1::text[], $2::bigint[]) AS d(h, n) WHERE blobs.hash = d.h",
                &[&hashes, &counts],
            )
            .await?;
        if counts.iter().any(|n| *n < 0) {
            // Bytes live in the row: deleting it is the collection.
            self.tx
                .execute(
                    "DELETE FROM blobs WHERE hash = ANY($1) AND refcount <= 0",
                    &[&hashes],
                )
                .await?;
        }
        Ok(())
    }

    fn announce(&mut self, account: AccountId, changes: &[Change]) {
        for p in listen::payloads(self.instance, account, changes) {
            self.tx.notify(p);
        }
    }
}
