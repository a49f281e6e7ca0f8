//! The outbound queue: messages waiting for the relay, with their recipients'
//! states and the claims that keep two runners from sending one entry. Written
//! once for every backend (`crate::records::queue`).

use async_trait::async_trait;

use crate::error::StoreResult;
use crate::types::*;

/// The outbound queue. Safe to use from many runners (and nodes) at once.
#[async_trait]
pub trait QueueStore: Send + Sync + 'static {
    /// Puts a message on the outbound queue durably, due at once.
    async fn enqueue(&self, new: NewQueued) -> StoreResult<QueueId>;
    /// Claims up to `limit` entries due at `now`: they are returned and held for
    /// `lease` seconds so no other runner takes them meanwhile; the runner then
    /// records the outcome with `queue_update` or `queue_remove`, which ends the
    /// claim.
    async fn queue_claim(&self, now: i64, lease: i64, limit: usize) -> StoreResult<Vec<Queued>>;
    /// Takes back the claims this node holds (called when its relay starts, after a
    /// crash or restart, so claimed entries need not wait for their lease).
    async fn queue_release_claims(&self) -> StoreResult<()>;
    /// When the earliest unclaimed entry is due (Unix seconds), if any.
    async fn queue_next_attempt(&self) -> StoreResult<Option<i64>>;
    /// Every entry, oldest first.
    async fn queue_list(&self) -> StoreResult<Vec<Queued>>;
    async fn queue_message(&self, id: QueueId) -> StoreResult<Vec<u8>>;
    /// Writes recipients' states, attempts, next attempt and last error, and ends
    /// the claim: for the runner that claimed the entry, after its attempt.
    async fn queue_update(&self, entry: &Queued) -> StoreResult<()>;
    /// `queue retry`: makes entry `id` (every entry when `None`) due at `now`, in
    /// one conditional update that touches only the next attempt of entries no
    /// runner holds. A claimed entry (its lease not yet run out) is left alone and
    /// counted in `in_delivery`: the attempt in progress is the retry, and
    /// rewriting it would end the claim and let another runner send it again.
    /// `NotFound` when `id` names no entry.
    async fn queue_retry(&self, id: Option<QueueId>, now: i64) -> StoreResult<QueueRetried>;
    async fn queue_remove(&self, id: QueueId) -> StoreResult<()>;
}
