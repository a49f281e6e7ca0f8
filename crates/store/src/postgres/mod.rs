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

// Macros first: `import` uses them.

/// Runs `$body` (an async block body returning `StoreResult<T>`, with `$tx` the
/// open transaction) and commits it, or rolls it back on error.
macro_rules! write_tx {
    ($store:expr, |$tx:ident| $body:block) => {{
        let mut conn = $store.conn().await?;
        #[allow(unused_mut)]
        let mut $tx = conn.begin().await?;
        let result: StoreResult<_> = async {
            // A POP3 session's write: refused unless its maildrop lease is still
            // its own (`locks`, invariant point 3).
            if let Some(fence) = $store.fence {
                $crate::postgres::locks::check_fence(&mut $tx, fence).await?;
            }
            $body
        }
        .await;
        match result {
            Ok(v) => $tx.commit().await.map(|()| v),
            Err(e) => {
                $tx.rollback().await;
                Err(e)
            }
        }
    }};
}

macro_rules! account_columns {
    () => {
        "id, address, password_hash, is_admin, pop_enabled, imap_enabled, submission_enabled, settings"
    };
}

macro_rules! mailbox_columns {
    () => {
        "id, account_id, name, special_use, uidvalidity, uidnext, highest_modseq, subscribed, recent_uid"
    };
}

macro_rules! summary_columns {
    () => {
        "uid, modseq, size, internal_date, flags, blob"
    };
}

macro_rules! queue_columns {
    () => {
        "id, sender, account_id, recipients, octet_length(message)::bigint, envid, ret, created, expires, next_attempt, attempts, last_error, claimed_until"
    };
}

mod import;
mod listen;
pub(crate) mod locks;
mod pool;
mod schema;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_postgres::{Config, Row};

use crate::blob::BlobDir;
use crate::changes::{Change, ChangeFeed};
use crate::error::{StoreError, StoreResult};
use crate::parsed_cache::{ParsedCache, with_cache};
use crate::sqlite::{canonical_name, validate_mailbox_name};
use crate::types::*;
use crate::{
    MailStore, MaildropLock, MessageStructure, ParsedMessage, SearchFields, normalize_line_ends,
    now_unix,
};

pub use import::{ImportMailbox, ImportMessage};
pub use schema::MIGRATIONS;

use pool::{Conn, Pool, PooledConn};

/// Messages larger than this are refused (`TooBig`): PostgreSQL caps a value at
/// 1 GiB, and a message travels in one protocol message with its parsed metadata.
pub const MAX_MESSAGE_SIZE: usize = 512 << 20;

/// `pg_advisory_xact_lock(ADDRESS_LOCK, hashtext(address))` serialises creating
/// accounts and aliases with the same address.
const ADDRESS_LOCK: i32 = 0x6361_7302;

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
    /// Structures FETCH read lately.
    structures: ParsedCache<MessageStructure>,
    /// Header fields SEARCH read lately.
    header_fields: ParsedCache<SearchFields>,
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
            structures: ParsedCache::default(),
            header_fields: ParsedCache::default(),
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

    /// Queues the NOTIFY for other nodes (sent on commit).
    fn announce(&self, conn: &mut pool::Tx<'_>, account: AccountId, changes: &[Change]) {
        for p in listen::payloads(&self.inner.instance, account, changes) {
            conn.notify(p);
        }
    }

    fn publish(&self, account: AccountId, changes: Vec<Change>) {
        if !changes.is_empty() {
            self.inner.feed.publish(account, changes);
        }
    }
}

// ---- rows ----

fn account_from_row(r: &Row) -> StoreResult<Account> {
    let settings: String = r.try_get(7)?;
    Ok(Account {
        id: AccountId(r.try_get(0)?),
        address: r.try_get(1)?,
        password_hash: r.try_get(2)?,
        is_admin: r.try_get(3)?,
        pop_enabled: r.try_get(4)?,
        imap_enabled: r.try_get(5)?,
        submission_enabled: r.try_get(6)?,
        // A settings document this version cannot read falls back to defaults
        // rather than locking the user out (as the embedded store).
        settings: serde_json::from_str(&settings).unwrap_or_default(),
    })
}

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
        subscribed: r.try_get(7)?,
        recent_watermark: Uid(r.try_get::<_, i64>(8)? as u32),
    })
}

fn summary_from_row(r: &Row) -> StoreResult<MessageSummary> {
    let flags: String = r.try_get(4)?;
    Ok(MessageSummary {
        uid: Uid(r.try_get::<_, i64>(0)? as u32),
        modseq: ModSeq(r.try_get::<_, i64>(1)? as u64),
        size: r.try_get::<_, i64>(2)? as u32,
        internal_date: r.try_get(3)?,
        flags: flags_from_string(&flags),
        blob: BlobId(r.try_get(5)?),
    })
}

fn queued_from_row(r: &Row) -> StoreResult<Queued> {
    let recipients: String = r.try_get(3)?;
    Ok(Queued {
        id: QueueId(r.try_get(0)?),
        sender: r.try_get(1)?,
        account: r.try_get::<_, Option<i64>>(2)?.map(AccountId),
        recipients: serde_json::from_str(&recipients).unwrap_or_default(),
        size: r.try_get::<_, i64>(4)? as u64,
        envid: r.try_get(5)?,
        ret: r.try_get(6)?,
        created: r.try_get(7)?,
        expires: r.try_get(8)?,
        next_attempt: r.try_get(9)?,
        attempts: r.try_get::<_, i64>(10)? as u32,
        last_error: r.try_get(11)?,
        claimed_until: r.try_get(12)?,
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

/// A mailbox row held `FOR UPDATE` by the current transaction, with the counters
/// the transaction moves; [`Locked::save`] writes them back.
struct Locked {
    id: MailboxId,
    account: AccountId,
    uid_validity: UidValidity,
    uid_next: u32,
    highest_modseq: u64,
    dirty: bool,
}

impl Locked {
    async fn take(c: &mut Conn, id: MailboxId) -> StoreResult<Locked> {
        let row = c
            .query_opt(
                "SELECT account_id, uidvalidity, uidnext, highest_modseq FROM mailboxes
                 WHERE id = $1 FOR UPDATE",
                &[&id.0],
            )
            .await?
            .ok_or_else(|| not_found_mailbox(id))?;
        Ok(Locked {
            id,
            account: AccountId(row.try_get(0)?),
            uid_validity: UidValidity(row.try_get::<_, i64>(1)? as u32),
            uid_next: row.try_get::<_, i64>(2)? as u32,
            highest_modseq: row.try_get::<_, i64>(3)? as u64,
            dirty: false,
        })
    }

    /// Locks several mailboxes in ascending id order (the one lock order).
    async fn take_all(c: &mut Conn, ids: &[MailboxId]) -> StoreResult<BTreeMap<MailboxId, Locked>> {
        let mut sorted = ids.to_vec();
        sorted.sort();
        sorted.dedup();
        let mut out = BTreeMap::new();
        for id in sorted {
            out.insert(id, Locked::take(c, id).await?);
        }
        Ok(out)
    }

    /// Takes the next MODSEQ.
    fn next_modseq(&mut self) -> ModSeq {
        self.highest_modseq += 1;
        self.dirty = true;
        ModSeq(self.highest_modseq)
    }

    /// Takes the next UID.
    fn next_uid(&mut self) -> StoreResult<Uid> {
        if self.uid_next == u32::MAX {
            return Err(StoreError::Invalid("mailbox has run out of UIDs".into()));
        }
        let uid = Uid(self.uid_next);
        self.uid_next += 1;
        self.dirty = true;
        Ok(uid)
    }

    async fn save(&self, c: &mut Conn) -> StoreResult<()> {
        if self.dirty {
            c.execute(
                "UPDATE mailboxes SET uidnext = $2, highest_modseq = $3 WHERE id = $1",
                &[
                    &self.id.0,
                    &(self.uid_next as i64),
                    &(self.highest_modseq as i64),
                ],
            )
            .await?;
        }
        Ok(())
    }
}

/// A UIDVALIDITY unique within this store: seconds since the epoch, or one more
/// than the last one handed out if the clock has not moved on (as the embedded
/// store). The counter row serialises nodes.
async fn next_uid_validity(c: &mut Conn) -> StoreResult<UidValidity> {
    let now = now_unix().clamp(1, u32::MAX as i64);
    let row = c
        .query_one(
            "INSERT INTO counters(name, value) VALUES ('uidvalidity', $1)
             ON CONFLICT (name) DO UPDATE
             SET value = LEAST(GREATEST(EXCLUDED.value, counters.value + 1), 4294967295)
             RETURNING value",
            &[&now],
        )
        .await?;
    Ok(UidValidity(row.try_get::<_, i64>(0)? as u32))
}

async fn insert_mailbox(
    c: &mut Conn,
    account: AccountId,
    name: &str,
    special_use: Option<SpecialUse>,
) -> StoreResult<Mailbox> {
    let name = canonical_name(name);
    validate_mailbox_name(&name)?;
    if find_mailbox(c, account, &name).await?.is_some() {
        return Err(StoreError::Exists(format!("mailbox {name}")));
    }
    let validity = next_uid_validity(c).await?;
    let row = c
        .query_one(
            concat!(
                "INSERT INTO mailboxes(account_id, name, special_use, uidvalidity, uidnext, highest_modseq)
                 VALUES ($1, $2, $3, $4, 1, 1) RETURNING ",
                mailbox_columns!()
            ),
            &[
                &account.0,
                &name,
                &special_use.map(|s| s.attribute()),
                &(validity.0 as i64),
            ],
        )
        .await?;
    mailbox_from_row(&row)
}

/// Per-hash changes to blob reference counts, applied once per transaction.
type BlobDeltas = BTreeMap<String, i64>;

/// Applies reference-count changes in ascending hash order (the lock order) and
/// deletes rows nothing refers to any more.
async fn adjust_blobs(c: &mut Conn, deltas: &BlobDeltas) -> StoreResult<()> {
    let (hashes, counts): (Vec<String>, Vec<i64>) = deltas
        .iter()
        .filter(|(_, n)| **n != 0)
        .map(|(h, n)| (h.clone(), *n))
        .unzip();
    if hashes.is_empty() {
        return Ok(());
    }
    c.execute(
        "SELECT hash FROM blobs WHERE hash = ANY($1) ORDER BY hash FOR NO KEY UPDATE",
        &[&hashes],
    )
    .await?;
    c.execute(
        "UPDATE blobs SET refcount = refcount + d.n
         FROM unnest($1::text[], $2::bigint[]) AS d(h, n) WHERE blobs.hash = d.h",
        &[&hashes, &counts],
    )
    .await?;
    if counts.iter().any(|n| *n < 0) {
        c.execute(
            "DELETE FROM blobs WHERE hash = ANY($1) AND refcount <= 0",
            &[&hashes],
        )
        .await?;
    }
    Ok(())
}

/// Removes all messages of locked mailboxes, collecting their blobs' releases.
async fn clear_mailboxes(c: &mut Conn, ids: &[i64], deltas: &mut BlobDeltas) -> StoreResult<()> {
    let gone = c
        .query(
            "DELETE FROM messages WHERE mailbox_id = ANY($1) RETURNING blob",
            &[&ids],
        )
        .await?;
    for r in gone {
        *deltas.entry(r.try_get(0)?).or_default() -= 1;
    }
    c.execute("DELETE FROM expunged WHERE mailbox_id = ANY($1)", &[&ids])
        .await?;
    Ok(())
}

/// Expunges from a locked mailbox; one MODSEQ for the mailbox. Returns the change
/// to publish (none if nothing was there).
async fn expunge_in_tx(
    c: &mut Conn,
    mb: &mut Locked,
    uids: &[Uid],
    deltas: &mut BlobDeltas,
) -> StoreResult<Option<Change>> {
    let wanted: Vec<i64> = uids.iter().map(|u| u.0 as i64).collect();
    let rows = c
        .query(
            "DELETE FROM messages WHERE mailbox_id = $1 AND uid = ANY($2) RETURNING uid, blob",
            &[&mb.id.0, &wanted],
        )
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut gone = Vec::with_capacity(rows.len());
    for r in &rows {
        gone.push(r.try_get::<_, i64>(0)?);
        *deltas.entry(r.try_get(1)?).or_default() -= 1;
    }
    gone.sort_unstable();
    let modseq = mb.next_modseq();
    c.execute(
        "INSERT INTO expunged(mailbox_id, uid, modseq) SELECT $1, u, $2 FROM unnest($3::bigint[]) AS u
         ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = EXCLUDED.modseq",
        &[&mb.id.0, &(modseq.0 as i64), &gone],
    )
    .await?;
    Ok(Some(Change::Expunged {
        mailbox: mb.id,
        uids: gone.into_iter().map(|u| Uid(u as u32)).collect(),
        modseq,
    }))
}

/// (source UID, new UID) pairs, the owning account, and the changes to publish.
type CopyOutcome = (Vec<(Uid, Uid)>, AccountId, Vec<Change>);

/// Copies between locked mailboxes in source order; one MODSEQ for the whole copy.
/// The blobs' new references go into `deltas`.
async fn copy_in_tx(
    c: &mut Conn,
    locked: &mut BTreeMap<MailboxId, Locked>,
    from: MailboxId,
    uids: &[Uid],
    to: MailboxId,
    deltas: &mut BlobDeltas,
) -> StoreResult<CopyOutcome> {
    let src_account = locked
        .get(&from)
        .ok_or_else(|| not_found_mailbox(from))?
        .account;
    let dst = locked.get_mut(&to).ok_or_else(|| not_found_mailbox(to))?;
    if src_account != dst.account {
        return Err(StoreError::Invalid("copy across accounts".into()));
    }
    let wanted: Vec<i64> = uids.iter().map(|u| u.0 as i64).collect();
    let found = c
        .query(
            "SELECT uid, blob, size, internal_date, flags FROM messages
             WHERE mailbox_id = $1 AND uid = ANY($2)",
            &[&from.0, &wanted],
        )
        .await?;
    let mut by_uid: HashMap<i64, (String, i64, i64, String)> = HashMap::new();
    for r in found {
        by_uid.insert(
            r.try_get(0)?,
            (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?),
        );
    }
    let mut pairs = Vec::new();
    let mut changes = Vec::new();
    let (mut n_uid, mut n_blob, mut n_size, mut n_date, mut n_flags) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut modseq = None;
    for &uid in uids {
        let Some((blob, size, date, flags)) = by_uid.get(&(uid.0 as i64)) else {
            continue;
        };
        let new = dst.next_uid()?;
        let m = *modseq.get_or_insert_with(|| dst.next_modseq());
        n_uid.push(new.0 as i64);
        n_blob.push(blob.clone());
        n_size.push(*size);
        n_date.push(*date);
        n_flags.push(flags.clone());
        *deltas.entry(blob.clone()).or_default() += 1;
        pairs.push((uid, new));
        changes.push(Change::Appended {
            mailbox: to,
            uid: new,
            modseq: m,
        });
    }
    if let Some(m) = modseq {
        c.execute(
            "INSERT INTO messages(mailbox_id, uid, modseq, blob, size, internal_date, flags)
             SELECT $1, u, $2, b, s, d, f
             FROM unnest($3::bigint[], $4::text[], $5::bigint[], $6::bigint[], $7::text[])
                  AS t(u, b, s, d, f)",
            &[
                &to.0,
                &(m.0 as i64),
                &n_uid,
                &n_blob,
                &n_size,
                &n_date,
                &n_flags,
            ],
        )
        .await?;
    }
    Ok((pairs, src_account, changes))
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

/// A message ready to append: normalised, parsed and hashed outside the transaction.
struct Prepared {
    raw: Vec<u8>,
    size: u32,
    blob: BlobId,
    structure_json: String,
    search_json: String,
    search_text_json: String,
    internal_date: i64,
    flags: String,
}

fn prepare(message: NewMessage) -> StoreResult<Prepared> {
    let raw = normalize_line_ends(message.raw);
    if raw.len() > MAX_MESSAGE_SIZE {
        return Err(StoreError::TooBig(format!(
            "messages are limited to {} MiB",
            MAX_MESSAGE_SIZE >> 20
        )));
    }
    let size = raw.len() as u32;
    let (structure, search) = casella_mime::parse(&raw).split();
    let (search_json, search_text_json) = crate::search_columns::to_columns(search)?;
    Ok(Prepared {
        blob: BlobDir::id_of(&raw),
        structure_json: serde_json::to_string(&structure).map_err(StoreError::internal)?,
        search_json,
        search_text_json,
        raw,
        size,
        internal_date: message.internal_date.unwrap_or_else(now_unix),
        flags: flags_to_string(&message.flags),
    })
}

async fn prepare_all(messages: Vec<NewMessage>) -> StoreResult<Vec<Prepared>> {
    tokio::task::spawn_blocking(move || messages.into_iter().map(prepare).collect())
        .await
        .map_err(StoreError::internal)?
}

/// Adds `count` references to a blob, storing it first if it is new. Callers pass
/// distinct blobs in ascending hash order.
async fn upsert_blob(c: &mut Conn, p: &Prepared, count: i64) -> StoreResult<()> {
    // Known content: only the hash travels.
    let n = c
        .execute(
            "UPDATE blobs SET refcount = refcount + $2 WHERE hash = $1",
            &[&p.blob.0, &count],
        )
        .await?;
    if n == 0 {
        c.execute(
            "INSERT INTO blobs(hash, size, refcount, parsed, search, search_text, content)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (hash) DO UPDATE SET refcount = blobs.refcount + EXCLUDED.refcount",
            &[
                &p.blob.0,
                &(p.size as i64),
                &count,
                &p.structure_json,
                &p.search_json,
                &p.search_text_json,
                &p.raw,
            ],
        )
        .await?;
    }
    Ok(())
}

/// Appends prepared messages to a locked mailbox under one new MODSEQ.
async fn append_in_tx(
    c: &mut Conn,
    mb: &mut Locked,
    prepared: &[Prepared],
) -> StoreResult<Vec<Appended>> {
    let mut distinct: BTreeMap<&str, (&Prepared, i64)> = BTreeMap::new();
    for p in prepared {
        distinct.entry(&p.blob.0).or_insert((p, 0)).1 += 1;
    }
    for (p, count) in distinct.values() {
        upsert_blob(c, p, *count).await?;
    }
    let modseq = mb.next_modseq();
    let mut appended = Vec::with_capacity(prepared.len());
    let (mut n_uid, mut n_blob, mut n_size, mut n_date, mut n_flags) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for p in prepared {
        let uid = mb.next_uid()?;
        n_uid.push(uid.0 as i64);
        n_blob.push(p.blob.0.clone());
        n_size.push(p.size as i64);
        n_date.push(p.internal_date);
        n_flags.push(p.flags.clone());
        appended.push(Appended {
            mailbox: mb.id,
            uid_validity: mb.uid_validity,
            uid,
            modseq,
            size: p.size,
        });
    }
    c.execute(
        "INSERT INTO messages(mailbox_id, uid, modseq, blob, size, internal_date, flags)
         SELECT $1, u, $2, b, s, d, f
         FROM unnest($3::bigint[], $4::text[], $5::bigint[], $6::bigint[], $7::text[])
              AS t(u, b, s, d, f)",
        &[
            &mb.id.0,
            &(modseq.0 as i64),
            &n_uid,
            &n_blob,
            &n_size,
            &n_date,
            &n_flags,
        ],
    )
    .await?;
    Ok(appended)
}

fn valid_blob_id(id: &BlobId) -> StoreResult<()> {
    let h = &id.0;
    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::Invalid(format!("bad blob id {h}")));
    }
    Ok(())
}

fn address_parts(address: &str) -> StoreResult<(String, String)> {
    let address = address.trim().to_ascii_lowercase();
    match address.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
            let domain = domain.to_string();
            Ok((address, domain))
        }
        _ => Err(StoreError::Invalid(format!("{address} is not an address"))),
    }
}

/// Serialises creating accounts and aliases for one address across nodes.
async fn lock_address(c: &mut Conn, address: &str) -> StoreResult<()> {
    c.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&ADDRESS_LOCK, &address],
    )
    .await?;
    Ok(())
}

async fn address_taken(c: &mut Conn, address: &str) -> StoreResult<bool> {
    Ok(c.query_one(
        "SELECT EXISTS(SELECT 1 FROM accounts WHERE lower(address) = $1)
             OR EXISTS(SELECT 1 FROM aliases WHERE lower(alias) = $1)",
        &[&address],
    )
    .await?
    .try_get(0)?)
}

#[async_trait]
impl MailStore for PgStore {
    async fn create_account(&self, new: NewAccount) -> StoreResult<Account> {
        let address = new.address.to_ascii_lowercase();
        let Some((_, domain)) = address.rsplit_once('@') else {
            return Err(StoreError::Invalid(format!("{address} is not an address")));
        };
        let domain = domain.to_string();
        write_tx!(self, |tx| {
            lock_address(&mut tx, &address).await?;
            if address_taken(&mut tx, &address).await? {
                return Err(StoreError::Exists(format!("account {address}")));
            }
            let settings =
                serde_json::to_string(&AccountSettings::default()).map_err(StoreError::internal)?;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO accounts(address, domain, password_hash, is_admin, settings, created)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                    &[
                        &address,
                        &domain,
                        &new.password_hash,
                        &new.is_admin,
                        &settings,
                        &now_unix(),
                    ],
                )
                .await?
                .try_get(0)?;
            for (name, role) in DEFAULT_MAILBOXES {
                insert_mailbox(&mut tx, AccountId(id), name, *role).await?;
            }
            let row = tx
                .query_one(
                    concat!(
                        "SELECT ",
                        account_columns!(),
                        " FROM accounts WHERE id = $1"
                    ),
                    &[&id],
                )
                .await?;
            account_from_row(&row)
        })
    }

    async fn delete_account(&self, id: AccountId) -> StoreResult<()> {
        write_tx!(self, |tx| {
            // The account row first: no mailbox or alias can be added meanwhile.
            let found = tx
                .query_opt("SELECT id FROM accounts WHERE id = $1 FOR UPDATE", &[&id.0])
                .await?;
            if found.is_none() {
                return Err(StoreError::NotFound(format!("account {}", id.0)));
            }
            let boxes: Vec<i64> = tx
                .query(
                    "SELECT id FROM mailboxes WHERE account_id = $1 ORDER BY id FOR UPDATE",
                    &[&id.0],
                )
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            let mut deltas = BlobDeltas::new();
            clear_mailboxes(&mut tx, &boxes, &mut deltas).await?;
            tx.execute("DELETE FROM mailboxes WHERE account_id = $1", &[&id.0])
                .await?;
            tx.execute("DELETE FROM logins WHERE account_id = $1", &[&id.0])
                .await?;
            tx.execute("DELETE FROM aliases WHERE account_id = $1", &[&id.0])
                .await?;
            tx.execute("DELETE FROM accounts WHERE id = $1", &[&id.0])
                .await?;
            adjust_blobs(&mut tx, &deltas).await?;
            Ok(())
        })
    }

    async fn account(&self, id: AccountId) -> StoreResult<Account> {
        let row = self
            .conn()
            .await?
            .query_opt(
                concat!(
                    "SELECT ",
                    account_columns!(),
                    " FROM accounts WHERE id = $1"
                ),
                &[&id.0],
            )
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("account {}", id.0)))?;
        account_from_row(&row)
    }

    async fn account_by_address(&self, address: &str) -> StoreResult<Option<Account>> {
        let address = address.to_ascii_lowercase();
        let row = self
            .conn()
            .await?
            .query_opt(
                concat!(
                    "SELECT ",
                    account_columns!(),
                    " FROM accounts WHERE lower(address) = $1"
                ),
                &[&address],
            )
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        let r = self
            .conn()
            .await?
            .query(
                concat!(
                    "SELECT ",
                    account_columns!(),
                    " FROM accounts ORDER BY address"
                ),
                &[],
            )
            .await?;
        rows(r, account_from_row)
    }

    async fn update_account(&self, account: &Account) -> StoreResult<()> {
        let a = account;
        let settings = a
            .settings
            .next_revision_json()
            .map_err(StoreError::internal)?;
        let expected = a.settings.revision as i64;
        let mut conn = self.conn().await?;
        // One statement: only over the revision this copy was read with (see
        // `AccountSettings::revision`).
        let n = conn
            .execute(
                "UPDATE accounts SET password_hash = $2, is_admin = $3, pop_enabled = $4,
                 imap_enabled = $5, submission_enabled = $6, settings = $7
                 WHERE id = $1 AND coalesce((settings::jsonb ->> 'revision')::bigint, 0) = $8",
                &[
                    &a.id.0,
                    &a.password_hash,
                    &a.is_admin,
                    &a.pop_enabled,
                    &a.imap_enabled,
                    &a.submission_enabled,
                    &settings,
                    &expected,
                ],
            )
            .await?;
        if n == 0 {
            let exists = conn
                .query_opt("SELECT 1 FROM accounts WHERE id = $1", &[&a.id.0])
                .await?
                .is_some();
            return Err(if exists {
                StoreError::account_changed(&a.address)
            } else {
                StoreError::NotFound(format!("account {}", a.address))
            });
        }
        Ok(())
    }

    async fn is_local_domain(&self, domain: &str) -> StoreResult<bool> {
        let domain = domain.to_ascii_lowercase();
        Ok(self
            .conn()
            .await?
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM accounts WHERE lower(domain) = $1)
                     OR EXISTS(SELECT 1 FROM aliases WHERE lower(domain) = $1)",
                &[&domain],
            )
            .await?
            .try_get(0)?)
    }

    async fn add_alias(&self, account: AccountId, alias: &str) -> StoreResult<()> {
        let (alias, domain) = address_parts(alias)?;
        write_tx!(self, |tx| {
            lock_address(&mut tx, &alias).await?;
            if address_taken(&mut tx, &alias).await? {
                return Err(StoreError::Exists(format!("address {alias}")));
            }
            let found = tx
                .query_opt("SELECT id FROM accounts WHERE id = $1", &[&account.0])
                .await?;
            if found.is_none() {
                return Err(StoreError::NotFound(format!("account {}", account.0)));
            }
            tx.execute(
                "INSERT INTO aliases(alias, domain, account_id) VALUES ($1, $2, $3)",
                &[&alias, &domain, &account.0],
            )
            .await?;
            Ok(())
        })
    }

    async fn remove_alias(&self, alias: &str) -> StoreResult<()> {
        let alias = alias.trim().to_ascii_lowercase();
        let n = self
            .conn()
            .await?
            .execute("DELETE FROM aliases WHERE lower(alias) = $1", &[&alias])
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("alias {alias}")));
        }
        Ok(())
    }

    async fn record_logins(&self, logins: Vec<(AccountId, LoginRecord)>) -> StoreResult<()> {
        write_tx!(self, |tx| {
            let mut accounts = std::collections::BTreeSet::new();
            for (account, login) in &logins {
                tx.execute(
                    "INSERT INTO logins(account_id, at, protocol, remote, success, client)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &account.0,
                        &login.at,
                        &login.protocol,
                        &login.remote,
                        &login.success,
                        &login.client,
                    ],
                )
                .await?;
                accounts.insert(account.0);
            }
            for account in accounts {
                tx.execute(
                    "DELETE FROM logins WHERE account_id = $1 AND id <= (
                         SELECT id FROM logins WHERE account_id = $1
                         ORDER BY id DESC LIMIT 1 OFFSET $2)",
                    &[&account, &(LOGIN_HISTORY as i64)],
                )
                .await?;
            }
            Ok(())
        })
    }

    async fn recent_logins(&self, account: AccountId) -> StoreResult<Vec<LoginRecord>> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT at, protocol, remote, success, client FROM logins
                 WHERE account_id = $1 ORDER BY id DESC LIMIT $2",
                &[&account.0, &(LOGIN_HISTORY as i64)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LoginRecord {
                    at: r.try_get(0)?,
                    protocol: r.try_get(1)?,
                    remote: r.try_get(2)?,
                    success: r.try_get(3)?,
                    client: r.try_get(4)?,
                })
            })
            .collect()
    }

    async fn save_block(&self, block: StoredBlock) -> StoreResult<()> {
        self.conn()
            .await?
            .execute(
                "INSERT INTO login_blocks(key, until, reason) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO UPDATE SET until = greatest(login_blocks.until, excluded.until),
                                                 reason = excluded.reason",
                &[&block.key, &block.until, &block.reason],
            )
            .await?;
        Ok(())
    }

    async fn blocks(&self, now: i64) -> StoreResult<Vec<StoredBlock>> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT key, until, reason FROM login_blocks WHERE until > $1 ORDER BY until",
                &[&now],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredBlock {
                    key: r.try_get(0)?,
                    until: r.try_get(1)?,
                    reason: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn delete_block(&self, key: &str) -> StoreResult<bool> {
        let n = self
            .conn()
            .await?
            .execute("DELETE FROM login_blocks WHERE key = $1", &[&key])
            .await?;
        Ok(n > 0)
    }

    async fn record_signout(&self, address: &str, at: i64) -> StoreResult<u64> {
        let address = address.to_ascii_lowercase();
        let mut conn = self.conn().await?;
        conn.execute(
            "DELETE FROM signouts WHERE at < $1",
            &[&(at - crate::SIGNOUT_KEPT_SECS)],
        )
        .await?;
        let row = conn
            .query_one(
                "INSERT INTO signouts(address, at) VALUES ($1, $2) RETURNING seq",
                &[&address, &at],
            )
            .await?;
        Ok(row.try_get::<_, i64>(0)? as u64)
    }

    async fn signouts_since(&self, since: i64) -> StoreResult<Vec<Signout>> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT seq, address, at FROM signouts WHERE at >= $1 ORDER BY seq",
                &[&since],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Signout {
                    seq: r.try_get::<_, i64>(0)? as u64,
                    address: r.try_get(1)?,
                    at: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn aliases(&self, account: AccountId) -> StoreResult<Vec<String>> {
        let r = self
            .conn()
            .await?
            .query(
                "SELECT alias FROM aliases WHERE account_id = $1 ORDER BY alias",
                &[&account.0],
            )
            .await?;
        Ok(r.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?)
    }

    async fn account_for_address(&self, address: &str) -> StoreResult<Option<Account>> {
        let address = address.trim().to_ascii_lowercase();
        let row = self
            .conn()
            .await?
            .query_opt(
                concat!(
                    "SELECT ",
                    account_columns!(),
                    " FROM accounts WHERE lower(address) = $1
                     UNION ALL
                     SELECT ",
                    account_columns!(),
                    " FROM accounts WHERE id =
                         (SELECT account_id FROM aliases WHERE lower(alias) = $1)
                     LIMIT 1"
                ),
                &[&address],
            )
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn list_mailboxes(&self, account: AccountId) -> StoreResult<Vec<Mailbox>> {
        let r = self
            .conn()
            .await?
            .query(
                concat!(
                    "SELECT ",
                    mailbox_columns!(),
                    " FROM mailboxes WHERE account_id = $1 ORDER BY name"
                ),
                &[&account.0],
            )
            .await?;
        rows(r, mailbox_from_row)
    }

    async fn mailbox(&self, id: MailboxId) -> StoreResult<Mailbox> {
        get_mailbox(&mut *self.conn().await?, id).await
    }

    async fn mailbox_by_name(
        &self,
        account: AccountId,
        name: &str,
    ) -> StoreResult<Option<Mailbox>> {
        find_mailbox(&mut *self.conn().await?, account, name).await
    }

    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> StoreResult<Mailbox> {
        let mb = write_tx!(self, |tx| {
            let mb = insert_mailbox(&mut tx, account, name, special_use).await?;
            self.announce(&mut tx, account, &[Change::MailboxList]);
            Ok(mb)
        })?;
        self.publish(account, vec![Change::MailboxList]);
        Ok(mb)
    }

    async fn delete_mailbox(&self, id: MailboxId) -> StoreResult<()> {
        let account = write_tx!(self, |tx| {
            let mb = Locked::take(&mut tx, id).await?;
            crate::mailbox_rules::check_delete(&get_mailbox(&mut tx, id).await?)?;
            let mut deltas = BlobDeltas::new();
            clear_mailboxes(&mut tx, &[id.0], &mut deltas).await?;
            tx.execute("DELETE FROM mailboxes WHERE id = $1", &[&id.0])
                .await?;
            adjust_blobs(&mut tx, &deltas).await?;
            self.announce(&mut tx, mb.account, &[Change::MailboxList]);
            Ok(mb.account)
        })?;
        self.publish(account, vec![Change::MailboxList]);
        Ok(())
    }

    async fn rename_mailbox(&self, id: MailboxId, new_name: &str) -> StoreResult<()> {
        let new_name = canonical_name(new_name);
        validate_mailbox_name(&new_name)?;
        let account = write_tx!(self, |tx| {
            let mb = get_mailbox(&mut tx, id).await?;
            crate::mailbox_rules::check_rename(&mb)?;
            if new_name == "INBOX" {
                return Err(StoreError::Exists("mailbox INBOX".into()));
            }
            if find_mailbox(&mut tx, mb.account, &new_name)
                .await?
                .is_some()
            {
                return Err(StoreError::Exists(format!("mailbox {new_name}")));
            }
            tx.execute(
                "UPDATE mailboxes SET name = $2 WHERE id = $1",
                &[&id.0, &new_name],
            )
            .await?;
            self.announce(&mut tx, mb.account, &[Change::MailboxList]);
            Ok(mb.account)
        })?;
        self.publish(account, vec![Change::MailboxList]);
        Ok(())
    }

    async fn set_subscribed(&self, id: MailboxId, subscribed: bool) -> StoreResult<()> {
        let n = self
            .conn()
            .await?
            .execute(
                "UPDATE mailboxes SET subscribed = $2 WHERE id = $1",
                &[&id.0, &subscribed],
            )
            .await?;
        if n == 0 {
            return Err(not_found_mailbox(id));
        }
        Ok(())
    }

    async fn append_batch(
        &self,
        mailbox: MailboxId,
        messages: Vec<NewMessage>,
    ) -> StoreResult<Vec<Appended>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        // Parse and hash before taking any lock: that is the slow part.
        let prepared = prepare_all(messages).await?;
        let (appended, account, changes) = write_tx!(self, |tx| {
            let mut mb = Locked::take(&mut tx, mailbox).await?;
            let appended = append_in_tx(&mut tx, &mut mb, &prepared).await?;
            mb.save(&mut tx).await?;
            let changes: Vec<Change> = appended
                .iter()
                .map(|a| Change::Appended {
                    mailbox,
                    uid: a.uid,
                    modseq: a.modseq,
                })
                .collect();
            self.announce(&mut tx, mb.account, &changes);
            Ok((appended, mb.account, changes))
        })?;
        self.publish(account, changes);
        Ok(appended)
    }

    async fn changed_since(
        &self,
        mailbox: MailboxId,
        since: ModSeq,
    ) -> StoreResult<Vec<MessageSummary>> {
        let r = self
            .conn()
            .await?
            .query(
                concat!(
                    "SELECT ",
                    summary_columns!(),
                    " FROM messages WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid"
                ),
                &[&mailbox.0, &(since.0.min(i64::MAX as u64) as i64)],
            )
            .await?;
        rows(r, summary_from_row)
    }

    async fn claim_recent(&self, mailbox: MailboxId, up_to: Uid) -> StoreResult<Uid> {
        // One statement: the CTE locks the row and reads the old watermark, the
        // UPDATE raises it (never lowers).
        let row = self
            .conn()
            .await?
            .query_opt(
                "WITH old AS (SELECT id, recent_uid FROM mailboxes WHERE id = $1 FOR UPDATE)
                 UPDATE mailboxes SET recent_uid = GREATEST(old.recent_uid, $2)
                 FROM old WHERE mailboxes.id = old.id
                 RETURNING old.recent_uid",
                &[&mailbox.0, &(up_to.0 as i64)],
            )
            .await?
            .ok_or_else(|| not_found_mailbox(mailbox))?;
        Ok(Uid(row.try_get::<_, i64>(0)? as u32))
    }

    async fn move_messages(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> StoreResult<Vec<(Uid, Uid)>> {
        if from == to {
            return Err(StoreError::Invalid(
                "source and destination are the same".into(),
            ));
        }
        let (pairs, account, changes) = write_tx!(self, |tx| {
            let mut locked = Locked::take_all(&mut tx, &[from, to]).await?;
            let mut deltas = BlobDeltas::new();
            let (pairs, account, mut changes) =
                copy_in_tx(&mut tx, &mut locked, from, uids, to, &mut deltas).await?;
            let moved: Vec<Uid> = pairs.iter().map(|(s, _)| *s).collect();
            let src = locked
                .get_mut(&from)
                .ok_or_else(|| not_found_mailbox(from))?;
            changes.extend(expunge_in_tx(&mut tx, src, &moved, &mut deltas).await?);
            for mb in locked.values() {
                mb.save(&mut tx).await?;
            }
            // Moved messages keep their blobs: the deltas cancel out.
            adjust_blobs(&mut tx, &deltas).await?;
            self.announce(&mut tx, account, &changes);
            Ok((pairs, account, changes))
        })?;
        self.publish(account, changes);
        Ok(pairs)
    }

    async fn list_messages(&self, mailbox: MailboxId) -> StoreResult<Vec<MessageSummary>> {
        let mut conn = self.conn().await?;
        let r = conn
            .query(
                concat!(
                    "SELECT ",
                    summary_columns!(),
                    " FROM messages WHERE mailbox_id = $1 ORDER BY uid"
                ),
                &[&mailbox.0],
            )
            .await?;
        if r.is_empty() {
            // Distinguish "no such mailbox" from "empty".
            get_mailbox(&mut conn, mailbox).await?;
        }
        rows(r, summary_from_row)
    }

    async fn structures(
        &self,
        blobs: &[BlobId],
    ) -> StoreResult<Vec<Option<Arc<MessageStructure>>>> {
        // Rows from before the split hold the whole ParsedMessage in `parsed`;
        // MessageStructure reads it all the same.
        with_cache(&self.inner.structures, blobs, |missing| async move {
            let found = self
                .blob_rows(
                    &missing,
                    "SELECT hash, parsed FROM blobs WHERE hash = ANY($1)",
                )
                .await?;
            missing
                .iter()
                .map(|b| match found.get(&b.0) {
                    Some(row) => {
                        let json: String = row.try_get(1)?;
                        serde_json::from_str::<MessageStructure>(&json)
                            .map(Some)
                            .map_err(StoreError::internal)
                    }
                    None => Ok(None),
                })
                .collect()
        })
        .await
    }

    async fn search_fields(
        &self,
        blobs: &[BlobId],
        text: bool,
    ) -> StoreResult<Vec<Option<Arc<SearchFields>>>> {
        if !text {
            return with_cache(&self.inner.header_fields, blobs, |missing| async move {
                let found = self
                    .blob_rows(
                        &missing,
                        "SELECT hash, search, NULL::text, CASE WHEN search IS NULL THEN parsed END
                         FROM blobs WHERE hash = ANY($1)",
                    )
                    .await?;
                missing
                    .iter()
                    .map(|b| {
                        found
                            .get(&b.0)
                            .map(|r| search_fields_of(r, false))
                            .transpose()
                    })
                    .collect()
            })
            .await;
        }
        let found = self
            .blob_rows(
                blobs,
                "SELECT hash, search, search_text, CASE WHEN search IS NULL THEN parsed END
                 FROM blobs WHERE hash = ANY($1)",
            )
            .await?;
        blobs
            .iter()
            .map(|b| {
                found
                    .get(&b.0)
                    .map(|r| search_fields_of(r, true).map(Arc::new))
                    .transpose()
            })
            .collect()
    }

    async fn read_blob(&self, blob: &BlobId) -> StoreResult<Vec<u8>> {
        valid_blob_id(blob)?;
        let row = self
            .conn()
            .await?
            .query_opt("SELECT content FROM blobs WHERE hash = $1", &[&blob.0])
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("blob {blob}")))?;
        Ok(row.try_get(0)?)
    }

    async fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        op: FlagOp,
        flags: &FlagSet,
    ) -> StoreResult<Vec<FlagUpdate>> {
        let (updates, account) = write_tx!(self, |tx| {
            let mut mb = Locked::take(&mut tx, mailbox).await?;
            let wanted: Vec<i64> = uids.iter().map(|u| u.0 as i64).collect();
            let found = tx
                .query(
                    "SELECT uid, flags FROM messages WHERE mailbox_id = $1 AND uid = ANY($2)",
                    &[&mailbox.0, &wanted],
                )
                .await?;
            let mut current: HashMap<u32, FlagSet> = HashMap::with_capacity(found.len());
            for r in found {
                let uid = r.try_get::<_, i64>(0)? as u32;
                current.insert(uid, flags_from_string(&r.try_get::<_, String>(1)?));
            }
            let mut updates: Vec<FlagUpdate> = Vec::new();
            let mut modseq = None;
            for &uid in uids {
                let Some(cur) = current.get_mut(&uid.0) else {
                    continue;
                };
                let new: FlagSet = match op {
                    FlagOp::Replace => flags.clone(),
                    FlagOp::Add => cur.union(flags).cloned().collect(),
                    FlagOp::Remove => cur.difference(flags).cloned().collect(),
                };
                if new == *cur {
                    continue;
                }
                // One MODSEQ for the whole command (RFC 7162 §3.1.3 allows it).
                let m = *modseq.get_or_insert_with(|| mb.next_modseq());
                *cur = new.clone();
                updates.push(FlagUpdate {
                    uid,
                    flags: new,
                    modseq: m,
                });
            }
            if let Some(m) = modseq {
                // The last state of each UID (a UID listed twice changes once more).
                let mut last: BTreeMap<i64, String> = BTreeMap::new();
                for u in &updates {
                    last.insert(u.uid.0 as i64, flags_to_string(&u.flags));
                }
                let (u, f): (Vec<i64>, Vec<String>) = last.into_iter().unzip();
                tx.execute(
                    "UPDATE messages SET flags = d.f, modseq = $2
                     FROM unnest($3::bigint[], $4::text[]) AS d(u, f)
                     WHERE messages.mailbox_id = $1 AND messages.uid = d.u",
                    &[&mailbox.0, &(m.0 as i64), &u, &f],
                )
                .await?;
                mb.save(&mut tx).await?;
                let changes = Change::from_flag_updates(mailbox, &updates);
                self.announce(&mut tx, mb.account, &changes);
            }
            Ok((updates, mb.account))
        })?;
        self.publish(account, Change::from_flag_updates(mailbox, &updates));
        Ok(updates)
    }

    async fn expunge(
        &self,
        account: AccountId,
        messages: &[MessageRef],
    ) -> StoreResult<Vec<MessageRef>> {
        let mut by_mailbox: BTreeMap<MailboxId, Vec<Uid>> = BTreeMap::new();
        for m in messages {
            by_mailbox.entry(m.mailbox).or_default().push(m.uid);
        }
        if by_mailbox.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<MailboxId> = by_mailbox.keys().copied().collect();
        let (removed, changes) = write_tx!(self, |tx| {
            let mut locked = Locked::take_all(&mut tx, &ids).await?;
            let mut removed = Vec::new();
            let mut changes = Vec::new();
            let mut deltas = BlobDeltas::new();
            for (mailbox, uids) in &by_mailbox {
                let mb = locked
                    .get_mut(mailbox)
                    .ok_or_else(|| not_found_mailbox(*mailbox))?;
                if mb.account != account {
                    return Err(not_found_mailbox(*mailbox));
                }
                if let Some(c) = expunge_in_tx(&mut tx, mb, uids, &mut deltas).await? {
                    if let Change::Expunged { uids, .. } = &c {
                        removed.extend(uids.iter().map(|&uid| MessageRef {
                            mailbox: *mailbox,
                            uid,
                        }));
                    }
                    changes.push(c);
                }
                mb.save(&mut tx).await?;
            }
            adjust_blobs(&mut tx, &deltas).await?;
            self.announce(&mut tx, account, &changes);
            Ok((removed, changes))
        })?;
        self.publish(account, changes);
        Ok(removed)
    }

    async fn copy(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> StoreResult<Vec<(Uid, Uid)>> {
        let (pairs, account, changes) = write_tx!(self, |tx| {
            // The source too: its messages (and so their blobs) stay put meanwhile.
            let mut locked = Locked::take_all(&mut tx, &[from, to]).await?;
            let mut deltas = BlobDeltas::new();
            let outcome = copy_in_tx(&mut tx, &mut locked, from, uids, to, &mut deltas).await?;
            for mb in locked.values() {
                mb.save(&mut tx).await?;
            }
            adjust_blobs(&mut tx, &deltas).await?;
            self.announce(&mut tx, outcome.1, &outcome.2);
            Ok(outcome)
        })?;
        self.publish(account, changes);
        Ok(pairs)
    }

    async fn expunged_since(&self, mailbox: MailboxId, since: ModSeq) -> StoreResult<Vec<Uid>> {
        let r = self
            .conn()
            .await?
            .query(
                "SELECT uid FROM expunged WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid",
                &[&mailbox.0, &(since.0.min(i64::MAX as u64) as i64)],
            )
            .await?;
        r.iter()
            .map(|r| Ok(Uid(r.try_get::<_, i64>(0)? as u32)))
            .collect()
    }

    async fn enqueue(&self, new: NewQueued) -> StoreResult<QueueId> {
        let recipients = serde_json::to_string(&new.recipients).map_err(StoreError::internal)?;
        let now = now_unix();
        let row = self
            .conn()
            .await?
            .query_one(
                "INSERT INTO queue(sender, account_id, recipients, message, envid, ret, created, expires, next_attempt)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7) RETURNING id",
                &[
                    &new.sender,
                    &new.account.map(|a| a.0),
                    &recipients,
                    &new.message,
                    &new.envid,
                    &new.ret,
                    &now,
                    &new.expires,
                ],
            )
            .await?;
        Ok(QueueId(row.try_get(0)?))
    }

    async fn queue_claim(&self, now: i64, lease: i64, limit: usize) -> StoreResult<Vec<Queued>> {
        // SKIP LOCKED: runners on other nodes claiming at the same moment take other
        // entries instead of waiting; the re-check under the row lock (READ
        // COMMITTED) skips entries another runner claimed since our snapshot.
        let r = self
            .conn()
            .await?
            .query(
                concat!(
                    "WITH due AS (
                         SELECT id AS due_id FROM queue
                         WHERE next_attempt <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)
                         ORDER BY next_attempt, id LIMIT $2
                         FOR UPDATE SKIP LOCKED)
                     UPDATE queue SET claimed_until = $3, claimed_by = $4
                     FROM due WHERE queue.id = due.due_id
                     RETURNING ",
                    queue_columns!()
                ),
                &[
                    &now,
                    &(limit.min(i64::MAX as usize) as i64),
                    &now.saturating_add(lease),
                    &self.inner.node_id,
                ],
            )
            .await?;
        let mut due = rows(r, queued_from_row)?;
        due.sort_by_key(|q| (q.next_attempt, q.id));
        Ok(due)
    }

    async fn queue_release_claims(&self) -> StoreResult<()> {
        self.conn()
            .await?
            .execute(
                "UPDATE queue SET claimed_until = NULL, claimed_by = NULL WHERE claimed_by = $1",
                &[&self.inner.node_id],
            )
            .await?;
        Ok(())
    }

    async fn queue_next_attempt(&self) -> StoreResult<Option<i64>> {
        Ok(self
            .conn()
            .await?
            // In index order, stopping at the first unclaimed entry: cheap
            // enough for every node's runner to ask every second.
            .query_opt(
                "SELECT next_attempt FROM queue WHERE claimed_until IS NULL
                 ORDER BY next_attempt LIMIT 1",
                &[],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    async fn queue_list(&self) -> StoreResult<Vec<Queued>> {
        let r = self
            .conn()
            .await?
            .query(
                concat!(
                    "SELECT ",
                    queue_columns!(),
                    " FROM queue ORDER BY created, id"
                ),
                &[],
            )
            .await?;
        rows(r, queued_from_row)
    }

    async fn queue_message(&self, id: QueueId) -> StoreResult<Vec<u8>> {
        let row = self
            .conn()
            .await?
            .query_opt("SELECT message FROM queue WHERE id = $1", &[&id.0])
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("queue entry {}", id.0)))?;
        Ok(row.try_get(0)?)
    }

    async fn queue_update(&self, entry: &Queued) -> StoreResult<()> {
        let e = entry;
        let recipients = serde_json::to_string(&e.recipients).map_err(StoreError::internal)?;
        let n = self
            .conn()
            .await?
            .execute(
                "UPDATE queue SET recipients = $2, next_attempt = $3, attempts = $4, last_error = $5,
                 expires = $6, claimed_until = NULL, claimed_by = NULL WHERE id = $1",
                &[
                    &e.id.0,
                    &recipients,
                    &e.next_attempt,
                    &(e.attempts as i64),
                    &e.last_error,
                    &e.expires,
                ],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("queue entry {}", e.id.0)));
        }
        Ok(())
    }

    async fn queue_retry(&self, id: Option<QueueId>, now: i64) -> StoreResult<QueueRetried> {
        // One statement. Under READ COMMITTED the UPDATE re-checks its WHERE on
        // a row a runner claimed meanwhile (after waiting for its lock), so a
        // claim that commits first is never overwritten. What matched in the
        // statement's snapshot and was not made due is held by a delivery (or
        // was claimed, or delivered and removed, at that very moment).
        let id = id.map(|i| i.0);
        let row = self
            .conn()
            .await?
            .query_one(
                "WITH due AS (
                     UPDATE queue SET next_attempt = $2
                     WHERE ($1::bigint IS NULL OR id = $1)
                       AND (claimed_until IS NULL OR claimed_until <= $2)
                     RETURNING id)
                 SELECT (SELECT count(*) FROM due),
                        (SELECT count(*) FROM queue WHERE $1::bigint IS NULL OR id = $1)",
                &[&id, &now],
            )
            .await?;
        let (due, matched): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        let in_delivery = (matched - due).max(0);
        if let Some(id) = id
            && due == 0
            && in_delivery == 0
        {
            return Err(StoreError::NotFound(format!("queue entry {id}")));
        }
        Ok(QueueRetried {
            due: due as u64,
            in_delivery: in_delivery as u64,
        })
    }

    async fn queue_remove(&self, id: QueueId) -> StoreResult<()> {
        let n = self
            .conn()
            .await?
            .execute("DELETE FROM queue WHERE id = $1", &[&id.0])
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("queue entry {}", id.0)));
        }
        Ok(())
    }

    async fn lock_maildrop(&self, account: AccountId) -> StoreResult<MaildropLock> {
        locks::lock(self, account).await
    }

    fn subscribe(&self, account: AccountId) -> broadcast::Receiver<Change> {
        self.inner.feed.subscribe(account)
    }
}
