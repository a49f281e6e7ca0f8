//! The POP3 maildrop lock across nodes (RFC 1939 §8): a PostgreSQL session advisory
//! lock, `pg_try_advisory_lock(MAILDROP_LOCK, account)`.
//!
//! One task per node owns one dedicated connection and holds all of this node's
//! maildrop locks on it, rather than one connection per POP3 session: a busy node
//! would otherwise spend a database connection on every open POP3 session.
//! Requests reach the task over a channel, in order, so a guard dropped (unlock
//! queued synchronously in `Drop`) before the next `lock_maildrop` on this node is
//! always unlocked first. Advisory locks stack within a session, so the task keeps
//! the set of accounts it holds and answers `InUse` for them itself.
//!
//! If the connection is lost, the server has released every lock it held; the task
//! reconnects and takes them again before serving anything else (and checks its
//! connection every few seconds while it holds any). Should another node have
//! taken one meanwhile, that is logged: the trait has no way to tell the session.

use std::collections::HashSet;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, Config};

use super::pool::connect;
use crate::MaildropLock;
use crate::error::{StoreError, StoreResult};
use crate::types::AccountId;

/// Advisory lock class for maildrops: `(MAILDROP_LOCK, account id)`.
pub const MAILDROP_LOCK: i32 = 0x6361_7301;
const CHECK_INTERVAL: Duration = Duration::from_secs(5);
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

pub enum Cmd {
    Acquire(AccountId, oneshot::Sender<StoreResult<()>>),
    Release(AccountId),
}

/// The account id as the advisory lock's second key (ids beyond 2^32 wrap: two
/// accounts could then share a lock, which errs on the safe side).
fn key(account: AccountId) -> i32 {
    account.0 as u32 as i32
}

/// Holds the lock; dropping it queues the unlock.
struct Guard {
    tx: mpsc::UnboundedSender<Cmd>,
    account: AccountId,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Release(self.account));
    }
}

pub async fn lock(
    tx: &mpsc::UnboundedSender<Cmd>,
    account: AccountId,
) -> StoreResult<MaildropLock> {
    let (reply, answer) = oneshot::channel();
    tx.send(Cmd::Acquire(account, reply))
        .map_err(|_| StoreError::Internal("maildrop lock task has stopped".into()))?;
    answer
        .await
        .map_err(|_| StoreError::Internal("maildrop lock task has stopped".into()))??;
    Ok(MaildropLock::new(Box::new(Guard {
        tx: tx.clone(),
        account,
    })))
}

struct State {
    config: Config,
    client: Option<Client>,
    held: HashSet<AccountId>,
}

impl State {
    /// A live connection holding every lock in `held`.
    async fn connection(&mut self) -> StoreResult<&Client> {
        let alive = self.client.as_ref().is_some_and(|c| !c.is_closed());
        if !alive {
            self.client = None;
            let client = connect(&self.config).await?;
            for account in self.held.clone() {
                let got = try_lock(&client, account).await?;
                if !got {
                    tracing::error!(
                        account = account.0,
                        "maildrop lock lost with the database connection and taken by another node"
                    );
                }
            }
            self.client = Some(client);
        }
        self.client
            .as_ref()
            .ok_or_else(|| StoreError::Internal("no lock connection".into()))
    }

    async fn acquire(&mut self, account: AccountId) -> StoreResult<()> {
        if self.held.contains(&account) {
            return Err(StoreError::InUse(
                "maildrop is locked by another session".into(),
            ));
        }
        // A connection that died while idle shows only when used: one retry on a
        // fresh one.
        let mut attempts = 2;
        loop {
            attempts -= 1;
            let client = self.connection().await?;
            match try_lock(client, account).await {
                Ok(true) => {
                    self.held.insert(account);
                    return Ok(());
                }
                Ok(false) => {
                    return Err(StoreError::InUse(
                        "maildrop is locked by another session".into(),
                    ));
                }
                Err(e) => {
                    self.client = None;
                    if attempts == 0 {
                        return Err(e);
                    }
                }
            }
        }
    }

    async fn release(&mut self, account: AccountId) {
        if !self.held.remove(&account) {
            return;
        }
        let Some(client) = self.client.as_ref() else {
            return;
        };
        let r = tokio::time::timeout(
            QUERY_TIMEOUT,
            client.execute(
                "SELECT pg_advisory_unlock($1, $2)",
                &[&MAILDROP_LOCK, &key(account)],
            ),
        )
        .await;
        if !matches!(r, Ok(Ok(_))) {
            // Closing the connection releases everything; the others are taken
            // again on reconnect.
            tracing::warn!(account = account.0, "maildrop unlock failed; reconnecting");
            self.client = None;
        }
    }

    async fn check(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let ok = match self.client.as_ref() {
            Some(c) => matches!(
                tokio::time::timeout(QUERY_TIMEOUT, c.check_connection()).await,
                Ok(Ok(()))
            ),
            None => false,
        };
        if !ok {
            self.client = None;
            if let Err(e) = self.connection().await {
                tracing::warn!(error = %e, "maildrop lock connection is down");
            }
        }
    }
}

async fn try_lock(client: &Client, account: AccountId) -> StoreResult<bool> {
    let row = tokio::time::timeout(
        QUERY_TIMEOUT,
        client.query_one(
            "SELECT pg_try_advisory_lock($1, $2)",
            &[&MAILDROP_LOCK, &key(account)],
        ),
    )
    .await
    .map_err(|_| StoreError::Temporary("maildrop lock timed out".into()))??;
    Ok(row.try_get(0)?)
}

/// The task: ends when every sender (the store and all guards) is gone, which
/// closes the connection and so releases whatever is left.
pub async fn run(config: Config, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let mut state = State {
        config,
        client: None,
        held: HashSet::new(),
    };
    let mut check = tokio::time::interval(CHECK_INTERVAL);
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                None => return,
                Some(Cmd::Acquire(account, reply)) => {
                    let r = state.acquire(account).await;
                    let ok = r.is_ok();
                    if reply.send(r).is_err() && ok {
                        // The caller gave up meanwhile: nobody holds this lock.
                        state.release(account).await;
                    }
                }
                Some(Cmd::Release(account)) => state.release(account).await,
            },
            _ = check.tick() => state.check().await,
        }
    }
}
