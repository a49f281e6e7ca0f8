//! The mailbox rows and subscriptions the model writes, as SQL both backends
//! run ([`crate::records::sql`] says which SQL): a new mailbox, a mailbox's
//! counters, the subscription list.

use crate::error::StoreResult;
use crate::model::backend::MailBackend;
use crate::records::{ReadCost, SqlRow, SqlTx, SqlValue, read_rows};
use crate::types::*;

fn mailbox_from_row(r: &SqlRow) -> StoreResult<Mailbox> {
    Ok(Mailbox {
        id: MailboxId(r.int(0)?),
        account: AccountId(r.int(1)?),
        name: r.text(2)?,
        special_use: r
            .opt_text(3)?
            .as_deref()
            .and_then(SpecialUse::from_attribute),
        uid_validity: UidValidity(r.int(4)? as u32),
        uid_next: Uid(r.int(5)? as u32),
        highest_modseq: ModSeq(r.int(6)? as u64),
        recent_watermark: Uid(r.int(7)? as u32),
        total_size: r.int(8)?.max(0) as u64,
        message_count: r.int(9)?.max(0) as u64,
    })
}

/// Inserts a mailbox (UIDNEXT 1, MODSEQ 1) and returns it.
pub async fn insert_mailbox(
    tx: &mut dyn SqlTx,
    account: AccountId,
    name: &str,
    special_use: Option<SpecialUse>,
    validity: UidValidity,
) -> StoreResult<Mailbox> {
    let row = tx
        .query_one(
            "INSERT INTO mailboxes(account_id, name, special_use, uidvalidity, uidnext,
                 highest_modseq)
             VALUES ($1, $2, $3, $4, 1, 1)
             RETURNING id, account_id, name, special_use, uidvalidity, uidnext,
                 highest_modseq, recent_uid, total_size, message_count",
            &[
                SqlValue::Int(account.0),
                SqlValue::text(name),
                SqlValue::opt_text(special_use.map(|s| s.attribute())),
                SqlValue::Int(validity.0.into()),
            ],
        )
        .await?;
    mailbox_from_row(&row)
}

/// Writes a locked mailbox's name, UIDNEXT, HIGHESTMODSEQ, \Recent
/// watermark and totals.
pub async fn save_mailbox(tx: &mut dyn SqlTx, mb: &Mailbox) -> StoreResult<()> {
    let big = |n: u64| SqlValue::Int(n.min(i64::MAX as u64) as i64);
    tx.execute(
        "UPDATE mailboxes SET name = $2, uidnext = $3, highest_modseq = $4, recent_uid = $5,
             total_size = $6, message_count = $7
         WHERE id = $1",
        &[
            SqlValue::Int(mb.id.0),
            SqlValue::text(&mb.name),
            SqlValue::Int(mb.uid_next.0.into()),
            big(mb.highest_modseq.0),
            SqlValue::Int(mb.recent_watermark.0.into()),
            big(mb.total_size),
            big(mb.message_count),
        ],
    )
    .await?;
    Ok(())
}

/// Puts `name` on the account's subscription list or takes it off; whether
/// that changed anything.
pub async fn set_subscription(
    tx: &mut dyn SqlTx,
    account: AccountId,
    name: &str,
    subscribed: bool,
) -> StoreResult<bool> {
    let sql = if subscribed {
        "INSERT INTO subscriptions(account_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING"
    } else {
        "DELETE FROM subscriptions WHERE account_id = $1 AND name = $2"
    };
    let n = tx
        .execute(sql, &[SqlValue::Int(account.0), SqlValue::text(name)])
        .await?;
    Ok(n > 0)
}

/// The account's subscribed names, in order.
pub async fn subscriptions<B: MailBackend>(
    backend: &B,
    account: AccountId,
) -> StoreResult<Vec<String>> {
    read_rows(
        backend,
        ReadCost::Small,
        "SELECT name FROM subscriptions WHERE account_id = $1 ORDER BY name",
        vec![SqlValue::Int(account.0)],
        |r| r.text(0),
    )
    .await
}
