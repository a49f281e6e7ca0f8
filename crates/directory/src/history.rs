//! The login history written in batches: a login never waits for it, and a
//! burst of logins costs one store transaction per second, not one each. The
//! last second of history may be lost in a crash; no mail is.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use casella_store::{AccountId, LoginRecord, Store};
use tokio::sync::mpsc;

/// Most records written in one batch.
const BATCH: usize = 512;
/// How long records may wait to be written.
const DELAY: Duration = Duration::from_secs(1);
/// Records queued beyond this are dropped (the store is not keeping up).
const QUEUE: usize = 16_384;

pub struct LoginHistory {
    store: Arc<dyn Store>,
    queue: OnceLock<mpsc::Sender<(AccountId, LoginRecord)>>,
}

impl LoginHistory {
    pub fn new(store: Arc<dyn Store>) -> LoginHistory {
        LoginHistory {
            store,
            queue: OnceLock::new(),
        }
    }

    /// Queues a record; the writer task starts with the first one.
    pub fn add(&self, account: AccountId, record: LoginRecord) {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(write_batches(self.store.clone(), rx));
            tx
        });
        if queue.try_send((account, record)).is_err() {
            tracing::warn!("login history queue full; a record was dropped");
        }
    }
}

async fn write_batches(store: Arc<dyn Store>, mut rx: mpsc::Receiver<(AccountId, LoginRecord)>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // Wait for the first record, then gather what comes within DELAY.
        match rx.recv().await {
            Some(r) => batch.push(r),
            None => return,
        }
        let deadline = tokio::time::Instant::now() + DELAY;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => batch.push(r),
                Ok(None) | Err(_) => break,
            }
        }
        if let Err(e) = store.record_logins(std::mem::take(&mut batch)).await {
            tracing::warn!(error = %e, "writing the login history failed");
        }
    }
}
