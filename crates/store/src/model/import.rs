//! [`ImportStore`] for every backend: mailboxes and messages with the
//! identity they had elsewhere, through the same primitives as the rest of
//! the model (so the totals, the blob references and the change feed follow).

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::changes::Change;
use crate::error::{StoreError, StoreResult};
use crate::import_store::{ImportMailbox, ImportMessage, ImportStore};
use crate::model::backend::{MailBackend, MailTx, MessageRow, job};
use crate::model::mailbox_rows;
use crate::model::mailboxes::lock_one;
use crate::model::names::{canonical_name, validate_mailbox_name};
use crate::model::prepare::{PreparedMessage, prepare_all};
use crate::records::SqlValue;
use crate::types::*;

fn big(n: u64) -> StoreResult<SqlValue<'static>> {
    i64::try_from(n)
        .map(SqlValue::Int)
        .map_err(|_| StoreError::Invalid("a MODSEQ above 2^63".into()))
}

/// Whether the mailbox ever held a message (or recorded an expunge).
async fn used(tx: &mut dyn MailTx, mailbox: MailboxId) -> StoreResult<bool> {
    let id = [SqlValue::Int(mailbox.0)];
    for sql in [
        "SELECT uid FROM messages WHERE mailbox_id = $1 LIMIT 1",
        "SELECT uid FROM expunged WHERE mailbox_id = $1 LIMIT 1",
    ] {
        if tx.query_opt(sql, &id).await?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

#[async_trait]
impl<B: MailBackend> ImportStore for B {
    async fn import_mailbox(&self, account: AccountId, m: ImportMailbox) -> StoreResult<Mailbox> {
        let name = canonical_name(&m.name);
        validate_mailbox_name(&name)?;
        if m.uid_validity.0 == 0 || m.uid_next.0 == 0 || m.highest_modseq.0 == 0 {
            return Err(StoreError::Invalid(
                "UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ are at least 1".into(),
            ));
        }
        let highest = big(m.highest_modseq.0)?;
        let mb = self
            .transact(job(move |tx| {
                Box::pin(async move {
                    // Later mailboxes get a UIDVALIDITY above the imported one
                    // (RFC 9051 §2.3.1.1).
                    tx.next_uid_validity(m.uid_validity.0).await?;
                    let mut mb = match tx.find_mailbox(account, &name).await? {
                        Some(old) => {
                            let old = lock_one(tx, old.id).await?;
                            if used(tx, old.id).await? {
                                return Err(StoreError::Exists(format!("mailbox {name}")));
                            }
                            old
                        }
                        None => {
                            mailbox_rows::insert_mailbox(
                                tx,
                                account,
                                &name,
                                m.special_use,
                                m.uid_validity,
                            )
                            .await?
                        }
                    };
                    tx.execute(
                        "UPDATE mailboxes SET special_use = $2, uidvalidity = $3, uidnext = $4,
                             highest_modseq = $5, recent_uid = 0
                         WHERE id = $1",
                        &[
                            SqlValue::Int(mb.id.0),
                            SqlValue::opt_text(
                                m.special_use.or(mb.special_use).map(|s| s.attribute()),
                            ),
                            SqlValue::Int(m.uid_validity.0.into()),
                            SqlValue::Int(m.uid_next.0.into()),
                            highest,
                        ],
                    )
                    .await?;
                    mb.special_use = m.special_use.or(mb.special_use);
                    mb.uid_validity = m.uid_validity;
                    mb.uid_next = m.uid_next;
                    mb.highest_modseq = m.highest_modseq;
                    mb.recent_watermark = Uid(0);
                    tx.announce(account, &[Change::MailboxList]);
                    Ok(mb)
                })
            }))
            .await?;
        self.feed().publish(account, [Change::MailboxList]);
        Ok(mb)
    }

    async fn import_messages(
        &self,
        mailbox: MailboxId,
        messages: Vec<ImportMessage>,
    ) -> StoreResult<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(messages.len());
        let mut news = Vec::with_capacity(messages.len());
        for m in messages {
            if m.uid.0 == 0 || m.uid.0 == u32::MAX || m.modseq.0 == 0 {
                return Err(StoreError::Invalid(format!(
                    "UID {} / MODSEQ {} out of range",
                    m.uid.0, m.modseq.0
                )));
            }
            big(m.modseq.0)?;
            ids.push((m.uid, m.modseq));
            news.push(NewMessage {
                raw: m.raw,
                internal_date: Some(m.internal_date),
                flags: m.flags,
                binary: false,
            });
        }
        // Parse, hash and write large bytes before the transaction.
        let prepared = prepare_all(self.blobs(), news).await?;
        let now = self.clock().now();
        let account = self
            .transact(job(move |tx| {
                Box::pin(async move {
                    let mut mb = lock_one(tx, mailbox).await?;
                    let uids: Vec<Uid> = ids.iter().map(|(u, _)| *u).collect();
                    if !tx.messages(mailbox, &uids).await?.is_empty() {
                        return Err(StoreError::Exists("a message with that UID".into()));
                    }
                    let mut counts: BTreeMap<&BlobId, (&PreparedMessage, i64)> = BTreeMap::new();
                    for p in &prepared {
                        counts.entry(&p.blob).or_insert((p, 0)).1 += 1;
                    }
                    let counts: Vec<(&PreparedMessage, i64)> = counts.into_values().collect();
                    tx.add_blobs(&counts).await?;
                    // insert_messages gives its rows one MODSEQ: one call per MODSEQ.
                    let mut by_modseq: BTreeMap<ModSeq, Vec<MessageRow>> = BTreeMap::new();
                    for ((uid, modseq), p) in ids.iter().zip(&prepared) {
                        by_modseq.entry(*modseq).or_default().push(MessageRow {
                            uid: *uid,
                            blob: p.blob.clone(),
                            size: p.size,
                            internal_date: p.internal_date,
                            save_date: now,
                            flags: p.flags.clone(),
                        });
                        mb.uid_next = mb.uid_next.max(Uid(uid.0 + 1));
                        mb.highest_modseq = mb.highest_modseq.max(*modseq);
                        mb.total_size = mb.total_size.saturating_add(p.size.into());
                        mb.message_count = mb.message_count.saturating_add(1);
                    }
                    for (modseq, rows) in &by_modseq {
                        tx.insert_messages(mailbox, *modseq, rows).await?;
                    }
                    mailbox_rows::save_mailbox(tx, &mb).await?;
                    tx.announce(mb.account, &[Change::MailboxChanged { mailbox }]);
                    Ok(mb.account)
                })
            }))
            .await?;
        self.feed()
            .publish(account, [Change::MailboxChanged { mailbox }]);
        Ok(())
    }

    async fn import_expunged(
        &self,
        mailbox: MailboxId,
        expunged: &[(Uid, ModSeq)],
    ) -> StoreResult<()> {
        if expunged.is_empty() {
            return Ok(());
        }
        for (_, m) in expunged {
            big(m.0)?;
        }
        let expunged = expunged.to_vec();
        self.transact(job(move |tx| {
            Box::pin(async move {
                let mut mb = lock_one(tx, mailbox).await?;
                for (uid, modseq) in &expunged {
                    tx.execute(
                        "INSERT INTO expunged(mailbox_id, uid, modseq) VALUES ($1, $2, $3)
                         ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = excluded.modseq",
                        &[
                            SqlValue::Int(mailbox.0),
                            SqlValue::Int(uid.0.into()),
                            big(modseq.0)?,
                        ],
                    )
                    .await?;
                    mb.highest_modseq = mb.highest_modseq.max(*modseq);
                    mb.uid_next = mb.uid_next.max(Uid(uid.0.saturating_add(1)));
                }
                mailbox_rows::save_mailbox(tx, &mb).await
            })
        }))
        .await
    }
}
