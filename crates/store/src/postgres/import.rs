//! What a migrator (embedded store → PostgreSQL) needs beyond the trait: mailboxes
//! with a given UIDVALIDITY and counters, and messages with given UIDs, MODSEQs
//! and flags, so IMAP clients keep their caches (UIDVALIDITY, UIDs and
//! CONDSTORE/QRESYNC state unchanged) and POP3 UIDLs stay the same.
//!
//! Accounts, aliases and settings go through the trait (`create_account`,
//! `update_account`, `add_alias`).

use std::collections::BTreeMap;

use super::mail_tx::PgTx;
use super::pool::Conn;
use super::{PgStore, find_mailbox, mailbox_from_row, not_found_mailbox};
use crate::NewMessage;
use crate::changes::Change;
use crate::error::{StoreError, StoreResult};
use crate::model::MailTx;
use crate::model::names::{canonical_name, validate_mailbox_name};
use crate::model::prepare::{PreparedMessage, prepare_all};
use crate::types::*;

/// A mailbox as the source store had it.
#[derive(Debug, Clone)]
pub struct ImportMailbox {
    pub name: String,
    pub special_use: Option<SpecialUse>,
    pub uid_validity: UidValidity,
    pub uid_next: Uid,
    pub highest_modseq: ModSeq,
}

/// A message as the source store had it.
#[derive(Debug, Clone)]
pub struct ImportMessage {
    pub uid: Uid,
    pub modseq: ModSeq,
    pub internal_date: i64,
    pub flags: FlagSet,
    pub raw: Vec<u8>,
}

/// (Imports only.) A mailbox row held `FOR UPDATE` by the current transaction, with the counters
/// the transaction moves; [`Locked::save`] writes them back.
struct Locked {
    id: MailboxId,
    account: AccountId,
    uid_next: u32,
    highest_modseq: u64,
    dirty: bool,
}

impl Locked {
    async fn take(c: &mut Conn, id: MailboxId) -> StoreResult<Locked> {
        let row = c
            .query_opt(
                "SELECT account_id, uidvalidity, uidnext, highest_modseq FROM mailboxes
                 WHERE id = $1 FOR UPDATE",
                &[&id.0],
            )
            .await?
            .ok_or_else(|| not_found_mailbox(id))?;
        Ok(Locked {
            id,
            account: AccountId(row.try_get(0)?),
            uid_next: row.try_get::<_, i64>(2)? as u32,
            highest_modseq: row.try_get::<_, i64>(3)? as u64,
            dirty: false,
        })
    }

    async fn save(&self, c: &mut Conn) -> StoreResult<()> {
        if self.dirty {
            c.execute(
                "UPDATE mailboxes SET uidnext = $2, highest_modseq = $3 WHERE id = $1",
                &[
                    &self.id.0,
                    &(self.uid_next as i64),
                    &(self.highest_modseq as i64),
                ],
            )
            .await?;
        }
        Ok(())
    }
}

impl PgStore {
    /// Creates the mailbox with the source's UIDVALIDITY, UIDNEXT and
    /// HIGHESTMODSEQ. A mailbox of that name that is still empty (as the default
    /// mailboxes `create_account` made) takes them over; one with messages or
    /// expunge history is `Exists`. Later UIDVALIDITYs of this store stay above
    /// the imported one.
    pub async fn import_mailbox(
        &self,
        account: AccountId,
        m: ImportMailbox,
    ) -> StoreResult<Mailbox> {
        let name = canonical_name(&m.name);
        validate_mailbox_name(&name)?;
        if m.uid_validity.0 == 0 || m.uid_next.0 == 0 || m.highest_modseq.0 == 0 {
            return Err(StoreError::Invalid(
                "UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ are at least 1".into(),
            ));
        }
        let highest = i64::try_from(m.highest_modseq.0)
            .map_err(|_| StoreError::Invalid("HIGHESTMODSEQ too large".into()))?;
        let mb = write_tx!(self, |tx| {
            let validity = m.uid_validity.0 as i64;
            tx.execute(
                "INSERT INTO counters(name, value) VALUES ('uidvalidity', $1)
                 ON CONFLICT (name) DO UPDATE SET value = GREATEST(counters.value, EXCLUDED.value)",
                &[&validity],
            )
            .await?;
            let existing = find_mailbox(&mut tx, account, &name).await?;
            let row = match existing {
                Some(old) => {
                    Locked::take(&mut tx, old.id).await?;
                    let used: bool = tx
                        .query_one(
                            "SELECT EXISTS(SELECT 1 FROM messages WHERE mailbox_id = $1)
                                 OR EXISTS(SELECT 1 FROM expunged WHERE mailbox_id = $1)",
                            &[&old.id.0],
                        )
                        .await?
                        .try_get(0)?;
                    if used {
                        return Err(StoreError::Exists(format!("mailbox {name}")));
                    }
                    tx.query_one(
                        concat!(
                            "UPDATE mailboxes SET special_use = $2, uidvalidity = $3, uidnext = $4,
                             highest_modseq = $5, recent_uid = 0
                             WHERE id = $1 RETURNING ",
                            mailbox_columns!()
                        ),
                        &[
                            &old.id.0,
                            &m.special_use.map(|s| s.attribute()),
                            &validity,
                            &(m.uid_next.0 as i64),
                            &highest,
                        ],
                    )
                    .await?
                }
                None => {
                    tx.query_one(
                        concat!(
                            "INSERT INTO mailboxes(account_id, name, special_use, uidvalidity, uidnext,
                                                   highest_modseq)
                             VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
                            mailbox_columns!()
                        ),
                        &[
                            &account.0,
                            &name,
                            &m.special_use.map(|s| s.attribute()),
                            &validity,
                            &(m.uid_next.0 as i64),
                            &highest,
                        ],
                    )
                    .await?
                }
            };
            self.announce(&mut tx, account, &[Change::MailboxList]);
            mailbox_from_row(&row)
        })?;
        self.publish(account, vec![Change::MailboxList]);
        Ok(mb)
    }

    /// Inserts messages with their source UIDs, MODSEQs, flags and INTERNALDATEs,
    /// all or nothing. A UID the mailbox has already is `Exists`. UIDNEXT and
    /// HIGHESTMODSEQ rise to cover the imported messages (they never fall).
    pub async fn import_messages(
        &self,
        mailbox: MailboxId,
        messages: Vec<ImportMessage>,
    ) -> StoreResult<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut meta = Vec::with_capacity(messages.len());
        let mut news = Vec::with_capacity(messages.len());
        for m in messages {
            if m.uid.0 == 0 || m.uid.0 == u32::MAX || m.modseq.0 == 0 {
                return Err(StoreError::Invalid(format!(
                    "UID {} / MODSEQ {} out of range",
                    m.uid.0, m.modseq.0
                )));
            }
            let modseq = i64::try_from(m.modseq.0)
                .map_err(|_| StoreError::Invalid("MODSEQ too large".into()))?;
            meta.push((m.uid.0 as i64, modseq));
            news.push(NewMessage {
                raw: m.raw,
                internal_date: Some(m.internal_date),
                flags: m.flags,
                binary: false,
            });
        }
        let prepared = prepare_all(self, news).await?;
        let saved = self.inner.clock.now();
        let account = write_tx!(self, |tx| {
            let mut mb = Locked::take(&mut tx, mailbox).await?;
            let mut distinct: BTreeMap<&BlobId, (&PreparedMessage, i64)> = BTreeMap::new();
            for p in &prepared {
                distinct.entry(&p.blob).or_insert((p, 0)).1 += 1;
            }
            let blob_counts: Vec<(&PreparedMessage, i64)> = distinct.into_values().collect();
            PgTx {
                tx: &mut tx,
                instance: &self.inner.instance,
            }
            .add_blobs(&blob_counts)
            .await?;
            let uids: Vec<i64> = meta.iter().map(|m| m.0).collect();
            let modseqs: Vec<i64> = meta.iter().map(|m| m.1).collect();
            let blobs: Vec<&str> = prepared.iter().map(|p| p.blob.0.as_str()).collect();
            let sizes: Vec<i64> = prepared.iter().map(|p| p.size as i64).collect();
            let dates: Vec<i64> = prepared.iter().map(|p| p.internal_date).collect();
            let flags: Vec<String> = prepared.iter().map(|p| flags_to_string(&p.flags)).collect();
            tx.execute(
                "INSERT INTO messages(mailbox_id, uid, modseq, blob, size, internal_date, flags,
                                      save_date)
                 SELECT $1, u, m, b, s, d, f, $8
                 FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[], $7::text[])
                      AS t(u, m, b, s, d, f)",
                &[&mailbox.0, &uids, &modseqs, &blobs, &sizes, &dates, &flags, &saved],
            )
            .await?;
            tx.execute(
                "UPDATE mailboxes SET total_size = total_size + $2,
                     message_count = message_count + $3
                 WHERE id = $1",
                &[
                    &mailbox.0,
                    &sizes.iter().sum::<i64>(),
                    &(sizes.len() as i64),
                ],
            )
            .await?;
            let max_uid = uids.iter().copied().max().unwrap_or(0) as u32;
            let max_modseq = modseqs.iter().copied().max().unwrap_or(0) as u64;
            mb.uid_next = mb.uid_next.max(max_uid + 1);
            mb.highest_modseq = mb.highest_modseq.max(max_modseq);
            mb.dirty = true;
            mb.save(&mut tx).await?;
            self.announce(&mut tx, mb.account, &[Change::MailboxChanged { mailbox }]);
            Ok(mb.account)
        })?;
        self.publish(account, vec![Change::MailboxChanged { mailbox }]);
        Ok(())
    }

    /// Records UIDs the source had expunged, with their MODSEQs (for QRESYNC's
    /// VANISHED). HIGHESTMODSEQ rises to cover them.
    pub async fn import_expunged(
        &self,
        mailbox: MailboxId,
        expunged: &[(Uid, ModSeq)],
    ) -> StoreResult<()> {
        if expunged.is_empty() {
            return Ok(());
        }
        let mut uids = Vec::with_capacity(expunged.len());
        let mut modseqs = Vec::with_capacity(expunged.len());
        for (u, m) in expunged {
            let m =
                i64::try_from(m.0).map_err(|_| StoreError::Invalid("MODSEQ too large".into()))?;
            uids.push(u.0 as i64);
            modseqs.push(m);
        }
        write_tx!(self, |tx| {
            let mut mb = Locked::take(&mut tx, mailbox).await?;
            tx.execute(
                "INSERT INTO expunged(mailbox_id, uid, modseq)
                 SELECT $1, u, m FROM unnest($2::bigint[], $3::bigint[]) AS t(u, m)
                 ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = EXCLUDED.modseq",
                &[&mailbox.0, &uids, &modseqs],
            )
            .await?;
            let max_modseq = modseqs.iter().copied().max().unwrap_or(0) as u64;
            if max_modseq > mb.highest_modseq {
                mb.highest_modseq = max_modseq;
                mb.dirty = true;
            }
            mb.save(&mut tx).await?;
            Ok(())
        })
    }
}
