//! The shared backend: PostgreSQL for metadata, message bytes and change
//! notification, so any number of casella nodes can serve the same mailboxes.
//!
//! Connection: `PgStore::connect("postgres://user@127.0.0.1:5432/db")` or
//! `"host=/run/postgresql dbname=casella"` (unix socket). No TLS to the database:
//! run it on loopback, a unix socket or a private network (`sslmode=require` in the
//! URL fails to connect rather than silently going plain). The database must use
//! UTF8 encoding.
//!
//! Layout:
//! - `schema`: versioned migrations (`schema_version`), applied at connect under an
//!   advisory lock so several nodes can start at once.
//! - `pool`: a small connection pool with per-connection prepared statements, the
//!   transaction helper and the SQLSTATE → [`StoreError`] mapping.
//! - `listen`: one LISTEN connection per node; other nodes' commits reach the local
//!   [`ChangeFeed`] as `MailboxChanged`.
//! - `locks`: the POP3 maildrop lock: a lease row per maildrop, renewed by its
//!   node, and a fencing token every write of the holding session checks.
//! - `import`: inserts with given UIDVALIDITY, UIDs and MODSEQs, for a migrator.
//!
//! Concurrency (transactions run at READ COMMITTED; consistency comes from locks
//! taken explicitly, always in one order so nodes cannot deadlock):
//! 0. in a write through a POP3 session's fenced store, its maildrop lease row
//!    (`FOR KEY SHARE`), first (see `locks`);
//! 1. the address namespace (`pg_advisory_xact_lock`) when creating an account or
//!    alias: addresses must be unique across both tables;
//! 2. the account row (deleting an account);
//! 3. mailbox rows, `SELECT … FOR UPDATE`, in ascending id order. Every change to a
//!    mailbox's messages holds its row: UIDNEXT and MODSEQ are taken under it, so
//!    UIDs are unique and gap-free in commit order and MODSEQ order is commit order;
//! 4. blob rows, in ascending hash order (reference counts).
//!
//! Blobs: one row per distinct content (SHA-256, as the embedded store), holding
//! the bytes (`bytea`), the parsed metadata and a reference count kept in the same
//! transaction as the messages rows; a row whose count reaches zero is deleted in
//! that transaction. An append of known content sends only the hash.
//!
//! Durability: every mutating method returns after COMMIT, with
//! `synchronous_commit` at least `local` (see `pool`). Changes are published on the
//! local feed after commit; the NOTIFY for other nodes is part of the transaction.

macro_rules! mailbox_columns {
    () => {
        "id, account_id, name, special_use, uidvalidity, uidnext, highest_modseq, recent_uid, \
         total_size, message_count"
    };
}

macro_rules! summary_columns {
    () => {
        "uid, modseq, size, internal_date, flags, blob, save_date"
    };
}

mod backend;
mod listen;
pub(crate) mod locks;
mod mail_tx;
mod pool;
mod schema;
mod sql;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Config, Row};

use crate::changes::ChangeFeed;
use crate::error::{StoreError, StoreResult};
use crate::model::ParsedCaches;
use crate::model::names::canonical_name;
use crate::types::*;
use crate::{ParsedMessage, SearchFields};

pub use schema::MIGRATIONS;

use pool::{Conn, Pool, PooledConn};

/// Messages larger than this are refused (`TooBig`): PostgreSQL caps a value at
/// 1 GiB, and a message travels in one protocol message with its parsed metadata.
pub const MAX_MESSAGE_SIZE: usize = 512 << 20;

/// How the store connects.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// This node's name for queue claims. `queue_release_claims` releases the claims
    /// made under this name, so give each node a stable one (e.g. its host name) to
    /// let a restarted node take back its claims at once; `None` picks a random
    /// name, and a restarted node's old claims then wait out their lease.
    pub node_id: Option<String>,
    /// Connections used for queries at once (plus one for LISTEN and one for
    /// maildrop locks).
    pub pool_size: usize,
    /// How long a POP3 maildrop lease lasts without renewal: how long a maildrop
    /// stays locked after its node died, and (less a third and a tenth) the
    /// longest database outage that ends no POP3 session. See `locks`.
    pub maildrop_lease: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            node_id: None,
            pool_size: 10,
            maildrop_lease: locks::DEFAULT_LEASE,
        }
    }
}

pub(crate) struct Inner {
    pool: Arc<Pool>,
    feed: ChangeFeed,
    /// Random per store instance: tags this instance's notifications.
    instance: String,
    /// The name queue claims are made under.
    node_id: String,
    locks: mpsc::UnboundedSender<locks::Cmd>,
    /// What the mail model read lately.
    caches: ParsedCaches,
    /// The mail model's time (SAVEDATE, expunge times, retention).
    clock: crate::Clock,
    /// Dropped with the store: stops the listener task.
    _stop_listener: oneshot::Sender<()>,
}

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
    /// Set in the store a POP3 session writes through: its maildrop lease.
    fence: Option<locks::Fence>,
}

/// A random hex name (64 bits from the OS-seeded hasher keys, the time and the pid).
fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

impl PgStore {
    /// Connects with default options; see [`PgStore::connect_with`].
    pub async fn connect(url: &str) -> StoreResult<PgStore> {
        PgStore::connect_with(url, PgOptions::default()).await
    }

    /// Connects, brings the schema up to date and starts listening for other
    /// nodes' changes (returns once the LISTEN is in place).
    pub async fn connect_with(url: &str, options: PgOptions) -> StoreResult<PgStore> {
        let mut config: Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("database URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("casella");
        }

        let mut client = pool::connect(&config).await?;
        let encoding: String = client
            .query_one("SELECT current_setting('server_encoding')", &[])
            .await?
            .try_get(0)?;
        if encoding != "UTF8" {
            return Err(StoreError::Internal(format!(
                "the database's encoding is {encoding}; casella needs UTF8"
            )));
        }
        schema::migrate(&mut client).await?;
        drop(client);

        let instance = random_id();
        let node_id = options.node_id.unwrap_or_else(|| instance.clone());

        let (locks_tx, locks_rx) = mpsc::unbounded_channel();
        let mut lock_config = config.clone();
        lock_config.application_name("casella-maildrop");
        tokio::spawn(locks::run(
            lock_config,
            locks::Timing::new(options.maildrop_lease),
            node_id.clone(),
            locks_rx,
        ));

        let (stop_tx, stop_rx) = oneshot::channel();
        let inner = Arc::new(Inner {
            pool: Pool::new(config.clone(), options.pool_size),
            feed: ChangeFeed::default(),
            instance,
            node_id,
            locks: locks_tx,
            caches: ParsedCaches::default(),
            clock: crate::Clock::default(),
            _stop_listener: stop_tx,
        });
        let (ready_tx, ready_rx) = oneshot::channel();
        let mut listen_config = config;
        listen_config.application_name("casella-listener");
        tokio::spawn(listen::run(
            Arc::downgrade(&inner),
            listen_config,
            ready_tx,
            stop_rx,
        ));
        ready_rx
            .await
            .map_err(|_| StoreError::Internal("change listener stopped".into()))??;
        Ok(PgStore { inner, fence: None })
    }

    /// The name this node's queue claims are made under.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    async fn conn(&self) -> StoreResult<PooledConn> {
        self.inner.pool.get().await
    }

    /// The rows of `blobs` found, by hash: `sql` selects the hash first and
    /// takes the hashes as `$1`.
    async fn blob_rows(
        &self,
        blobs: &[BlobId],
        sql: &'static str,
    ) -> StoreResult<HashMap<String, Row>> {
        if blobs.is_empty() {
            return Ok(HashMap::new());
        }
        let hashes: Vec<&str> = blobs.iter().map(|b| b.0.as_str()).collect();
        let rows = self.conn().await?.query(sql, &[&hashes]).await?;
        let mut found = HashMap::with_capacity(rows.len());
        for row in rows {
            found.insert(row.try_get(0)?, row);
        }
        Ok(found)
    }
}

// ---- rows ----

fn mailbox_from_row(r: &Row) -> StoreResult<Mailbox> {
    let special: Option<String> = r.try_get(3)?;
    Ok(Mailbox {
        id: MailboxId(r.try_get(0)?),
        account: AccountId(r.try_get(1)?),
        name: r.try_get(2)?,
        special_use: special.as_deref().and_then(SpecialUse::from_attribute),
        uid_validity: UidValidity(r.try_get::<_, i64>(4)? as u32),
        uid_next: Uid(r.try_get::<_, i64>(5)? as u32),
        highest_modseq: ModSeq(r.try_get::<_, i64>(6)? as u64),
        recent_watermark: Uid(r.try_get::<_, i64>(7)? as u32),
        total_size: r.try_get::<_, i64>(8)?.max(0) as u64,
        message_count: r.try_get::<_, i64>(9)?.max(0) as u64,
    })
}

fn summary_from_row(r: &Row) -> StoreResult<MessageSummary> {
    let flags: String = r.try_get(4)?;
    Ok(MessageSummary {
        uid: Uid(r.try_get::<_, i64>(0)? as u32),
        modseq: ModSeq(r.try_get::<_, i64>(1)? as u64),
        size: r.try_get::<_, i64>(2)? as u32,
        internal_date: r.try_get(3)?,
        save_date: r.try_get(6)?,
        flags: flags_from_string(&flags),
        blob: BlobId(r.try_get(5)?),
    })
}

fn rows<T>(rows: Vec<Row>, f: fn(&Row) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.iter().map(f).collect()
}

fn not_found_mailbox(id: MailboxId) -> StoreError {
    StoreError::NotFound(format!("mailbox {}", id.0))
}

async fn get_mailbox(c: &mut Conn, id: MailboxId) -> StoreResult<Mailbox> {
    let row = c
        .query_opt(
            concat!(
                "SELECT ",
                mailbox_columns!(),
                " FROM mailboxes WHERE id = $1"
            ),
            &[&id.0],
        )
        .await?
        .ok_or_else(|| not_found_mailbox(id))?;
    mailbox_from_row(&row)
}

async fn find_mailbox(
    c: &mut Conn,
    account: AccountId,
    name: &str,
) -> StoreResult<Option<Mailbox>> {
    let name = canonical_name(name);
    let row = c
        .query_opt(
            concat!(
                "SELECT ",
                mailbox_columns!(),
                " FROM mailboxes WHERE account_id = $1 AND name = $2"
            ),
            &[&account.0, &name],
        )
        .await?;
    row.as_ref().map(mailbox_from_row).transpose()
}

/// The search fields of a `blob_rows` row (hash, search, search_text, and
/// `parsed` where `search` is NULL). Rows from before schema version 4 have
/// everything in `parsed`, rows from version 4 the text in `search`.
fn search_fields_of(row: &Row, text: bool) -> StoreResult<SearchFields> {
    let mut fields = match row.try_get::<_, Option<String>>(1)? {
        Some(headers) => {
            let text_column: Option<String> = row.try_get(2)?;
            crate::search_columns::from_columns(&headers, text_column.as_deref())?
        }
        None => {
            let json: String = row.try_get(3)?;
            serde_json::from_str::<ParsedMessage>(&json)
                .map_err(StoreError::internal)?
                .search
        }
    };
    if !text {
        fields.header_text = String::new();
        fields.body_text = String::new();
    }
    Ok(fields)
}

fn valid_blob_id(id: &BlobId) -> StoreResult<()> {
    let h = &id.0;
    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::Invalid(format!("bad blob id {h}")));
    }
    Ok(())
}
