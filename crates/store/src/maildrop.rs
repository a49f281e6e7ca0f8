//! The POP3 maildrop lock (RFC 1939 §8: exclusive access to a maildrop).

use crate::error::StoreResult;
use crate::mail_store::MailStore;

/// Held while a POP3 session owns an account's maildrop (RFC 1939 §8: exclusive
/// access). Dropping it releases the lock.
///
/// A lock in a shared database can be lost while its session runs (the node lost
/// the database for longer than the lock's lease). Such a session must ask
/// [`MaildropLock::check`] before each command and end when it fails, and make its
/// writes through [`MaildropLock::fenced_store`], which refuses them (`InUse`) in
/// their own transaction once the lock has passed to another session.
pub struct MaildropLock {
    hold: Box<dyn MaildropHold>,
}

/// A backend's maildrop lock; dropping it releases the lock.
pub trait MaildropHold: Send + Sync {
    /// `Ok` while the lock is held. Once lost it stays lost, and the error says
    /// why: `InUse` (another session has it now) or `Temporary` (it could not be
    /// kept, e.g. the database was out of reach for longer than the lease).
    fn check(&self) -> StoreResult<()> {
        Ok(())
    }
    /// The store to write through while holding the lock: each write checks in
    /// its own transaction that the lock is still held. `None`: the lock cannot
    /// be lost while held (one process), write to the store itself.
    fn fenced_store(&self) -> Option<std::sync::Arc<dyn MailStore>> {
        None
    }
}

/// A lock that cannot be lost while held: only its release on drop.
struct Unlosable {
    _release: Box<dyn Send + Sync>,
}

impl MaildropHold for Unlosable {}

impl MaildropLock {
    /// A lock that holds until dropped (one process); dropping `release` releases it.
    pub fn new(release: Box<dyn Send + Sync>) -> MaildropLock {
        MaildropLock {
            hold: Box::new(Unlosable { _release: release }),
        }
    }

    /// A lock that can be lost while held (a lease in a shared database).
    pub fn with_hold(hold: Box<dyn MaildropHold>) -> MaildropLock {
        MaildropLock { hold }
    }

    /// See [`MaildropHold::check`].
    pub fn check(&self) -> StoreResult<()> {
        self.hold.check()
    }

    /// See [`MaildropHold::fenced_store`].
    pub fn fenced_store(&self) -> Option<std::sync::Arc<dyn MailStore>> {
        self.hold.fenced_store()
    }
}
