//! A small connection pool over tokio-postgres, the error mapping, and the
//! transaction helper.
//!
//! Each pooled connection keeps its own prepared statements (by SQL text), so a hot
//! query costs one round trip. A connection returns to the pool only in a known
//! state: one dropped inside a transaction (the caller's future was cancelled
//! mid-way) or closed by the server is discarded, never reused.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use crate::error::{StoreError, StoreResult};

/// How long a caller waits for a free connection before giving up (Temporary).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Per-connection settings, run once after connecting.
/// - A lock wait longer than `lock_timeout` fails (Temporary) instead of hanging on
///   a stuck node; a node that dies inside a transaction is cut off by
///   `idle_in_transaction_session_timeout`, releasing its row locks.
/// - The ack rule needs commits on disk: `synchronous_commit = off` on the server is
///   raised to `local` for our sessions; stronger settings are kept.
const SESSION_SETUP: &str = "SET lock_timeout = '30s';
     SET idle_in_transaction_session_timeout = '60s';
     SELECT set_config('synchronous_commit', 'local', false)
      WHERE current_setting('synchronous_commit') = 'off';";

pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        map_error(&e)
    }
}

/// Maps PostgreSQL's SQLSTATE classes to the store's vocabulary: a taken name is
/// `Exists`, a concurrent-update conflict, lock timeout, shutdown or lost
/// connection is `Temporary` (retrying may succeed), bad data is `Invalid`, a
/// too-large value is `TooBig`; everything else is `Internal`.
pub fn map_error(e: &tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let text = format!("postgres: {} ({})", db.message(), code.code());
        return match code.code() {
            "23505" => StoreError::Exists(text),
            "23503" => StoreError::NotFound(text),
            c if c.starts_with("08") // connection exception
                || c.starts_with("40") // serialization failure, deadlock
                || c.starts_with("53") // insufficient resources (disk full, too many connections)
                || c.starts_with("57") // operator intervention (shutdown, cancel)
                || c.starts_with("58") // system error (i/o)
                || c == "55P03" // lock_not_available (lock_timeout)
                || c == "55006" // object_in_use
                || c == "25P03" // idle_in_transaction_session_timeout
                || c == "HV000" =>
            {
                StoreError::Temporary(text)
            }
            "54000" => StoreError::TooBig(text),
            c if c.starts_with("22") => StoreError::Invalid(text),
            _ if *code == SqlState::READ_ONLY_SQL_TRANSACTION => StoreError::Temporary(text),
            _ => StoreError::Internal(text),
        };
    }
    let text = format!("postgres: {e}");
    let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
    let lost = e.is_closed()
        || io
        || text.contains("error connecting")
        || text.contains("error communicating")
        || text.contains("timeout");
    if lost {
        StoreError::Temporary(text)
    } else {
        StoreError::Internal(text)
    }
}

/// Opens one connection and spawns the task that drives it.
pub async fn connect(config: &Config) -> StoreResult<Client> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection ended");
        }
    });
    Ok(client)
}

/// One connection with its prepared statements.
pub struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
    /// A transaction was begun and not yet ended: such a connection is not reused.
    in_transaction: bool,
}

impl Conn {
    pub async fn open(config: &Config) -> StoreResult<Conn> {
        let client = connect(config).await?;
        client.batch_execute(SESSION_SETUP).await?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
            in_transaction: false,
        })
    }

    async fn statement(&mut self, sql: &'static str) -> StoreResult<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    pub async fn query(&mut self, sql: &'static str, params: Params<'_>) -> StoreResult<Vec<Row>> {
        let st = self.statement(sql).await?;
        Ok(self.client.query(&st, params).await?)
    }

    pub async fn query_opt(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> StoreResult<Option<Row>> {
        let st = self.statement(sql).await?;
        Ok(self.client.query_opt(&st, params).await?)
    }

    pub async fn query_one(&mut self, sql: &'static str, params: Params<'_>) -> StoreResult<Row> {
        let st = self.statement(sql).await?;
        Ok(self.client.query_one(&st, params).await?)
    }

    pub async fn execute(&mut self, sql: &'static str, params: Params<'_>) -> StoreResult<u64> {
        let st = self.statement(sql).await?;
        Ok(self.client.execute(&st, params).await?)
    }

    /// Begins a transaction (READ COMMITTED: consistency comes from row locks taken
    /// explicitly, see the module docs of `postgres`).
    pub async fn begin(&mut self) -> StoreResult<Tx<'_>> {
        self.in_transaction = true;
        self.client.batch_execute("BEGIN").await?;
        Ok(Tx {
            conn: self,
            notes: Vec::new(),
        })
    }

    fn reusable(&self) -> bool {
        !self.in_transaction && !self.client.is_closed()
    }
}

/// An open transaction. Commit or roll back explicitly; dropped otherwise, its
/// connection is discarded (which ends the transaction on the server).
pub struct Tx<'c> {
    conn: &'c mut Conn,
    /// NOTIFY payloads sent just before COMMIT (delivered on commit).
    notes: Vec<String>,
}

impl Tx<'_> {
    pub fn notify(&mut self, payload: String) {
        if !self.notes.contains(&payload) {
            self.notes.push(payload);
        }
    }

    pub async fn commit(mut self) -> StoreResult<()> {
        if !self.notes.is_empty() {
            let notes = std::mem::take(&mut self.notes);
            let sent = self
                .conn
                .execute(
                    "SELECT pg_notify('casella_changes', n) FROM unnest($1::text[]) AS n",
                    &[&notes],
                )
                .await;
            if let Err(e) = sent {
                self.rollback().await;
                return Err(e);
            }
        }
        let r = self.conn.client.batch_execute("COMMIT").await;
        // COMMIT ends the transaction whether it succeeded or the server refused it;
        // a lost connection is caught by `reusable`.
        self.conn.in_transaction = false;
        Ok(r?)
    }

    /// Rolls back; errors are ignored (a broken connection is discarded anyway).
    pub async fn rollback(self) {
        if self.conn.client.batch_execute("ROLLBACK").await.is_ok() {
            self.conn.in_transaction = false;
        }
    }
}

impl Deref for Tx<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn
    }
}

/// Up to `size` connections in use at once; idle ones are kept for reuse.
pub struct Pool {
    config: Config,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    pub fn new(config: Config, size: usize) -> Arc<Pool> {
        Arc::new(Pool {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size.max(1))),
        })
    }

    pub async fn get(self: &Arc<Pool>) -> StoreResult<PooledConn> {
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| StoreError::Temporary("no free database connection".into()))?
            .map_err(StoreError::internal)?;
        let reused = loop {
            let c = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match c {
                Some(c) if c.reusable() => break Some(c),
                Some(_) => continue,
                None => break None,
            }
        };
        let conn = match reused {
            Some(c) => c,
            None => Conn::open(&self.config).await?,
        };
        Ok(PooledConn {
            conn: Some(conn),
            pool: self.clone(),
            _permit: permit,
        })
    }
}

/// A connection taken from the pool; it goes back on drop if it is reusable.
pub struct PooledConn {
    conn: Option<Conn>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl Deref for PooledConn {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("connection present until drop")
    }
}

impl DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("connection present until drop")
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take()
            && c.reusable()
        {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(c);
        }
    }
}
