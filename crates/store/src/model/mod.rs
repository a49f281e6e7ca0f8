//! The mail model, written once for every backend: [`crate::MailStore`] for any
//! [`MailBackend`].
//!
//! Layering (top to bottom):
//! - `MailStore` (the API sessions call) is implemented here, for every
//!   backend: UID/UIDVALIDITY/MODSEQ allocation, flag arithmetic, the rules on
//!   default mailboxes, expunge grouping, copy and move, size limits, atomic
//!   multi-recipient delivery, the caches of parsed metadata, publishing
//!   changes after commit (`mailboxes`, `messages`, `prepare`, `names`).
//! - [`MailBackend`] + [`MailTx`] (`backend`): what a backend writes — one
//!   transaction runner, a few primitives inside it (locking mailboxes in id
//!   order, UIDVALIDITY, message rows, blob references), plain reads of
//!   mailboxes and messages, the maildrop lock.
//! - [`crate::records`]: what is plain SQL both backends run, over the same
//!   transactions ([`crate::records::SqlTx`], a supertrait of `MailTx`) and a
//!   reader ([`MailBackend::read_records`]): the directory
//!   ([`crate::DirectoryStore`]), the outbound queue ([`crate::QueueStore`]),
//!   and the model's mailbox rows and subscriptions (`mailbox_rows`).
//! - [`crate::blob::BlobStore`]: where message bytes live.
//!
//! A new backend implements `MailBackend` (transactions, a dozen reads,
//! `read_records`, `node_name`), `MailTx` (eleven primitives), `SqlTx` (execute,
//! query, a key lock: its driver's values to and from
//! [`crate::records::SqlValue`]), `BlobStore` and its schema, and passes the
//! conformance tests (`tests/conformance`). The directory, the queue and every
//! rule of the mail model come with it.

pub mod backend;
mod caches;
mod import;
pub(crate) mod lifecycle;
mod mailbox_rows;
pub mod mailbox_rules;
mod mailboxes;
mod messages;
pub mod names;
pub mod prepare;
mod sort_keys;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

pub use backend::{MailBackend, MailTx, MessageRow, TxFuture, TxJob, job};
pub use caches::ParsedCaches;
pub use lifecycle::forget_recoverable_in_tx;
pub use mailboxes::{
    create_defaults_in_tx as create_default_mailboxes_in_tx, remove_in_tx as remove_mailboxes_in_tx,
};

use crate::changes::Change;
use crate::error::{StoreError, StoreResult};
use crate::mail_store::MailStore;
use crate::maildrop::MaildropLock;
use crate::parsed_cache::with_cache;
use crate::types::*;
use crate::{MessageStructure, SearchFields};

#[async_trait]
impl<B: MailBackend> MailStore for B {
    async fn text_candidates(
        &self,
        mailbox: MailboxId,
        field: TextField,
        needle: &str,
    ) -> StoreResult<Option<TextCandidates>> {
        MailBackend::text_candidates(self, mailbox, field, needle).await
    }

    async fn list_mailboxes(&self, account: AccountId) -> StoreResult<Vec<Mailbox>> {
        self.mailboxes(account).await
    }

    async fn mailbox(&self, id: MailboxId) -> StoreResult<Mailbox> {
        MailBackend::mailbox(self, id).await
    }

    async fn mailbox_by_name(
        &self,
        account: AccountId,
        name: &str,
    ) -> StoreResult<Option<Mailbox>> {
        self.find_mailbox(account, &names::canonical_name(name))
            .await
    }

    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> StoreResult<Mailbox> {
        mailboxes::create(self, account, name, special_use).await
    }

    async fn delete_mailbox(&self, id: MailboxId) -> StoreResult<()> {
        mailboxes::delete(self, id).await
    }

    async fn rename_mailbox(&self, id: MailboxId, new_name: &str) -> StoreResult<()> {
        mailboxes::rename(self, id, new_name).await
    }

    async fn subscriptions(&self, account: AccountId) -> StoreResult<Vec<String>> {
        mailbox_rows::subscriptions(self, account).await
    }

    async fn set_subscribed(
        &self,
        account: AccountId,
        name: &str,
        subscribed: bool,
    ) -> StoreResult<()> {
        mailboxes::set_subscribed(self, account, name, subscribed).await
    }

    async fn append_batch(
        &self,
        mailbox: MailboxId,
        messages: Vec<NewMessage>,
    ) -> StoreResult<Vec<Appended>> {
        messages::append_batch(self, mailbox, messages).await
    }

    async fn changed_since(
        &self,
        mailbox: MailboxId,
        since: ModSeq,
    ) -> StoreResult<Vec<MessageSummary>> {
        MailBackend::changed_since(self, mailbox, since).await
    }

    async fn claim_recent(&self, mailbox: MailboxId, up_to: Uid) -> StoreResult<Uid> {
        // One atomic statement in each backend: sessions claim on every new
        // message they see, so this is hot.
        self.raise_recent(mailbox, up_to).await
    }

    async fn move_messages(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> StoreResult<Vec<(Uid, Uid)>> {
        messages::move_messages(self, from, uids, to).await
    }

    async fn list_messages(&self, mailbox: MailboxId) -> StoreResult<Vec<MessageSummary>> {
        MailBackend::list_messages(self, mailbox).await
    }

    async fn structures(
        &self,
        blobs: &[BlobId],
    ) -> StoreResult<Vec<Option<Arc<MessageStructure>>>> {
        with_cache(&self.caches().structures, blobs, |missing| {
            MailBackend::structures(self, missing)
        })
        .await
    }

    async fn search_fields(
        &self,
        blobs: &[BlobId],
        text: bool,
    ) -> StoreResult<Vec<Option<Arc<SearchFields>>>> {
        if !text {
            return with_cache(&self.caches().header_fields, blobs, |missing| {
                MailBackend::search_fields(self, missing, false)
            })
            .await;
        }
        // Whole texts are large and read once per search: not cached.
        Ok(MailBackend::search_fields(self, blobs.to_vec(), true)
            .await?
            .into_iter()
            .map(|f| f.map(Arc::new))
            .collect())
    }

    async fn sort_fields(&self, blobs: &[BlobId]) -> StoreResult<Vec<Option<Arc<SearchFields>>>> {
        sort_keys::sort_fields(self, blobs).await
    }

    async fn read_blob(&self, blob: &BlobId) -> StoreResult<Vec<u8>> {
        self.blobs()
            .get(vec![blob.clone()], false)
            .await?
            .pop()
            .flatten()
            .ok_or_else(|| StoreError::NotFound(format!("blob {blob}")))
    }

    async fn read_blobs(&self, blobs: &[BlobId]) -> StoreResult<Vec<Option<Vec<u8>>>> {
        self.blobs().get(blobs.to_vec(), false).await
    }

    async fn read_headers(&self, blobs: &[BlobId]) -> StoreResult<Vec<Option<Arc<[u8]>>>> {
        with_cache(&self.caches().headers, blobs, |missing| {
            self.blobs().get(missing, true)
        })
        .await
    }

    async fn store_flags_if(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        op: FlagOp,
        flags: &FlagSet,
        unchanged_since: Option<ModSeq>,
    ) -> StoreResult<FlagChanges> {
        messages::store_flags(self, mailbox, uids, op, flags, unchanged_since).await
    }

    async fn expunge(
        &self,
        account: AccountId,
        messages: &[MessageRef],
    ) -> StoreResult<Vec<MessageRef>> {
        messages::expunge(self, account, messages).await
    }

    async fn copy(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> StoreResult<Vec<(Uid, Uid)>> {
        messages::copy(self, from, uids, to).await
    }

    async fn expunged_since(&self, mailbox: MailboxId, since: ModSeq) -> StoreResult<Vec<Uid>> {
        MailBackend::expunged_since(self, mailbox, since).await
    }

    async fn lock_maildrop(&self, account: AccountId) -> StoreResult<MaildropLock> {
        MailBackend::lock_maildrop(self, account).await
    }

    fn subscribe(&self, account: AccountId) -> broadcast::Receiver<Change> {
        self.feed().subscribe(account)
    }

    async fn deliver_and_queue(
        &self,
        accounts: &[AccountId],
        raw: Vec<u8>,
        queued: Option<NewQueued>,
    ) -> StoreResult<Delivered> {
        messages::deliver_and_queue(self, accounts, raw, queued).await
    }
}
