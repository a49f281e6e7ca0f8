//! Mailbox operations: creation with a fresh UIDVALIDITY, the rules on which
//! mailboxes may be deleted or renamed, subscriptions and the \Recent watermark.
//! (CREATE does not subscribe, RFC 9051 §6.3.4; a new account's default
//! folders are.)

use crate::changes::Change;
use crate::error::{StoreError, StoreResult};
use crate::model::backend::{MailBackend, MailTx, job};
use crate::model::names::{canonical_name, validate_mailbox_name};
use crate::model::{lifecycle, mailbox_rows, mailbox_rules};
use crate::now_unix;
use crate::types::*;

/// Creates a mailbox inside an open transaction (also used for an account's
/// default mailboxes). `Exists` when the name is taken.
pub async fn create_in_tx(
    tx: &mut dyn MailTx,
    account: AccountId,
    name: &str,
    special_use: Option<SpecialUse>,
) -> StoreResult<Mailbox> {
    let name = canonical_name(name);
    validate_mailbox_name(&name)?;
    if tx.find_mailbox(account, &name).await?.is_some() {
        return Err(StoreError::Exists(format!("mailbox {name}")));
    }
    // RFC 9051 §2.3.1.1: a name used again gets a UIDVALIDITY never used
    // before. Seconds since the epoch, or one more than the last one handed
    // out if the clock has not moved on.
    let clock = now_unix().clamp(1, u32::MAX as i64) as u32;
    let validity = tx.next_uid_validity(clock).await?;
    mailbox_rows::insert_mailbox(tx, account, &name, special_use, validity).await
}

/// A new account's default mailboxes ([`DEFAULT_MAILBOXES`]), subscribed.
pub async fn create_defaults_in_tx(tx: &mut dyn MailTx, account: AccountId) -> StoreResult<()> {
    for (name, role) in DEFAULT_MAILBOXES {
        create_in_tx(tx, account, name, *role).await?;
        mailbox_rows::set_subscription(tx, account, name, true).await?;
    }
    Ok(())
}

pub async fn create<B: MailBackend>(
    backend: &B,
    account: AccountId,
    name: &str,
    special_use: Option<SpecialUse>,
) -> StoreResult<Mailbox> {
    let name = name.to_string();
    let mb = backend
        .transact(job(move |tx| {
            Box::pin(async move {
                let mb = create_in_tx(tx, account, &name, special_use).await?;
                tx.announce(account, &[Change::MailboxList]);
                Ok(mb)
            })
        }))
        .await?;
    backend.feed().publish(account, [Change::MailboxList]);
    Ok(mb)
}

/// Deletes the mailbox; INBOX and the default folders are refused
/// (`mailbox_rules`). Its messages stay recoverable (`lifecycle`), each
/// holding the blob reference its message held.
pub async fn delete<B: MailBackend>(backend: &B, id: MailboxId) -> StoreResult<()> {
    let now = backend.clock().now();
    let account = backend
        .transact(job(move |tx| {
            Box::pin(async move {
                let mb = lock_one(tx, id).await?;
                mailbox_rules::check_delete(&mb)?;
                lifecycle::keep_recoverable(tx, &mb, None, now).await?;
                tx.remove_mailbox(id).await?;
                tx.announce(mb.account, &[Change::MailboxList]);
                Ok(mb.account)
            })
        }))
        .await?;
    backend.feed().publish(account, [Change::MailboxList]);
    Ok(())
}

/// Renames the mailbox (it keeps its UIDVALIDITY). The default folders are
/// refused; INBOX cannot be the new name. (RENAME of INBOX itself, RFC 9051
/// §6.3.6, moves its messages to a new mailbox; the session does that.)
pub async fn rename<B: MailBackend>(backend: &B, id: MailboxId, new_name: &str) -> StoreResult<()> {
    let new_name = canonical_name(new_name);
    validate_mailbox_name(&new_name)?;
    let account = backend
        .transact(job(move |tx| {
            Box::pin(async move {
                let mut mb = lock_one(tx, id).await?;
                mailbox_rules::check_rename(&mb)?;
                if new_name == "INBOX" {
                    return Err(StoreError::Exists("mailbox INBOX".into()));
                }
                if tx.find_mailbox(mb.account, &new_name).await?.is_some() {
                    return Err(StoreError::Exists(format!("mailbox {new_name}")));
                }
                // The subscription goes with the name (as in Dovecot; RFC
                // 9051 leaves it open), so a renamed folder stays visible to
                // clients that show subscribed folders only.
                if mailbox_rows::set_subscription(tx, mb.account, &mb.name, false).await? {
                    mailbox_rows::set_subscription(tx, mb.account, &new_name, true).await?;
                }
                mb.name = new_name;
                mailbox_rows::save_mailbox(tx, &mb).await?;
                tx.announce(mb.account, &[Change::MailboxList]);
                Ok(mb.account)
            })
        }))
        .await?;
    backend.feed().publish(account, [Change::MailboxList]);
    Ok(())
}

/// SUBSCRIBE / UNSUBSCRIBE (RFC 9051 §6.3.7, §6.3.8): any valid name, with
/// or without a mailbox.
pub async fn set_subscribed<B: MailBackend>(
    backend: &B,
    account: AccountId,
    name: &str,
    subscribed: bool,
) -> StoreResult<()> {
    let name = canonical_name(name);
    validate_mailbox_name(&name)?;
    let changed = backend
        .transact(job(move |tx| {
            Box::pin(async move {
                let changed =
                    mailbox_rows::set_subscription(tx, account, &name, subscribed).await?;
                if changed {
                    tx.announce(account, &[Change::MailboxList]);
                }
                Ok(changed)
            })
        }))
        .await?;
    // Sessions that watch the list (IMAP NOTIFY SubscriptionChange) look again.
    if changed {
        backend.feed().publish(account, [Change::MailboxList]);
    }
    Ok(())
}

/// One mailbox, locked.
pub async fn lock_one(tx: &mut dyn MailTx, id: MailboxId) -> StoreResult<Mailbox> {
    tx.lock_mailboxes(&[id])
        .await?
        .pop()
        .ok_or_else(|| StoreError::NotFound(format!("mailbox {}", id.0)))
}

/// Removes mailboxes with all their messages inside an open transaction,
/// releasing their blobs (deleting an account). No rules: everything goes.
pub async fn remove_in_tx(tx: &mut dyn MailTx, ids: &[MailboxId]) -> StoreResult<()> {
    tx.lock_mailboxes(ids).await?;
    let mut released = Vec::new();
    for id in ids {
        released.extend(tx.remove_mailbox(*id).await?);
    }
    tx.adjust_blob_refs(&super::messages::releases(released))
        .await
}
