//! Directory data: accounts, aliases, login history, login blocks and sign-outs.
//! Written once for every backend, as SQL over the backend's transactions and
//! reads (`crate::records::directory`).

use async_trait::async_trait;

use crate::error::StoreResult;
use crate::types::*;

/// Accounts and what belongs to them apart from their mail. All methods are safe
/// to call concurrently, from many nodes for a shared backend.
#[async_trait]
pub trait DirectoryStore: Send + Sync + 'static {
    /// Creates the account and, in the same transaction, its default mailboxes
    /// ([`DEFAULT_MAILBOXES`]). `Exists` if the address is taken (addresses
    /// compare case-insensitively).
    async fn create_account(&self, new: NewAccount) -> StoreResult<Account>;
    /// Removes the account with all its mailboxes and messages.
    async fn delete_account(&self, id: AccountId) -> StoreResult<()>;
    async fn account(&self, id: AccountId) -> StoreResult<Account>;
    async fn account_by_address(&self, address: &str) -> StoreResult<Option<Account>>;
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    /// Writes the account's password hash, switches and settings.
    async fn update_account(&self, account: &Account) -> StoreResult<()>;
    /// A domain is local when some account has an address in it.
    async fn is_local_domain(&self, domain: &str) -> StoreResult<bool>;

    /// Adds an alias (another address the account owns: it receives mail and may
    /// send as it). `Exists` if the address is an account or alias already.
    async fn add_alias(&self, account: AccountId, alias: &str) -> StoreResult<()>;
    async fn remove_alias(&self, alias: &str) -> StoreResult<()>;
    async fn aliases(&self, account: AccountId) -> StoreResult<Vec<String>>;
    /// The account an address belongs to: its own address or one of its aliases.
    async fn account_for_address(&self, address: &str) -> StoreResult<Option<Account>>;

    /// Records login attempts (oldest first) in one transaction, keeping the
    /// newest [`LOGIN_HISTORY`] per account.
    async fn record_logins(&self, logins: Vec<(AccountId, LoginRecord)>) -> StoreResult<()>;
    /// The newest logins of an account, newest first.
    async fn recent_logins(&self, account: AccountId) -> StoreResult<Vec<LoginRecord>>;

    /// Saves (or extends) a login block.
    async fn save_block(&self, block: StoredBlock) -> StoreResult<()>;
    /// The blocks that have not ended yet (ended ones are removed).
    async fn blocks(&self, now: i64) -> StoreResult<Vec<StoredBlock>>;
    /// Lifts a block; false when there was none.
    async fn delete_block(&self, key: &str) -> StoreResult<bool>;

    /// Records "sign out of all devices" for `address` at `at` (seconds since
    /// the epoch) and returns its sequence number; records older than
    /// [`crate::SIGNOUT_KEPT_SECS`] are dropped on the way.
    async fn record_signout(&self, address: &str, at: i64) -> StoreResult<u64>;
    /// The sign-outs recorded at or after `since`, oldest first. Nodes poll it
    /// and remember the sequence numbers they have acted on.
    async fn signouts_since(&self, since: i64) -> StoreResult<Vec<Signout>>;
}
