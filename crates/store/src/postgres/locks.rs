//! The POP3 maildrop lock across nodes (RFC 1939 §8): a lease row in
//! `maildrop_leases` (account, fencing token, holder, expiry), renewed by the
//! node that holds it, with every write of the holding session fenced by the token.
//!
//! Why not a session advisory lock (as before): it lives in one database
//! connection, so a PostgreSQL restart drops every node's locks at once. The node
//! that asks first after the restart got the maildrop while the old session, whose
//! node had not noticed yet, went on serving it — two sessions on one maildrop
//! (issue 16, finding 9). A lease row is committed data: it survives restarts,
//! failovers and lost connections, and passes to another session only by expiring.
//!
//! INVARIANT: a second session is granted a maildrop only when the first can no
//! longer act on it:
//! 1. Granting needs the row to be absent or expired by the database's clock
//!    (`expires_at <= clock_timestamp()`): a takeover deletes the expired row and
//!    inserts one with a fresh token from a sequence (tokens are never reused).
//! 2. The holding node renews its leases every `ttl / 3`. A renewal sent at local
//!    time `t` sets `expires_at = clock_timestamp() + ttl` on the database, which is
//!    later than `t`; the session counts its lease good only until `t + ttl - margin`
//!    on its own monotonic clock. So its local deadline always passes before the
//!    database lets anyone take over (clock rates may differ by `margin / ttl`,
//!    10 %, far more than real clocks drift; a step of the database host's wall
//!    clock forward by more than `margin` breaks this point, and point 3 still
//!    keeps the writes apart). Past the deadline, or once a renewal
//!    finds the row gone or with another token, the lease is lost for good:
//!    [`Lease::check`] fails and the POP3 session ends at its next command.
//! 3. Fencing, for a session that acts after its deadline anyway (a command begun
//!    before it, a stalled process): every write made through the session's
//!    fenced store begins by reading its lease row `FOR KEY SHARE` with its token
//!    and an unexpired `expires_at`, and fails (`InUse`) without it. The takeover's
//!    DELETE conflicts with that row lock, so it waits for a write already past
//!    the check to commit; renewals (an UPDATE of a non-key column) do not wait.
//!    A lease taken over therefore never sees a write of its old holder after the
//!    takeover commits.
//!
//! Costs: a node that dies keeps its users' maildrops locked until their leases
//! expire (`ttl`, 30 s by default; POP3 clients are told [IN-USE] meanwhile); a
//! database outage shorter than `ttl - margin - ttl / 3 - ttl / 30` (16 s by
//! default: a failed renewal is retried every `ttl / 30`) ends no session. A clean
//! end of a session deletes its row at once.
//!
//! One task per node owns one dedicated connection and makes every acquire,
//! renewal and release of the node on it, in order (an unlock queued by a dropped
//! guard runs before the next acquire on this node). Its statements wait at most
//! `lock_timeout` (2 s) for a row lock, so a long write elsewhere stalls the
//! renewals of the node's other leases no longer than that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, Config};

use super::PgStore;
use super::pool::{Conn, connect};
use crate::error::{StoreError, StoreResult};
use crate::types::AccountId;
use crate::{MailStore, MaildropHold, MaildropLock};

/// The lease's length unless configured ([`super::PgOptions::maildrop_lease`]).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Settings of the lock connection: never wait long on a row lock (a takeover
/// waits for the old holder's write in flight, no longer).
const LOCK_SESSION_SETUP: &str = "SET lock_timeout = '2s'";

/// How long a lease lasts, how often it is renewed, and how much sooner than the
/// database its holder gives it up.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub ttl: Duration,
    pub renew_every: Duration,
    /// After a failed renewal: try again this soon.
    pub retry_every: Duration,
    pub margin: Duration,
}

impl Timing {
    pub fn new(ttl: Duration) -> Timing {
        let ttl = ttl.max(Duration::from_millis(300));
        Timing {
            ttl,
            renew_every: ttl / 3,
            retry_every: (ttl / 30).max(Duration::from_millis(100)),
            margin: ttl / 10,
        }
    }

    fn ttl_ms(&self) -> i64 {
        self.ttl.as_millis().min(i64::MAX as u128) as i64
    }

    /// Until when a lease renewed (or granted) by a request sent at `sent` is
    /// certainly held.
    fn good_until(&self, sent: Instant) -> Instant {
        sent + (self.ttl - self.margin)
    }
}

/// A lease's identity in the database: what a fenced write checks.
#[derive(Debug, Clone, Copy)]
pub struct Fence {
    pub account: i64,
    pub token: i64,
}

/// Why a lease was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lost {
    /// Not renewed before its local deadline (the database was out of reach).
    Expired,
    /// A renewal found the row gone or with another token.
    TakenOver,
}

/// One granted lease, shared by the lock task (which renews it) and the session's
/// guard (which checks it).
pub struct Lease {
    fence: Fence,
    state: Mutex<LeaseState>,
}

struct LeaseState {
    /// Local deadline: held for certain until then (invariant, point 2).
    good_until: Instant,
    /// Sticky once set.
    lost: Option<Lost>,
}

impl Lease {
    fn new(fence: Fence, good_until: Instant) -> Lease {
        Lease {
            fence,
            state: Mutex::new(LeaseState {
                good_until,
                lost: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Ok` while held; lost for good once the local deadline has passed.
    pub fn check(&self) -> StoreResult<()> {
        let mut s = self.state();
        if s.lost.is_none() && Instant::now() >= s.good_until {
            s.lost = Some(Lost::Expired);
            tracing::warn!(
                account = self.fence.account,
                "maildrop lease expired before it could be renewed; the session ends"
            );
        }
        match s.lost {
            None => Ok(()),
            Some(Lost::Expired) => Err(StoreError::Temporary(
                "maildrop lease expired: the database was out of reach".into(),
            )),
            Some(Lost::TakenOver) => Err(StoreError::InUse(
                "maildrop lease taken over by another session".into(),
            )),
        }
    }

    fn is_live(&self) -> bool {
        self.check().is_ok()
    }

    fn renewed(&self, until: Instant) {
        let mut s = self.state();
        if s.lost.is_none() {
            s.good_until = s.good_until.max(until);
        }
    }

    fn lose(&self, why: Lost) {
        let mut s = self.state();
        if s.lost.is_none() {
            s.lost = Some(why);
            tracing::error!(
                account = self.fence.account,
                "maildrop lease lost: its row is gone or another session's; the session ends"
            );
        }
    }
}

pub enum Cmd {
    Acquire(AccountId, oneshot::Sender<StoreResult<Arc<Lease>>>),
    Release(Fence),
}

/// The session's side: checks the lease, writes through the fenced store, and
/// queues the release when dropped.
struct Guard {
    tx: mpsc::UnboundedSender<Cmd>,
    lease: Arc<Lease>,
    fenced: Arc<dyn MailStore>,
}

impl MaildropHold for Guard {
    fn check(&self) -> StoreResult<()> {
        self.lease.check()
    }

    fn fenced_store(&self) -> Option<Arc<dyn MailStore>> {
        Some(self.fenced.clone())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Release(self.lease.fence));
    }
}

pub async fn lock(store: &PgStore, account: AccountId) -> StoreResult<MaildropLock> {
    let tx = &store.inner.locks;
    let (reply, answer) = oneshot::channel();
    tx.send(Cmd::Acquire(account, reply))
        .map_err(|_| StoreError::Internal("maildrop lock task has stopped".into()))?;
    let lease = answer
        .await
        .map_err(|_| StoreError::Internal("maildrop lock task has stopped".into()))??;
    let fenced = PgStore {
        inner: store.inner.clone(),
        fence: Some(lease.fence),
    };
    Ok(MaildropLock::with_hold(Box::new(Guard {
        tx: tx.clone(),
        lease,
        fenced: Arc::new(fenced),
    })))
}

/// The first statement of every write through a fenced store (invariant, point
/// 3): the lease row, unexpired and with this token, locked against a takeover
/// until the write commits.
pub async fn check_fence(conn: &mut Conn, fence: Fence) -> StoreResult<()> {
    let row = conn
        .query_opt(
            "SELECT 1 FROM maildrop_leases
              WHERE account_id = $1 AND token = $2 AND expires_at > clock_timestamp()
              FOR KEY SHARE",
            &[&fence.account, &fence.token],
        )
        .await?;
    match row {
        Some(_) => Ok(()),
        None => Err(StoreError::InUse(
            "maildrop lease lost; the write was refused".into(),
        )),
    }
}

struct State {
    config: Config,
    timing: Timing,
    /// This node's name, kept in the rows (who holds what, for an operator).
    holder: String,
    client: Option<Client>,
    /// The live leases of this node, by account.
    held: HashMap<AccountId, Arc<Lease>>,
    /// Releases that could not reach the database yet (retried at each tick).
    unreleased: Vec<Fence>,
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> StoreResult<T> {
    tokio::time::timeout(QUERY_TIMEOUT, f)
        .await
        .map_err(|_| StoreError::Temporary("maildrop lock query timed out".into()))?
        .map_err(StoreError::from)
}

impl State {
    async fn connection(&mut self) -> StoreResult<&Client> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
            let client = connect(&self.config).await?;
            timed(client.batch_execute(LOCK_SESSION_SETUP)).await?;
            self.client = Some(client);
        }
        self.client
            .as_ref()
            .ok_or_else(|| StoreError::Internal("no lock connection".into()))
    }

    async fn acquire(&mut self, account: AccountId) -> StoreResult<Arc<Lease>> {
        if self.held.get(&account).is_some_and(|l| l.is_live()) {
            return Err(StoreError::InUse(
                "maildrop is locked by another session".into(),
            ));
        }
        // A connection that died while idle shows only when used: one retry on a
        // fresh one.
        let mut attempts = 2;
        loop {
            attempts -= 1;
            match self.try_acquire(account).await {
                Ok(Some(lease)) => {
                    self.held.insert(account, lease.clone());
                    return Ok(lease);
                }
                Ok(None) => {
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

    /// The takeover of an expired row and the insert (invariant, point 1).
    async fn try_acquire(&mut self, account: AccountId) -> StoreResult<Option<Arc<Lease>>> {
        let ttl = self.timing.ttl_ms();
        let holder = self.holder.clone();
        let sent = Instant::now();
        let client = self.connection().await?;
        timed(client.execute(
            "DELETE FROM maildrop_leases WHERE account_id = $1 AND expires_at <= clock_timestamp()",
            &[&account.0],
        ))
        .await?;
        let row = timed(client.query_opt(
            "INSERT INTO maildrop_leases (account_id, token, holder, expires_at)
             VALUES ($1, nextval('maildrop_lease_tokens'), $2,
                     clock_timestamp() + $3::bigint * interval '1 millisecond')
             ON CONFLICT (account_id) DO NOTHING
             RETURNING token",
            &[&account.0, &holder, &ttl],
        ))
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let fence = Fence {
            account: account.0,
            token: row.try_get(0)?,
        };
        Ok(Some(Arc::new(Lease::new(
            fence,
            self.timing.good_until(sent),
        ))))
    }

    async fn release(&mut self, fence: Fence) {
        let account = AccountId(fence.account);
        if self
            .held
            .get(&account)
            .is_some_and(|l| l.fence.token == fence.token)
        {
            self.held.remove(&account);
        }
        if self.delete(fence).await.is_err() {
            // Retried at the next tick; until then the lease expires by itself.
            tracing::warn!(
                account = fence.account,
                "maildrop unlock failed; will retry"
            );
            self.client = None;
            self.unreleased.push(fence);
        }
    }

    async fn delete(&mut self, fence: Fence) -> StoreResult<()> {
        let client = self.connection().await?;
        timed(client.execute(
            "DELETE FROM maildrop_leases WHERE account_id = $1 AND token = $2",
            &[&fence.account, &fence.token],
        ))
        .await?;
        Ok(())
    }

    /// Every tick: retries releases, then renews the live leases in one statement
    /// (invariant, point 2). False when the database could not be reached.
    async fn renew(&mut self) -> bool {
        for fence in std::mem::take(&mut self.unreleased) {
            if self.delete(fence).await.is_err() {
                self.client = None;
                self.unreleased.push(fence);
            }
        }
        self.held.retain(|_, l| l.is_live());
        if self.held.is_empty() {
            return self.unreleased.is_empty();
        }
        let (accounts, tokens): (Vec<i64>, Vec<i64>) = self
            .held
            .values()
            .map(|l| (l.fence.account, l.fence.token))
            .unzip();
        let ttl = self.timing.ttl_ms();
        let sent = Instant::now();
        let renewed = match self.connection().await {
            Ok(client) => {
                timed(client.query(
                    "UPDATE maildrop_leases l
                        SET expires_at = clock_timestamp() + $3::bigint * interval '1 millisecond'
                       FROM unnest($1::bigint[], $2::bigint[]) AS h(account_id, token)
                      WHERE l.account_id = h.account_id AND l.token = h.token
                        AND l.expires_at > clock_timestamp()
                     RETURNING l.account_id",
                    &[&accounts, &tokens, &ttl],
                ))
                .await
            }
            Err(e) => Err(e),
        };
        let rows = match renewed {
            Ok(rows) => rows,
            Err(e) => {
                // The leases run on: the database may be back before they end.
                tracing::warn!(error = %e, leases = self.held.len(), "maildrop leases not renewed");
                self.client = None;
                return false;
            }
        };
        let until = self.timing.good_until(sent);
        let mut renewed = std::collections::HashSet::with_capacity(rows.len());
        for row in rows {
            if let Ok(account) = row.try_get::<_, i64>(0) {
                renewed.insert(account);
            }
        }
        self.held.retain(|account, lease| {
            if renewed.contains(&account.0) {
                lease.renewed(until);
                true
            } else {
                lease.lose(Lost::TakenOver);
                false
            }
        });
        true
    }
}

/// The task: ends when every sender (the store and all guards) is gone, which
/// closes the connection; leases left behind expire by themselves.
pub async fn run(
    config: Config,
    timing: Timing,
    holder: String,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
) {
    let mut state = State {
        config,
        timing,
        holder,
        client: None,
        held: HashMap::new(),
        unreleased: Vec::new(),
    };
    let mut next = tokio::time::Instant::now() + timing.renew_every;
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                None => return,
                Some(Cmd::Acquire(account, reply)) => {
                    let r = state.acquire(account).await;
                    if let Err(Ok(lease)) = reply.send(r) {
                        // The caller gave up meanwhile: nobody holds this lock.
                        state.release(lease.fence).await;
                    }
                }
                Some(Cmd::Release(fence)) => state.release(fence).await,
            },
            _ = tokio::time::sleep_until(next) => {
                // Out of reach: try again soon, so that an outage shorter than
                // the lease's slack ends no session.
                let wait = if state.renew().await {
                    timing.renew_every
                } else {
                    timing.retry_every
                };
                next = tokio::time::Instant::now() + wait;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_deadline_comes_before_the_database_expiry() {
        let t = Timing::new(Duration::from_secs(30));
        assert_eq!(t.renew_every, Duration::from_secs(10));
        let sent = Instant::now();
        // The database's expiry is at least `sent + ttl`.
        assert!(t.good_until(sent) + t.margin <= sent + t.ttl);
        // Two renewals may fail before the lease is given up.
        assert!(t.good_until(sent) > sent + 2 * t.renew_every);
    }

    #[test]
    fn a_lease_is_lost_at_its_deadline_and_stays_lost() {
        let fence = Fence {
            account: 1,
            token: 7,
        };
        let lease = Lease::new(fence, Instant::now() + Duration::from_millis(30));
        assert!(lease.check().is_ok());
        std::thread::sleep(Duration::from_millis(40));
        assert!(matches!(lease.check(), Err(StoreError::Temporary(_))));
        // A renewal that lands late does not bring it back.
        lease.renewed(Instant::now() + Duration::from_secs(60));
        assert!(matches!(lease.check(), Err(StoreError::Temporary(_))));

        let taken = Lease::new(fence, Instant::now() + Duration::from_secs(60));
        taken.lose(Lost::TakenOver);
        assert!(matches!(taken.check(), Err(StoreError::InUse(_))));
        taken.renewed(Instant::now() + Duration::from_secs(120));
        assert!(matches!(taken.check(), Err(StoreError::InUse(_))));
    }

    #[test]
    fn renewals_extend_a_live_lease() {
        let fence = Fence {
            account: 1,
            token: 7,
        };
        let lease = Lease::new(fence, Instant::now() + Duration::from_millis(30));
        lease.renewed(Instant::now() + Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(40));
        assert!(lease.check().is_ok());
    }
}
