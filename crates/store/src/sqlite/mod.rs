//! The embedded default backend: SQLite (WAL, `synchronous=FULL`) for metadata in
//! `DIR/store.db`; message bytes up to `INLINE_MAX` in the database too (table
//! `inline_blobs`, durable with the batch's one fsync), larger ones as blob files
//! under `DIR/blobs` (each written and fsynced before its batch commits).
//!
//! Concurrency: one writer thread owns the writer connection and commits the writes
//! waiting for it together (group commit: one transaction, one fsync per batch,
//! each write in its own savepoint; `BEGIN IMMEDIATE`),
//! a small pool of reader connections (WAL lets them read while the writer writes).
//! Bounded reads run on the calling task's thread, reads that grow with a
//! mailbox and file reads on tokio's blocking pool (see `ReadSize`). Other processes (`casella
//! deliver`) may write to the same files; SQLite's file locks serialise them and
//! `busy_timeout` makes them wait instead of failing.
//!
//! Blob lifetime: a blob row's refcount counts the message rows that name it. When it
//! drops to zero the row stays, and a collection pass removes file and row inside a
//! write transaction; an append that finds its blob's file missing inside its own
//! write transaction writes it again. Both checks run under the write lock, so a
//! committed message never points at a removed file.

mod schema;
mod text_index;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::broadcast;

use crate::blob::BlobDir;
use crate::changes::{Change, ChangeFeed};
use crate::error::{StoreError, StoreResult};
use crate::parsed_cache::{ParsedCache, with_cache};
use crate::types::*;
use crate::{
    MailStore, MaildropLock, MessageStructure, SearchFields, normalize_line_ends, now_unix,
};

/// Messages up to this size are kept inside the database (`inline_blobs`),
/// larger ones as files under `blobs/`.
const INLINE_MAX: usize = 64 * 1024;

/// Reader connections: reads beyond this many wait for one to be free rather
/// than open (and prepare statements on) a connection of their own.
const READER_POOL: usize = 8;

/// Reads of at most this many rows are `ReadSize::Small`.
const SMALL_READ_ROWS: usize = 256;

/// Where a read runs. Handing a read to tokio's blocking pool costs two thread
/// wake-ups (there and back), more than an index lookup or a few hundred rows
/// from SQLite's cache take; under load those hand-offs were the largest single
/// cost of IMAP commands. So bounded reads run on the task's own thread, and
/// only reads that grow with a mailbox, the text index, and message files go
/// to the pool, where they cannot hold up other sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadSize {
    /// Index lookups and reads of at most `SMALL_READ_ROWS` rows. They run on
    /// a runtime thread: a panic ends the calling task, and if the reader
    /// pool is empty a connection is opened there.
    Small,
    /// Whole mailboxes, whole tables, the text index, files.
    Large,
}

impl ReadSize {
    /// The size of a read of `n` rows.
    fn rows(n: usize) -> ReadSize {
        if n <= SMALL_READ_ROWS {
            ReadSize::Small
        } else {
            ReadSize::Large
        }
    }
}
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 96;

struct Inner {
    db_path: PathBuf,
    blobs: BlobDir,
    /// Jobs for the writer thread (group commit).
    writer: Mutex<std::sync::mpsc::Sender<WriteJob>>,
    readers: Mutex<Vec<Connection>>,
    /// One permit per reader connection.
    read_slots: tokio::sync::Semaphore,
    feed: ChangeFeed,
    /// Accounts whose maildrop a POP3 session holds (this process only; the
    /// embedded store serves one server process).
    maildrops: Mutex<HashSet<AccountId>>,
    /// Structures FETCH read lately.
    structures: ParsedCache<MessageStructure>,
    /// Header fields SEARCH read lately.
    header_fields: ParsedCache<SearchFields>,
    /// Header blocks FETCH read lately.
    headers: ParsedCache<[u8]>,
    /// Whether the SEARCH text index is on (`text_index`).
    text_index: bool,
    /// Wakes the text indexer when new mail was stored.
    index_signal: Arc<text_index::Signal>,
    /// The indexer thread, when this store runs one.
    indexer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The indexer sees the store gone and stops, within its current batch;
        // waiting for it means a store opened next on the same files never runs
        // beside it.
        self.index_signal.wake();
        let handle = self
            .indexer
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
    }
}

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::SqliteFailure(ref f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                StoreError::Temporary(e.to_string())
            }
            rusqlite::Error::SqliteFailure(ref f, _) if f.code == rusqlite::ErrorCode::DiskFull => {
                StoreError::Temporary(e.to_string())
            }
            other => StoreError::Internal(format!("sqlite: {other}")),
        }
    }
}

/// SQLite's memory statistics take one process-wide mutex on every allocation;
/// the text indexer, at the lowest CPU priority, could be preempted holding it
/// and stall every other connection. Off before the first connection opens.
fn sqlite_memstatus_off() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int; sqlite3_config only
        // answers SQLITE_MISUSE once SQLite is initialised, changing nothing.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS,
                0 as std::os::raw::c_int,
            )
        };
        if rc != rusqlite::ffi::SQLITE_OK {
            tracing::debug!(rc, "SQLite memory statistics stay on");
        }
    });
}

fn open_connection(path: &Path) -> StoreResult<Connection> {
    sqlite_memstatus_off();
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk (WAL fsynced) before it returns — the ack rule.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Room for every statement a session or the writer runs, so none is parsed
    // again per command (rusqlite keeps 16 by default).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Runs `f` on a connection from the reader pool (opening one if the pool is
/// empty) and puts the connection back.
fn with_reader<T>(inner: &Inner, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
    let conn = inner
        .readers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pop();
    let conn = match conn {
        Some(c) => c,
        None => {
            let conn = open_connection(&inner.db_path)?;
            if inner.text_index {
                text_index::attach(&conn, &inner.db_path)?;
            }
            conn
        }
    };
    let result = f(&conn);
    let mut pool = inner.readers.lock().unwrap_or_else(|p| p.into_inner());
    if pool.len() < READER_POOL {
        pool.push(conn);
    }
    result
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx
        .prepare_cached("PRAGMA user_version")?
        .query_row([], |r| r.get(0))?;
    let target = schema::MIGRATIONS.len() as i64;
    if version > target {
        return Err(StoreError::Internal(format!(
            "store schema version {version} is newer than this casella ({target})"
        )));
    }
    if version > 0 && version < target {
        // Some steps rewrite tables (version 13 copies every message kept in
        // the database): say why a start takes long.
        tracing::info!(from = version, to = target, "upgrading the store's schema");
    }
    for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, leaving the text index as
    /// it is.
    pub fn open(dir: impl AsRef<Path>) -> StoreResult<SqliteStore> {
        SqliteStore::open_with(dir, None)
    }

    /// Opens the store; `search_index` turns the SEARCH text index on (and
    /// starts indexing in the background, beginning with what is missing) or off
    /// (dropping it). Only the server sets it; other commands pass `None` and
    /// leave the index as it is (see `text_index`).
    pub fn open_with(
        dir: impl AsRef<Path>,
        search_index: Option<bool>,
    ) -> StoreResult<SqliteStore> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)?;
        let db_path = dir.join("store.db");
        let mut writer = open_connection(&db_path)?;
        migrate(&mut writer)?;
        let text_index = text_index::configure(&mut writer, &db_path, search_index)?;
        let (jobs, queue) = std::sync::mpsc::channel::<WriteJob>();
        let index_signal = Arc::new(text_index::Signal::default());
        let signal = index_signal.clone();
        std::thread::Builder::new()
            .name("casella-store-writer".into())
            .spawn(move || write_batches(writer, queue, &signal))?;
        let blobs = BlobDir::open(dir.join("blobs"))?;
        let indexer_jobs = jobs.clone();
        let inner = Arc::new(Inner {
            db_path,
            blobs,
            writer: Mutex::new(jobs),
            readers: Mutex::new(Vec::new()),
            read_slots: tokio::sync::Semaphore::new(READER_POOL),
            feed: ChangeFeed::default(),
            maildrops: Mutex::new(HashSet::new()),
            structures: ParsedCache::default(),
            header_fields: ParsedCache::default(),
            headers: ParsedCache::default(),
            text_index,
            index_signal,
            indexer: Mutex::new(None),
        });
        // Only the server (which says whether it wants the index) indexes.
        if text_index && search_index.is_some() {
            let handle = text_index::start(&inner, indexer_jobs)?;
            *inner.indexer.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        }
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("casella-store-watch".into())
            .spawn(move || watch_other_writers(weak))?;
        Ok(SqliteStore { inner })
    }

    /// One of the `READER_POOL` permits every read (database or file) holds.
    async fn read_slot(&self) -> StoreResult<tokio::sync::SemaphorePermit<'_>> {
        self.inner
            .read_slots
            .acquire()
            .await
            .map_err(StoreError::internal)
    }

    /// Runs `f` on a reader connection: on this task's thread for a
    /// `ReadSize::Small` read, on tokio's blocking pool for a `Large` one.
    async fn read<T, F>(&self, size: ReadSize, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let _slot = self.read_slot().await?;
        match size {
            ReadSize::Small => with_reader(&self.inner, f),
            ReadSize::Large => {
                let inner = self.inner.clone();
                tokio::task::spawn_blocking(move || with_reader(&inner, f))
                    .await
                    .map_err(StoreError::internal)?
            }
        }
    }

    /// The rows of `sql` (a query on `?1` = mailbox and `?2` = MODSEQ over an
    /// index on both, without ORDER BY, ending in `LIMIT ?3`) in UID order. Usually a few
    /// rows: asked for inline with a LIMIT just past `SMALL_READ_ROWS`, so the
    /// probe stays small; when there are more (a `STORE 1:*` in a large
    /// mailbox), all of them are read again on the blocking pool.
    async fn read_changes<T: Send + 'static>(
        &self,
        sql: &'static str,
        mailbox: MailboxId,
        since: ModSeq,
        row: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
        uid: fn(&T) -> Uid,
    ) -> StoreResult<Vec<T>> {
        // `?3` is the LIMIT; SQLite reads a negative one as none.
        let query = move |c: &Connection, limit: i64| -> StoreResult<Vec<T>> {
            let mut stmt = c.prepare_cached(sql)?;
            let rows = stmt.query_map(params![mailbox.0, since.0 as i64, limit], row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        };
        let mut rows = self
            .read(ReadSize::Small, move |c| {
                query(c, SMALL_READ_ROWS as i64 + 1)
            })
            .await?;
        if rows.len() > SMALL_READ_ROWS {
            rows = self.read(ReadSize::Large, move |c| query(c, -1)).await?;
        }
        rows.sort_unstable_by_key(uid);
        Ok(rows)
    }

    /// Fills the `None` entries of `found` (messages not kept in the database)
    /// from their files, on the blocking pool; a file that cannot be read
    /// stays `None`.
    async fn fill_from_files(
        &self,
        blobs: Vec<BlobId>,
        mut found: Vec<Option<Vec<u8>>>,
        header_only: bool,
    ) -> StoreResult<Vec<Option<Vec<u8>>>> {
        if found.iter().all(Option::is_some) {
            return Ok(found);
        }
        // Files count against the same limit as database reads.
        let _slot = self.read_slot().await?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            for (slot, blob) in found.iter_mut().zip(&blobs) {
                if slot.is_none() {
                    *slot = file_bytes(&inner.blobs, blob, header_only).ok();
                }
            }
            found
        })
        .await
        .map_err(StoreError::internal)
    }

    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Inner) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        let (done, answer) = tokio::sync::oneshot::channel::<StoreResult<T>>();
        let slot: Arc<Mutex<Option<StoreResult<T>>>> = Arc::new(Mutex::new(None));
        let run_slot = slot.clone();
        let job = WriteJob {
            run: Box::new(move |conn| {
                let result = f(conn, &inner);
                let ok = result.is_ok();
                *run_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
                ok
            }),
            finish: Box::new(move |failed| {
                let result = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
                let answer = match (failed, result) {
                    (Some(e), _) => Err(e),
                    (None, Some(r)) => r,
                    (None, None) => Err(StoreError::Internal("a write did not run".into())),
                };
                let _ = done.send(answer);
            }),
        };
        self.inner
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| StoreError::Internal("the store's writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Internal("the store's writer has stopped".into()))?
    }

    /// How many stored messages the SEARCH text index has yet to read; `None`
    /// when the index is off.
    pub async fn search_index_backlog(&self) -> StoreResult<Option<u64>> {
        if !self.inner.text_index {
            return Ok(None);
        }
        self.read(ReadSize::Large, |c| text_index::backlog(c).map(Some))
            .await
    }

    /// The expunged UIDs of a mailbox with the MODSEQ of each expunge, for a
    /// migration that keeps QRESYNC state.
    pub async fn expunged_log(&self, mailbox: MailboxId) -> StoreResult<Vec<(Uid, ModSeq)>> {
        self.read(ReadSize::Large, move |c| {
            let mut stmt =
                c.prepare("SELECT uid, modseq FROM expunged WHERE mailbox_id = ?1 ORDER BY uid")?;
            Ok(stmt
                .query_map([mailbox.0], |r| {
                    Ok((Uid(r.get(0)?), ModSeq(r.get::<_, i64>(1)? as u64)))
                })?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Removes blobs no message refers to any more (see the module docs).
    async fn collect_blobs(&self) -> StoreResult<()> {
        self.write(|tx, inner| {
            let mut stmt = tx.prepare("SELECT hash FROM blobs WHERE refcount = 0")?;
            let hashes: Vec<String> = stmt
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for h in hashes {
                inner.blobs.remove(&BlobId(h.clone()))?;
                tx.prepare_cached("DELETE FROM inline_blobs WHERE hash = ?1")?
                    .execute([&h])?;
                tx.prepare_cached("DELETE FROM blobs WHERE hash = ?1")?
                    .execute([&h])?;
            }
            Ok(())
        })
        .await
    }

    fn publish(&self, account: AccountId, changes: Vec<Change>) {
        self.inner.feed.publish(account, changes);
    }
}

/// One write for the writer thread: `run` does the work inside the batch's
/// transaction (in its own savepoint) and says whether it succeeded; `finish` is
/// called once the batch committed (`None`) or failed (`Some`), and answers the
/// caller — never before the commit is on disk.
pub(crate) struct WriteJob {
    run: Box<dyn FnOnce(&Connection) -> bool + Send>,
    finish: Box<dyn FnOnce(Option<StoreError>) + Send>,
}

/// Most writes committed together.
const MAX_BATCH: usize = 64;

/// Group commit: the writer thread takes every write that is waiting, runs each in
/// a savepoint of one transaction (a failing write rolls back only itself), and
/// commits once — one fsync for the whole batch — before answering any of them.
fn write_batches(
    mut conn: Connection,
    queue: std::sync::mpsc::Receiver<WriteJob>,
    index_signal: &text_index::Signal,
) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                let e = StoreError::from(e);
                for j in jobs {
                    (j.finish)(Some(clone_error(&e)));
                }
                continue;
            }
        };
        let mut finishers = Vec::with_capacity(jobs.len());
        for j in jobs {
            let ran = tx.execute_batch("SAVEPOINT casella_write").is_ok() && {
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (j.run)(&tx)));
                let ok = matches!(outcome, Ok(true));
                if ok {
                    tx.execute_batch("RELEASE casella_write").is_ok()
                } else {
                    let _ = tx.execute_batch("ROLLBACK TO casella_write; RELEASE casella_write");
                    // A failed write answers with its own error after the commit.
                    true
                }
            };
            if !ran {
                tracing::error!("a store savepoint failed");
            }
            finishers.push(j.finish);
        }
        match tx.commit() {
            Ok(()) => {
                index_signal.committed();
                for f in finishers {
                    f(None);
                }
            }
            Err(e) => {
                let e = StoreError::from(e);
                tracing::error!(error = %e, "committing a batch of writes failed");
                for f in finishers {
                    f(Some(clone_error(&e)));
                }
            }
        }
    }
}

fn clone_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Temporary(m) => StoreError::Temporary(m.clone()),
        other => StoreError::Internal(other.to_string()),
    }
}

/// How often the watcher looks for commits made by other processes.
const WATCH_INTERVAL: Duration = Duration::from_millis(20);

/// Other processes (`casella deliver`) write to the same database. While some
/// session listens for changes, this thread polls SQLite's `data_version` (it
/// changes when another connection commits) and, when it moved, reads the MODSEQ of
/// the watched accounts' mailboxes; the feed publishes `MailboxChanged` for any that
/// moved past what this process announced. Ends when the store is dropped.
fn watch_other_writers(inner: std::sync::Weak<Inner>) {
    let mut conn: Option<Connection> = None;
    let mut last_version: Option<i64> = None;
    loop {
        std::thread::sleep(WATCH_INTERVAL);
        let Some(inner) = inner.upgrade() else { return };
        let accounts = inner.feed.subscribed_accounts();
        if accounts.is_empty() {
            continue;
        }
        if conn.is_none() {
            match open_connection(&inner.db_path) {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "store watcher cannot open the database");
                    continue;
                }
            }
        }
        let Some(c) = conn.as_ref() else { continue };
        let version: i64 = match c.query_row("PRAGMA data_version", [], |r| r.get(0)) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "store watcher query failed");
                conn = None;
                continue;
            }
        };
        if last_version == Some(version) {
            continue;
        }
        last_version = Some(version);
        for account in accounts {
            let rows: rusqlite::Result<Vec<(i64, i64)>> = c
                .prepare_cached("SELECT id, highest_modseq FROM mailboxes WHERE account_id = ?1")
                .and_then(|mut st| {
                    st.query_map([account.0], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect()
                });
            match rows {
                Ok(rows) => {
                    for (id, modseq) in rows {
                        inner
                            .feed
                            .observe(account, MailboxId(id), ModSeq(modseq as u64));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "store watcher query failed"),
            }
        }
    }
}

// ---- row helpers ----

const ACCOUNT_COLUMNS: &str =
    "id, address, password_hash, is_admin, pop_enabled, imap_enabled, submission_enabled, settings";

fn account_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    let settings: String = r.get(7)?;
    Ok(Account {
        id: AccountId(r.get(0)?),
        address: r.get(1)?,
        password_hash: r.get(2)?,
        is_admin: r.get(3)?,
        pop_enabled: r.get(4)?,
        imap_enabled: r.get(5)?,
        submission_enabled: r.get(6)?,
        // A settings document this version cannot read falls back to defaults
        // rather than locking the user out.
        settings: serde_json::from_str(&settings).unwrap_or_default(),
    })
}

const MAILBOX_COLUMNS: &str = "id, account_id, name, special_use, uidvalidity, uidnext, highest_modseq, subscribed, recent_uid";

fn mailbox_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Mailbox> {
    let special: Option<String> = r.get(3)?;
    Ok(Mailbox {
        id: MailboxId(r.get(0)?),
        account: AccountId(r.get(1)?),
        name: r.get(2)?,
        special_use: special.as_deref().and_then(SpecialUse::from_attribute),
        uid_validity: UidValidity(r.get(4)?),
        uid_next: Uid(r.get(5)?),
        highest_modseq: ModSeq(r.get::<_, i64>(6)? as u64),
        subscribed: r.get(7)?,
        recent_watermark: Uid(r.get(8)?),
    })
}

fn get_mailbox(conn: &Connection, id: MailboxId) -> StoreResult<Mailbox> {
    conn.prepare_cached(&format!(
        "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE id = ?1"
    ))?
    .query_row([id.0], mailbox_from_row)
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("mailbox {}", id.0)))
}

fn find_mailbox(conn: &Connection, account: AccountId, name: &str) -> StoreResult<Option<Mailbox>> {
    let name = canonical_name(name);
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = ?1 AND name = ?2"
        ))?
        .query_row(params![account.0, name], mailbox_from_row)
        .optional()?)
}

/// `INBOX` is case-insensitive (RFC 9051 §5.1); every other name is kept as given.
pub(crate) fn canonical_name(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        return "INBOX".to_string();
    }
    if let Some(rest) = name.get(..6)
        && rest.eq_ignore_ascii_case("INBOX/")
    {
        return format!("INBOX/{}", &name[6..]);
    }
    name.to_string()
}

pub(crate) fn validate_mailbox_name(name: &str) -> StoreResult<()> {
    if name.is_empty()
        || name.starts_with('/')
        || name.ends_with('/')
        || name.contains("//")
        || name.chars().any(|c| c.is_control())
    {
        return Err(StoreError::Invalid(format!("bad mailbox name {name:?}")));
    }
    Ok(())
}

/// A UIDVALIDITY unique within this store: seconds since the epoch, or one more than
/// the last one handed out if the clock has not moved on.
fn next_uid_validity(tx: &Connection) -> StoreResult<UidValidity> {
    let last: Option<String> = tx
        .prepare_cached("SELECT value FROM meta WHERE key = 'last_uidvalidity'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    let last: u32 = last.and_then(|s| s.parse().ok()).unwrap_or(0);
    let now = (now_unix().clamp(1, u32::MAX as i64)) as u32;
    let next = now.max(last.saturating_add(1)).max(1);
    tx.prepare_cached(
        "INSERT INTO meta(key, value) VALUES('last_uidvalidity', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute([next.to_string()])?;
    Ok(UidValidity(next))
}

fn insert_mailbox(
    tx: &Connection,
    account: AccountId,
    name: &str,
    special_use: Option<SpecialUse>,
) -> StoreResult<Mailbox> {
    let name = canonical_name(name);
    validate_mailbox_name(&name)?;
    if find_mailbox(tx, account, &name)?.is_some() {
        return Err(StoreError::Exists(format!("mailbox {name}")));
    }
    let validity = next_uid_validity(tx)?;
    tx.prepare_cached(
        "INSERT INTO mailboxes(account_id, name, special_use, uidvalidity, uidnext,
         highest_modseq, subscribed)
         VALUES (?1, ?2, ?3, ?4, 1, 1, 1)",
    )?
    .execute(params![
        account.0,
        name,
        special_use.map(|s| s.attribute()),
        validity.0
    ])?;
    get_mailbox(tx, MailboxId(tx.last_insert_rowid()))
}

/// Bumps the mailbox's MODSEQ and returns the new value.
fn next_modseq(tx: &Connection, mailbox: MailboxId) -> StoreResult<ModSeq> {
    let v: i64 = tx
        .prepare_cached(
            "UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = ?1
         RETURNING highest_modseq",
        )?
        .query_row([mailbox.0], |r| r.get(0))?;
    Ok(ModSeq(v as u64))
}

/// Runs `sql` (one row by `?1` = the blob's hash) for each blob and turns the
/// row into a value with `value`; `None` where the blob has no row.
fn per_blob<T>(
    c: &Connection,
    sql: &str,
    blobs: &[BlobId],
    value: impl Fn(&rusqlite::Row<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<Option<T>>> {
    let mut stmt = c.prepare_cached(sql)?;
    blobs
        .iter()
        .map(|b| {
            let mut rows = stmt.query([&b.0])?;
            rows.next()?.map(&value).transpose()
        })
        .collect()
}

/// A message's bytes (with `header_only`, its header block) when it is small
/// enough to be kept in the database; `None` when it is kept as a file.
fn stored_bytes(c: &Connection, blob: &BlobId, header_only: bool) -> StoreResult<Option<Vec<u8>>> {
    let inline: Option<Vec<u8>> = c
        .prepare_cached("SELECT content FROM inline_blobs WHERE hash = ?1")?
        .query_row([&blob.0], |r| r.get(0))
        .optional()?;
    Ok(inline.map(|mut raw| {
        if header_only {
            raw.truncate(casella_mime::header_len(&raw));
        }
        raw
    }))
}

/// A message's bytes (or header block) from its file under `blobs/`.
fn file_bytes(files: &BlobDir, blob: &BlobId, header_only: bool) -> StoreResult<Vec<u8>> {
    if header_only {
        files.get_header(blob)
    } else {
        files.get(blob)
    }
}

fn release_blob(tx: &Connection, hash: &str) -> StoreResult<()> {
    tx.prepare_cached("UPDATE blobs SET refcount = refcount - 1 WHERE hash = ?1")?
        .execute([hash])?;
    Ok(())
}

fn account_of_mailbox(conn: &Connection, mailbox: MailboxId) -> StoreResult<AccountId> {
    Ok(get_mailbox(conn, mailbox)?.account)
}

/// Deletes all messages of a mailbox, releasing their blobs.
fn clear_mailbox(tx: &Connection, mailbox: MailboxId) -> StoreResult<()> {
    let mut stmt = tx.prepare("SELECT blob FROM messages WHERE mailbox_id = ?1")?;
    let blobs: Vec<String> = stmt
        .query_map([mailbox.0], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for b in blobs {
        release_blob(tx, &b)?;
    }
    tx.prepare_cached("DELETE FROM messages WHERE mailbox_id = ?1")?
        .execute([mailbox.0])?;
    tx.prepare_cached("DELETE FROM expunged WHERE mailbox_id = ?1")?
        .execute([mailbox.0])?;
    Ok(())
}

const QUEUE_COLUMNS: &str = "id, sender, account_id, recipients, length(message), envid, ret, created, expires, next_attempt, attempts, last_error, claimed_until";

fn queued_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Queued> {
    let recipients: String = r.get(3)?;
    Ok(Queued {
        id: QueueId(r.get(0)?),
        sender: r.get(1)?,
        account: r.get::<_, Option<i64>>(2)?.map(AccountId),
        recipients: serde_json::from_str(&recipients).unwrap_or_default(),
        size: r.get::<_, i64>(4)? as u64,
        envid: r.get(5)?,
        ret: r.get(6)?,
        created: r.get(7)?,
        expires: r.get(8)?,
        next_attempt: r.get(9)?,
        attempts: r.get(10)?,
        last_error: r.get(11)?,
        claimed_until: r.get(12)?,
    })
}

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

fn summary_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageSummary> {
    let flags: String = r.get(4)?;
    Ok(MessageSummary {
        uid: Uid(r.get(0)?),
        modseq: ModSeq(r.get::<_, i64>(1)? as u64),
        size: r.get(2)?,
        internal_date: r.get(3)?,
        flags: flags_from_string(&flags),
        blob: BlobId(r.get(5)?),
    })
}

/// (source UID, new UID) pairs, the owning account, and the changes to publish.
type CopyOutcome = (Vec<(Uid, Uid)>, AccountId, Vec<Change>);

/// Copies inside an open transaction; one MODSEQ for the whole copy.
fn copy_in_tx(
    tx: &Connection,
    from: MailboxId,
    uids: &[Uid],
    to: MailboxId,
) -> StoreResult<CopyOutcome> {
    let src = get_mailbox(tx, from)?;
    let dst = get_mailbox(tx, to)?;
    if src.account != dst.account {
        return Err(StoreError::Invalid("copy across accounts".into()));
    }
    let mut pairs = Vec::new();
    let mut changes = Vec::new();
    let mut next = dst.uid_next.0;
    let mut modseq = None;
    let mut get = tx.prepare_cached(
        "SELECT blob, size, internal_date, flags FROM messages WHERE mailbox_id = ?1 AND uid = ?2",
    )?;
    for &uid in uids {
        let row: Option<(String, u32, i64, String)> = get
            .query_row(params![from.0, uid.0], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let Some((blob, size, date, flags)) = row else {
            continue;
        };
        if next == u32::MAX {
            return Err(StoreError::Invalid("mailbox has run out of UIDs".into()));
        }
        let m = match modseq {
            Some(m) => m,
            None => {
                let m = next_modseq(tx, to)?;
                modseq = Some(m);
                m
            }
        };
        tx.prepare_cached(
            "INSERT INTO messages(mailbox_id, uid, modseq, blob, size, internal_date,
             flags)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![to.0, next, m.0 as i64, blob, size, date, flags])?;
        tx.prepare_cached("UPDATE blobs SET refcount = refcount + 1 WHERE hash = ?1")?
            .execute([&blob])?;
        pairs.push((uid, Uid(next)));
        changes.push(Change::Appended {
            mailbox: to,
            uid: Uid(next),
            modseq: m,
        });
        next += 1;
    }
    tx.prepare_cached("UPDATE mailboxes SET uidnext = ?2 WHERE id = ?1")?
        .execute(params![to.0, next])?;
    Ok((pairs, src.account, changes))
}

/// Expunges inside an open transaction; one MODSEQ for the mailbox. Returns the
/// change to publish (none if nothing was there).
fn expunge_in_tx(
    tx: &Connection,
    mailbox: MailboxId,
    mut uids: Vec<Uid>,
) -> StoreResult<Option<Change>> {
    uids.sort();
    uids.dedup();
    let mut gone = Vec::new();
    let mut modseq = None;
    for uid in uids {
        let blob: Option<String> = tx
            .prepare_cached(
                "DELETE FROM messages WHERE mailbox_id = ?1 AND uid = ?2 RETURNING blob",
            )?
            .query_row(params![mailbox.0, uid.0], |r| r.get(0))
            .optional()?;
        let Some(blob) = blob else { continue };
        let m = match modseq {
            Some(m) => m,
            None => {
                let m = next_modseq(tx, mailbox)?;
                modseq = Some(m);
                m
            }
        };
        release_blob(tx, &blob)?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![mailbox.0, uid.0, m.0 as i64])?;
        gone.push(uid);
    }
    Ok(modseq.map(|modseq| Change::Expunged {
        mailbox,
        uids: gone,
        modseq,
    }))
}

struct MaildropGuard {
    inner: Arc<Inner>,
    account: AccountId,
}

impl Drop for MaildropGuard {
    fn drop(&mut self) {
        self.inner
            .maildrops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.account);
    }
}

#[async_trait]
impl MailStore for SqliteStore {
    async fn create_account(&self, new: NewAccount) -> StoreResult<Account> {
        let address = new.address.to_ascii_lowercase();
        let Some((_, domain)) = address.rsplit_once('@') else {
            return Err(StoreError::Invalid(format!("{address} is not an address")));
        };
        let domain = domain.to_string();
        let account = self
            .write(move |tx, _| {
                let exists: Option<i64> = tx
                    .prepare_cached("SELECT id FROM accounts WHERE address = ?1")?
                    .query_row([&address], |r| r.get(0))
                    .optional()?;
                let alias: Option<String> = tx
                    .prepare_cached("SELECT alias FROM aliases WHERE alias = ?1")?
                    .query_row([&address], |r| r.get(0))
                    .optional()?;
                if exists.is_some() || alias.is_some() {
                    return Err(StoreError::Exists(format!("account {address}")));
                }
                let settings = serde_json::to_string(&AccountSettings::default())
                    .map_err(StoreError::internal)?;
                tx.prepare_cached(
                    "INSERT INTO accounts(address, domain, password_hash, is_admin, settings,
                     created)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    address,
                    domain,
                    new.password_hash,
                    new.is_admin,
                    settings,
                    now_unix()
                ])?;
                let id = AccountId(tx.last_insert_rowid());
                for (name, role) in DEFAULT_MAILBOXES {
                    insert_mailbox(tx, id, name, *role)?;
                }
                tx.query_row(
                    &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"),
                    [id.0],
                    account_from_row,
                )
                .map_err(Into::into)
            })
            .await?;
        Ok(account)
    }

    async fn delete_account(&self, id: AccountId) -> StoreResult<()> {
        self.write(move |tx, _| {
            let mut stmt = tx.prepare("SELECT id FROM mailboxes WHERE account_id = ?1")?;
            let boxes: Vec<i64> = stmt
                .query_map([id.0], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for b in boxes {
                clear_mailbox(tx, MailboxId(b))?;
            }
            tx.prepare_cached("DELETE FROM mailboxes WHERE account_id = ?1")?
                .execute([id.0])?;
            tx.prepare_cached("DELETE FROM aliases WHERE account_id = ?1")?
                .execute([id.0])?;
            tx.prepare_cached("DELETE FROM logins WHERE account_id = ?1")?
                .execute([id.0])?;
            let n = tx
                .prepare_cached("DELETE FROM accounts WHERE id = ?1")?
                .execute([id.0])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("account {}", id.0)));
            }
            Ok(())
        })
        .await?;
        self.collect_blobs().await
    }

    async fn account(&self, id: AccountId) -> StoreResult<Account> {
        self.read(ReadSize::Small, move |c| {
            c.query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"),
                [id.0],
                account_from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("account {}", id.0)))
        })
        .await
    }

    async fn account_by_address(&self, address: &str) -> StoreResult<Option<Account>> {
        let address = address.to_string();
        self.read(ReadSize::Small, move |c| {
            Ok(c.query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE address = ?1"),
                [address],
                account_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        self.read(ReadSize::Large, |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY address"
            ))?;
            Ok(stmt
                .query_map([], account_from_row)?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn update_account(&self, account: &Account) -> StoreResult<()> {
        let a = account.clone();
        self.write(move |tx, _| {
            let settings = a
                .settings
                .next_revision_json()
                .map_err(StoreError::internal)?;
            let expected = a.settings.revision as i64;
            // Only over the revision this copy was read with (see
            // `AccountSettings::revision`).
            let n = tx
                .prepare_cached(
                    "UPDATE accounts SET password_hash = ?2, is_admin = ?3, pop_enabled = ?4,
                 imap_enabled = ?5, submission_enabled = ?6, settings = ?7
                 WHERE id = ?1 AND coalesce(json_extract(settings, '$.revision'), 0) = ?8",
                )?
                .execute(params![
                    a.id.0,
                    a.password_hash,
                    a.is_admin,
                    a.pop_enabled,
                    a.imap_enabled,
                    a.submission_enabled,
                    settings,
                    expected
                ])?;
            if n == 0 {
                let exists = tx
                    .prepare_cached("SELECT 1 FROM accounts WHERE id = ?1")?
                    .exists([a.id.0])?;
                return Err(if exists {
                    StoreError::account_changed(&a.address)
                } else {
                    StoreError::NotFound(format!("account {}", a.address))
                });
            }
            Ok(())
        })
        .await
    }

    async fn is_local_domain(&self, domain: &str) -> StoreResult<bool> {
        let domain = domain.to_string();
        self.read(ReadSize::Small, move |c| {
            Ok(c.prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM accounts WHERE domain = ?1)
                     OR EXISTS(SELECT 1 FROM aliases WHERE domain = ?1)",
            )?
            .query_row([domain], |r| r.get(0))?)
        })
        .await
    }

    async fn add_alias(&self, account: AccountId, alias: &str) -> StoreResult<()> {
        let alias = alias.trim().to_ascii_lowercase();
        let Some((local, domain)) = alias.rsplit_once('@') else {
            return Err(StoreError::Invalid(format!("{alias} is not an address")));
        };
        if local.is_empty() || domain.is_empty() {
            return Err(StoreError::Invalid(format!("{alias} is not an address")));
        }
        let domain = domain.to_string();
        self.write(move |tx, _| {
            let taken: bool = tx
                .prepare_cached(
                    "SELECT EXISTS(SELECT 1 FROM accounts WHERE address = ?1)
                     OR EXISTS(SELECT 1 FROM aliases WHERE alias = ?1)",
                )?
                .query_row([&alias], |r| r.get(0))?;
            if taken {
                return Err(StoreError::Exists(format!("address {alias}")));
            }
            let found: Option<i64> = tx
                .prepare_cached("SELECT id FROM accounts WHERE id = ?1")?
                .query_row([account.0], |r| r.get(0))
                .optional()?;
            if found.is_none() {
                return Err(StoreError::NotFound(format!("account {}", account.0)));
            }
            tx.prepare_cached(
                "INSERT INTO aliases(alias, domain, account_id) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![alias, domain, account.0])?;
            Ok(())
        })
        .await
    }

    async fn remove_alias(&self, alias: &str) -> StoreResult<()> {
        let alias = alias.trim().to_ascii_lowercase();
        self.write(move |tx, _| {
            if tx
                .prepare_cached("DELETE FROM aliases WHERE alias = ?1")?
                .execute([&alias])?
                == 0
            {
                return Err(StoreError::NotFound(format!("alias {alias}")));
            }
            Ok(())
        })
        .await
    }

    async fn record_logins(&self, logins: Vec<(AccountId, LoginRecord)>) -> StoreResult<()> {
        self.write(move |tx, _| {
            let mut accounts = std::collections::BTreeSet::new();
            for (account, login) in &logins {
                tx.prepare_cached(
                    "INSERT INTO logins(account_id, at, protocol, remote, success, client)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(rusqlite::params![
                    account.0,
                    login.at,
                    login.protocol,
                    login.remote,
                    login.success,
                    login.client
                ])?;
                accounts.insert(account.0);
            }
            for account in accounts {
                tx.prepare_cached(
                    "DELETE FROM logins WHERE account_id = ?1 AND id <= (
                         SELECT id FROM logins WHERE account_id = ?1
                         ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                )?
                .execute(rusqlite::params![account, LOGIN_HISTORY as i64])?;
            }
            Ok(())
        })
        .await
    }

    async fn recent_logins(&self, account: AccountId) -> StoreResult<Vec<LoginRecord>> {
        self.read(ReadSize::Small, move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT at, protocol, remote, success, client FROM logins
                 WHERE account_id = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            Ok(stmt
                .query_map(rusqlite::params![account.0, LOGIN_HISTORY as i64], |r| {
                    Ok(LoginRecord {
                        at: r.get(0)?,
                        protocol: r.get(1)?,
                        remote: r.get(2)?,
                        success: r.get(3)?,
                        client: r.get(4)?,
                    })
                })?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn text_candidates(
        &self,
        mailbox: MailboxId,
        field: TextField,
        needle: &str,
    ) -> StoreResult<Option<TextCandidates>> {
        if !self.inner.text_index || !text_index::answers(needle) {
            return Ok(None);
        }
        let needle = needle.to_string();
        self.read(ReadSize::Large, move |c| {
            text_index::candidates(c, mailbox, field, &needle).map(Some)
        })
        .await
    }

    async fn save_block(&self, block: StoredBlock) -> StoreResult<()> {
        self.write(move |tx, _| {
            tx.prepare_cached(
                "INSERT INTO login_blocks(key, until, reason) VALUES (?1, ?2, ?3)
                 ON CONFLICT(key) DO UPDATE SET until = max(until, excluded.until),
                                                reason = excluded.reason",
            )?
            .execute(rusqlite::params![block.key, block.until, block.reason])?;
            Ok(())
        })
        .await
    }

    async fn blocks(&self, now: i64) -> StoreResult<Vec<StoredBlock>> {
        self.read(ReadSize::Large, move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT key, until, reason FROM login_blocks WHERE until > ?1 ORDER BY until",
            )?;
            Ok(stmt
                .query_map([now], |r| {
                    Ok(StoredBlock {
                        key: r.get(0)?,
                        until: r.get(1)?,
                        reason: r.get(2)?,
                    })
                })?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn delete_block(&self, key: &str) -> StoreResult<bool> {
        let key = key.to_string();
        self.write(move |tx, _| {
            let n = tx
                .prepare_cached("DELETE FROM login_blocks WHERE key = ?1")?
                .execute([&key])?;
            Ok(n > 0)
        })
        .await
    }

    async fn record_signout(&self, address: &str, at: i64) -> StoreResult<u64> {
        let address = address.to_ascii_lowercase();
        self.write(move |tx, _| {
            tx.prepare_cached("DELETE FROM signouts WHERE at < ?1")?
                .execute([at - crate::SIGNOUT_KEPT_SECS])?;
            tx.prepare_cached("INSERT INTO signouts(address, at) VALUES (?1, ?2)")?
                .execute(rusqlite::params![address, at])?;
            Ok(tx.last_insert_rowid() as u64)
        })
        .await
    }

    async fn signouts_since(&self, since: i64) -> StoreResult<Vec<Signout>> {
        self.read(ReadSize::Small, move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, address, at FROM signouts WHERE at >= ?1 ORDER BY seq",
            )?;
            Ok(stmt
                .query_map([since], |r| {
                    Ok(Signout {
                        seq: r.get::<_, i64>(0)? as u64,
                        address: r.get(1)?,
                        at: r.get(2)?,
                    })
                })?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn aliases(&self, account: AccountId) -> StoreResult<Vec<String>> {
        self.read(ReadSize::Small, move |c| {
            let mut stmt =
                c.prepare_cached("SELECT alias FROM aliases WHERE account_id = ?1 ORDER BY alias")?;
            Ok(stmt
                .query_map([account.0], |r| r.get(0))?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn account_for_address(&self, address: &str) -> StoreResult<Option<Account>> {
        let address = address.trim().to_ascii_lowercase();
        self.read(ReadSize::Small, move |c| {
            let direct = c
                .query_row(
                    &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE address = ?1"),
                    [&address],
                    account_from_row,
                )
                .optional()?;
            if direct.is_some() {
                return Ok(direct);
            }
            Ok(c.query_row(
                &format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id =
                     (SELECT account_id FROM aliases WHERE alias = ?1)"
                ),
                [&address],
                account_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn list_mailboxes(&self, account: AccountId) -> StoreResult<Vec<Mailbox>> {
        self.read(ReadSize::Small, move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = ?1 ORDER BY name"
            ))?;
            Ok(stmt
                .query_map([account.0], mailbox_from_row)?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn mailbox(&self, id: MailboxId) -> StoreResult<Mailbox> {
        self.read(ReadSize::Small, move |c| get_mailbox(c, id))
            .await
    }

    async fn mailbox_by_name(
        &self,
        account: AccountId,
        name: &str,
    ) -> StoreResult<Option<Mailbox>> {
        let name = name.to_string();
        self.read(ReadSize::Small, move |c| find_mailbox(c, account, &name))
            .await
    }

    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> StoreResult<Mailbox> {
        let name = name.to_string();
        let mb = self
            .write(move |tx, _| insert_mailbox(tx, account, &name, special_use))
            .await?;
        self.publish(account, vec![Change::MailboxList]);
        Ok(mb)
    }

    async fn delete_mailbox(&self, id: MailboxId) -> StoreResult<()> {
        let account = self
            .write(move |tx, _| {
                let mb = get_mailbox(tx, id)?;
                crate::mailbox_rules::check_delete(&mb)?;
                clear_mailbox(tx, id)?;
                tx.prepare_cached("DELETE FROM mailboxes WHERE id = ?1")?
                    .execute([id.0])?;
                Ok(mb.account)
            })
            .await?;
        self.publish(account, vec![Change::MailboxList]);
        self.collect_blobs().await
    }

    async fn rename_mailbox(&self, id: MailboxId, new_name: &str) -> StoreResult<()> {
        let new_name = canonical_name(new_name);
        let account = self
            .write(move |tx, _| {
                validate_mailbox_name(&new_name)?;
                let mb = get_mailbox(tx, id)?;
                crate::mailbox_rules::check_rename(&mb)?;
                if new_name == "INBOX" {
                    return Err(StoreError::Exists("mailbox INBOX".into()));
                }
                if find_mailbox(tx, mb.account, &new_name)?.is_some() {
                    return Err(StoreError::Exists(format!("mailbox {new_name}")));
                }
                tx.prepare_cached("UPDATE mailboxes SET name = ?2 WHERE id = ?1")?
                    .execute(params![id.0, new_name])?;
                Ok(mb.account)
            })
            .await?;
        self.publish(account, vec![Change::MailboxList]);
        Ok(())
    }

    async fn set_subscribed(&self, id: MailboxId, subscribed: bool) -> StoreResult<()> {
        self.write(move |tx, _| {
            let n = tx
                .prepare_cached("UPDATE mailboxes SET subscribed = ?2 WHERE id = ?1")?
                .execute(params![id.0, subscribed])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("mailbox {}", id.0)));
            }
            Ok(())
        })
        .await
    }

    async fn append_batch(
        &self,
        mailbox: MailboxId,
        messages: Vec<NewMessage>,
    ) -> StoreResult<Vec<Appended>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let inner = self.inner.clone();
        // Parse and write the blobs outside the write lock: both are the slow part.
        let prepared = tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(messages.len());
            for message in messages {
                let raw = normalize_line_ends(message.raw);
                let size = u32::try_from(raw.len())
                    .map_err(|_| StoreError::TooBig("messages are limited to 4 GiB".into()))?;
                let (structure, search) = casella_mime::parse(&raw).split();
                let structure_json =
                    serde_json::to_string(&structure).map_err(StoreError::internal)?;
                let (search_json, search_text_json) = crate::search_columns::to_columns(search)?;
                let blob = if raw.len() <= INLINE_MAX {
                    BlobDir::id_of(&raw)
                } else {
                    inner.blobs.put(&raw)?
                };
                let date = message.internal_date.unwrap_or_else(now_unix);
                out.push(Prepared {
                    raw,
                    size,
                    blob,
                    structure_json,
                    search_json,
                    search_text_json,
                    internal_date: date,
                    flags: flags_to_string(&message.flags),
                });
            }
            Ok::<_, StoreError>(out)
        })
        .await
        .map_err(StoreError::internal)??;
        let (appended, account) = self
            .write(move |tx, inner| {
                let mb = get_mailbox(tx, mailbox)?;
                let modseq = next_modseq(tx, mailbox)?;
                let mut uid = mb.uid_next.0;
                let mut appended = Vec::with_capacity(prepared.len());
                for p in &prepared {
                    if uid == u32::MAX {
                        return Err(StoreError::Invalid("mailbox has run out of UIDs".into()));
                    }
                    tx.prepare_cached(
                        "INSERT INTO blobs(hash, size, refcount, parsed, search, search_text)
                         VALUES (?1, ?2, 1, ?3, ?4, ?5)
                         ON CONFLICT(hash) DO UPDATE SET refcount = refcount + 1",
                    )?
                    .execute(params![
                        p.blob.0,
                        p.size,
                        p.structure_json,
                        p.search_json,
                        p.search_text_json
                    ])?;
                    inner.index_signal.note_added();
                    if p.raw.len() <= INLINE_MAX {
                        tx.prepare_cached(
                            "INSERT OR IGNORE INTO inline_blobs(hash, content) VALUES (?1, ?2)",
                        )?
                        .execute(params![p.blob.0, p.raw])?;
                    } else if !inner.blobs.exists(&p.blob)? {
                        // Under the write lock: the collector cannot remove the file now.
                        inner.blobs.put(&p.raw)?;
                    }
                    tx.prepare_cached(
                        "INSERT INTO messages(mailbox_id, uid, modseq, blob, size, internal_date,
                         flags)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![
                        mailbox.0,
                        uid,
                        modseq.0 as i64,
                        p.blob.0,
                        p.size,
                        p.internal_date,
                        p.flags
                    ])?;
                    appended.push(Appended {
                        mailbox,
                        uid_validity: mb.uid_validity,
                        uid: Uid(uid),
                        modseq,
                        size: p.size,
                    });
                    uid += 1;
                }
                tx.prepare_cached("UPDATE mailboxes SET uidnext = ?2 WHERE id = ?1")?
                    .execute(params![mailbox.0, uid])?;
                Ok((appended, mb.account))
            })
            .await?;
        self.publish(
            account,
            appended
                .iter()
                .map(|a| Change::Appended {
                    mailbox,
                    uid: a.uid,
                    modseq: a.modseq,
                })
                .collect(),
        );
        Ok(appended)
    }

    async fn changed_since(
        &self,
        mailbox: MailboxId,
        since: ModSeq,
    ) -> StoreResult<Vec<MessageSummary>> {
        self.read_changes(
            "SELECT uid, modseq, size, internal_date, flags, blob FROM messages
             WHERE mailbox_id = ?1 AND modseq > ?2 LIMIT ?3",
            mailbox,
            since,
            summary_from_row,
            |m| m.uid,
        )
        .await
    }

    async fn claim_recent(&self, mailbox: MailboxId, up_to: Uid) -> StoreResult<Uid> {
        self.write(move |tx, _| {
            let previous: u32 = tx
                .prepare_cached("SELECT recent_uid FROM mailboxes WHERE id = ?1")?
                .query_row([mailbox.0], |r| r.get(0))
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("mailbox {}", mailbox.0)))?;
            if up_to.0 > previous {
                tx.prepare_cached("UPDATE mailboxes SET recent_uid = ?2 WHERE id = ?1")?
                    .execute(params![mailbox.0, up_to.0])?;
            }
            Ok(Uid(previous))
        })
        .await
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
        let uids = uids.to_vec();
        let (pairs, account, changes) = self
            .write(move |tx, _| {
                let (pairs, account, mut changes) = copy_in_tx(tx, from, &uids, to)?;
                let moved: Vec<Uid> = pairs.iter().map(|(s, _)| *s).collect();
                changes.extend(expunge_in_tx(tx, from, moved)?);
                Ok((pairs, account, changes))
            })
            .await?;
        self.publish(account, changes);
        self.collect_blobs().await?;
        Ok(pairs)
    }

    async fn list_messages(&self, mailbox: MailboxId) -> StoreResult<Vec<MessageSummary>> {
        self.read(ReadSize::Large, move |c| {
            // Distinguish "no such mailbox" from "empty".
            get_mailbox(c, mailbox)?;
            let mut stmt = c.prepare_cached(
                "SELECT uid, modseq, size, internal_date, flags, blob FROM messages
                 WHERE mailbox_id = ?1 ORDER BY uid",
            )?;
            let rows = stmt.query_map([mailbox.0], summary_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn structures(
        &self,
        blobs: &[BlobId],
    ) -> StoreResult<Vec<Option<Arc<MessageStructure>>>> {
        with_cache(&self.inner.structures, blobs, |missing| {
            self.read(ReadSize::rows(missing.len()), move |c| {
                per_blob(
                    c,
                    "SELECT parsed FROM blobs WHERE hash = ?1",
                    &missing,
                    |r| {
                        serde_json::from_str::<MessageStructure>(&r.get::<_, String>(0)?)
                            .map_err(StoreError::internal)
                    },
                )
            })
        })
        .await
    }

    async fn search_fields(
        &self,
        blobs: &[BlobId],
        text: bool,
    ) -> StoreResult<Vec<Option<Arc<SearchFields>>>> {
        if !text {
            return with_cache(&self.inner.header_fields, blobs, |missing| {
                self.read(ReadSize::rows(missing.len()), move |c| {
                    per_blob(
                        c,
                        "SELECT search FROM blobs WHERE hash = ?1",
                        &missing,
                        |r| crate::search_columns::from_columns(&r.get::<_, String>(0)?, None),
                    )
                })
            })
            .await;
        }
        let blobs = blobs.to_vec();
        // Each row holds a message's whole text, to be parsed: never inline.
        self.read(ReadSize::Large, move |c| {
            per_blob(
                c,
                "SELECT search, search_text FROM blobs WHERE hash = ?1",
                &blobs,
                |r| {
                    let text: String = r.get(1)?;
                    crate::search_columns::from_columns(&r.get::<_, String>(0)?, Some(&text))
                        .map(Arc::new)
                },
            )
        })
        .await
    }

    async fn read_blob(&self, blob: &BlobId) -> StoreResult<Vec<u8>> {
        let id = blob.clone();
        if let Some(raw) = self
            .read(ReadSize::Small, move |c| stored_bytes(c, &id, false))
            .await?
        {
            return Ok(raw);
        }
        let _slot = self.read_slot().await?;
        let blob = blob.clone();
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.blobs.get(&blob))
            .await
            .map_err(StoreError::internal)?
    }

    async fn read_blobs(&self, blobs: &[BlobId]) -> StoreResult<Vec<Option<Vec<u8>>>> {
        let blobs = blobs.to_vec();
        let (blobs, found) = self
            .read(ReadSize::rows(blobs.len()), move |c| {
                let found = blobs
                    .iter()
                    .map(|b| stored_bytes(c, b, false).ok().flatten())
                    .collect();
                Ok((blobs, found))
            })
            .await?;
        self.fill_from_files(blobs, found, false).await
    }

    async fn read_headers(&self, blobs: &[BlobId]) -> StoreResult<Vec<Option<Arc<[u8]>>>> {
        with_cache(&self.inner.headers, blobs, |missing| async move {
            let (missing, found) = self
                .read(ReadSize::rows(missing.len()), move |c| {
                    let found = missing
                        .iter()
                        .map(|b| stored_bytes(c, b, true).ok().flatten())
                        .collect();
                    Ok((missing, found))
                })
                .await?;
            self.fill_from_files(missing, found, true).await
        })
        .await
    }

    async fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        op: FlagOp,
        flags: &FlagSet,
    ) -> StoreResult<Vec<FlagUpdate>> {
        let uids = uids.to_vec();
        let flags = flags.clone();
        let (updates, account) = self
            .write(move |tx, _| {
                let account = account_of_mailbox(tx, mailbox)?;
                let mut updates = Vec::new();
                let mut modseq: Option<ModSeq> = None;
                let mut get = tx.prepare_cached(
                    "SELECT flags FROM messages WHERE mailbox_id = ?1 AND uid = ?2",
                )?;
                let mut set = tx.prepare_cached(
                    "UPDATE messages SET flags = ?3, modseq = ?4 WHERE mailbox_id = ?1 AND uid = ?2",
                )?;
                for uid in uids {
                    let Some(current) = get
                        .query_row(params![mailbox.0, uid.0], |r| r.get::<_, String>(0))
                        .optional()?
                    else {
                        continue;
                    };
                    let current = flags_from_string(&current);
                    let new: FlagSet = match op {
                        FlagOp::Replace => flags.clone(),
                        FlagOp::Add => current.union(&flags).cloned().collect(),
                        FlagOp::Remove => current.difference(&flags).cloned().collect(),
                    };
                    if new == current {
                        continue;
                    }
                    // One MODSEQ for the whole command (RFC 7162 §3.1.3 allows it).
                    let m = match modseq {
                        Some(m) => m,
                        None => {
                            let m = next_modseq(tx, mailbox)?;
                            modseq = Some(m);
                            m
                        }
                    };
                    set.execute(params![mailbox.0, uid.0, flags_to_string(&new), m.0 as i64])?;
                    updates.push(FlagUpdate {
                        uid,
                        flags: new,
                        modseq: m,
                    });
                }
                Ok((updates, account))
            })
            .await?;
        self.publish(account, Change::from_flag_updates(mailbox, &updates));
        Ok(updates)
    }

    async fn expunge(
        &self,
        account: AccountId,
        messages: &[MessageRef],
    ) -> StoreResult<Vec<MessageRef>> {
        let messages = messages.to_vec();
        let (removed, changes) = self
            .write(move |tx, _| {
                let mut by_mailbox: HashMap<MailboxId, Vec<Uid>> = HashMap::new();
                for m in &messages {
                    by_mailbox.entry(m.mailbox).or_default().push(m.uid);
                }
                let mut removed = Vec::new();
                let mut changes = Vec::new();
                let mut boxes: Vec<_> = by_mailbox.into_iter().collect();
                boxes.sort_by_key(|(m, _)| *m);
                for (mailbox, uids) in boxes {
                    if get_mailbox(tx, mailbox)?.account != account {
                        return Err(StoreError::NotFound(format!("mailbox {}", mailbox.0)));
                    }
                    if let Some(c) = expunge_in_tx(tx, mailbox, uids)? {
                        if let Change::Expunged { uids, .. } = &c {
                            removed.extend(uids.iter().map(|&uid| MessageRef { mailbox, uid }));
                        }
                        changes.push(c);
                    }
                }
                Ok((removed, changes))
            })
            .await?;
        self.publish(account, changes);
        if !removed.is_empty() {
            self.collect_blobs().await?;
        }
        Ok(removed)
    }

    async fn copy(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> StoreResult<Vec<(Uid, Uid)>> {
        let uids = uids.to_vec();
        let (pairs, account, changes) = self
            .write(move |tx, _| copy_in_tx(tx, from, &uids, to))
            .await?;
        self.publish(account, changes);
        Ok(pairs)
    }

    async fn expunged_since(&self, mailbox: MailboxId, since: ModSeq) -> StoreResult<Vec<Uid>> {
        self.read_changes(
            "SELECT uid FROM expunged WHERE mailbox_id = ?1 AND modseq > ?2 LIMIT ?3",
            mailbox,
            since,
            |r| Ok(Uid(r.get(0)?)),
            |u| *u,
        )
        .await
    }

    async fn enqueue(&self, new: NewQueued) -> StoreResult<QueueId> {
        self.write(move |tx, _| {
            let recipients =
                serde_json::to_string(&new.recipients).map_err(StoreError::internal)?;
            let now = now_unix();
            tx.prepare_cached(
                "INSERT INTO queue(sender, account_id, recipients, message, envid, ret,
                 created, expires, next_attempt)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?7)",
            )?
            .execute(params![
                new.sender,
                new.account.map(|a| a.0),
                recipients,
                new.message,
                new.envid,
                new.ret,
                now,
                new.expires
            ])?;
            Ok(QueueId(tx.last_insert_rowid()))
        })
        .await
    }

    async fn queue_claim(&self, now: i64, lease: i64, limit: usize) -> StoreResult<Vec<Queued>> {
        self.write(move |tx, _| {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {QUEUE_COLUMNS} FROM queue
                 WHERE next_attempt <= ?1 AND (claimed_until IS NULL OR claimed_until <= ?1)
                 ORDER BY next_attempt, id LIMIT ?2"
            ))?;
            let due: Vec<Queued> = stmt
                .query_map(params![now, limit as i64], queued_from_row)?
                .collect::<Result<_, _>>()?;
            let mut due = due;
            for q in &mut due {
                tx.prepare_cached("UPDATE queue SET claimed_until = ?2 WHERE id = ?1")?
                    .execute(params![q.id.0, now + lease])?;
                q.claimed_until = Some(now + lease);
            }
            Ok(due)
        })
        .await
    }

    async fn queue_release_claims(&self) -> StoreResult<()> {
        // One node owns the embedded store: every claim is ours.
        self.write(|tx, _| {
            tx.prepare_cached(
                "UPDATE queue SET claimed_until = NULL WHERE claimed_until IS NOT NULL",
            )?
            .execute([])?;
            Ok(())
        })
        .await
    }

    async fn queue_next_attempt(&self) -> StoreResult<Option<i64>> {
        self.read(ReadSize::Small, |c| {
            Ok(
                // In index order, stopping at the first unclaimed entry: cheap
                // enough for the runner to ask every second.
                c.prepare_cached(
                    "SELECT next_attempt FROM queue WHERE claimed_until IS NULL
                     ORDER BY next_attempt LIMIT 1",
                )?
                .query_row([], |r| r.get(0))
                .optional()?,
            )
        })
        .await
    }

    async fn queue_list(&self) -> StoreResult<Vec<Queued>> {
        self.read(ReadSize::Large, |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {QUEUE_COLUMNS} FROM queue ORDER BY created, id"
            ))?;
            Ok(stmt
                .query_map([], queued_from_row)?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn queue_message(&self, id: QueueId) -> StoreResult<Vec<u8>> {
        self.read(ReadSize::Large, move |c| {
            c.prepare_cached("SELECT message FROM queue WHERE id = ?1")?
                .query_row([id.0], |r| r.get(0))
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("queue entry {}", id.0)))
        })
        .await
    }

    async fn queue_update(&self, entry: &Queued) -> StoreResult<()> {
        let e = entry.clone();
        self.write(move |tx, _| {
            let recipients = serde_json::to_string(&e.recipients).map_err(StoreError::internal)?;
            let n = tx
                .prepare_cached(
                    "UPDATE queue SET recipients = ?2, next_attempt = ?3, attempts = ?4,
                 last_error = ?5,
                 expires = ?6, claimed_until = NULL WHERE id = ?1",
                )?
                .execute(params![
                    e.id.0,
                    recipients,
                    e.next_attempt,
                    e.attempts,
                    e.last_error,
                    e.expires
                ])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("queue entry {}", e.id.0)));
            }
            Ok(())
        })
        .await
    }

    async fn queue_retry(&self, id: Option<QueueId>, now: i64) -> StoreResult<QueueRetried> {
        self.write(move |tx, _| {
            let id = id.map(|i| i.0);
            let due = tx
                .prepare_cached(
                    "UPDATE queue SET next_attempt = ?2
                     WHERE (?1 IS NULL OR id = ?1)
                       AND (claimed_until IS NULL OR claimed_until <= ?2)",
                )?
                .execute(params![id, now])? as u64;
            let in_delivery: i64 = tx
                .prepare_cached(
                    "SELECT count(*) FROM queue
                     WHERE (?1 IS NULL OR id = ?1) AND claimed_until > ?2",
                )?
                .query_row(params![id, now], |r| r.get(0))?;
            if let Some(id) = id
                && due == 0
                && in_delivery == 0
            {
                return Err(StoreError::NotFound(format!("queue entry {id}")));
            }
            Ok(QueueRetried {
                due,
                in_delivery: in_delivery as u64,
            })
        })
        .await
    }

    async fn queue_remove(&self, id: QueueId) -> StoreResult<()> {
        self.write(move |tx, _| {
            if tx
                .prepare_cached("DELETE FROM queue WHERE id = ?1")?
                .execute([id.0])?
                == 0
            {
                return Err(StoreError::NotFound(format!("queue entry {}", id.0)));
            }
            Ok(())
        })
        .await
    }

    async fn lock_maildrop(&self, account: AccountId) -> StoreResult<MaildropLock> {
        let mut held = self
            .inner
            .maildrops
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !held.insert(account) {
            return Err(StoreError::InUse(
                "maildrop is locked by another session".into(),
            ));
        }
        Ok(MaildropLock::new(Box::new(MaildropGuard {
            inner: self.inner.clone(),
            account,
        })))
    }

    fn subscribe(&self, account: AccountId) -> broadcast::Receiver<Change> {
        self.inner.feed.subscribe(account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with(dir.path(), Some(true)).unwrap();
        crate::conformance::run_all(Arc::new(store)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_without_the_text_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with(dir.path(), Some(false)).unwrap();
        crate::conformance::run_all(Arc::new(store)).await;
    }

    #[tokio::test]
    async fn messages_kept_in_the_database_survive_the_upgrade_from_version_12() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let (_, inbox) = account_with_inbox(&store, "old@example.org").await;
        // Several overflow pages: the case the old table handled badly.
        let raw = format!("Subject: v12\r\n\r\n{}\r\n", "x".repeat(20_000)).into_bytes();
        store
            .append(
                inbox.id,
                crate::NewMessage {
                    raw: raw.clone(),
                    internal_date: None,
                    flags: Default::default(),
                },
            )
            .await
            .unwrap();
        drop(store);
        // The table as version 12 had it.
        {
            let c = Connection::open(dir.path().join("store.db")).unwrap();
            c.execute_batch(
                "CREATE TABLE v12 (hash TEXT PRIMARY KEY, content BLOB NOT NULL) WITHOUT ROWID;
                 INSERT INTO v12 SELECT hash, content FROM inline_blobs;
                 DROP TABLE inline_blobs;
                 ALTER TABLE v12 RENAME TO inline_blobs;
                 PRAGMA user_version = 12;",
            )
            .unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let list = store.list_messages(inbox.id).await.unwrap();
        assert_eq!(store.read_blob(&list[0].blob).await.unwrap(), raw);
        let sql: String = store
            .read(ReadSize::Small, |c| {
                Ok(c.query_row(
                    "SELECT sql FROM sqlite_master WHERE name = 'inline_blobs'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert!(!sql.to_uppercase().contains("WITHOUT ROWID"), "{sql}");
    }

    #[tokio::test]
    async fn queue_entries_keep_their_ids_and_ids_stay_unique_after_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let (account, _) = account_with_inbox(&store, "old@example.org").await;
        let new = || NewQueued {
            sender: "old@example.org".into(),
            account: Some(account.id),
            recipients: vec![QueuedRecipient {
                address: "far@remote.example".into(),
                orcpt: None,
                notify: None,
                state: RecipientState::Pending,
                last_reply: None,
            }],
            message: b"Subject: q\r\n\r\nbody\r\n".to_vec(),
            envid: None,
            ret: None,
            expires: now_unix() + 3600,
        };
        let first = store.enqueue(new()).await.unwrap();
        let second = store.enqueue(new()).await.unwrap();
        store.queue_claim(now_unix() + 1, 600, 1).await.unwrap();
        drop(store);
        // The table as it was before AUTOINCREMENT (this must stay the last
        // migration for the version set here).
        let before = schema::MIGRATIONS
            .iter()
            .position(|m| m.contains("queue_ids_never_reused"))
            .unwrap();
        {
            let c = Connection::open(dir.path().join("store.db")).unwrap();
            c.execute_batch(&format!(
                "CREATE TABLE old_queue (id INTEGER PRIMARY KEY, sender TEXT NOT NULL,
                   account_id INTEGER, recipients TEXT NOT NULL, message BLOB NOT NULL,
                   envid TEXT, ret TEXT, created INTEGER NOT NULL, expires INTEGER NOT NULL,
                   next_attempt INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                   last_error TEXT, claimed_until INTEGER);
                 INSERT INTO old_queue SELECT * FROM queue;
                 DROP TABLE queue;
                 ALTER TABLE old_queue RENAME TO queue;
                 CREATE INDEX queue_due ON queue(next_attempt);
                 DELETE FROM sqlite_sequence WHERE name = 'queue';
                 PRAGMA user_version = {before};"
            ))
            .unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let list = store.queue_list().await.unwrap();
        assert_eq!(
            list.iter().map(|q| q.id).collect::<Vec<_>>(),
            vec![first, second]
        );
        assert!(list[0].claimed_until.is_some(), "claims are kept");
        // The highest goes; its id is not given again.
        store.queue_remove(second).await.unwrap();
        let third = store.enqueue(new()).await.unwrap();
        assert!(third > second, "{third:?} after {second:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn search_fields_move_out_of_the_structure_on_upgrade_from_version_8() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with(dir.path(), Some(true)).unwrap();
        let (_, inbox) = account_with_inbox(&store, "old@example.org").await;
        let raw = b"From: Ann <ann@example.org>\r\nSubject: from version 8\r\n\r\nold needle\r\n";
        store
            .append(
                inbox.id,
                crate::NewMessage {
                    raw: raw.to_vec(),
                    internal_date: None,
                    flags: Default::default(),
                },
            )
            .await
            .unwrap();
        drop(store);
        // Make the row as version 8 stored it: everything in `parsed`.
        {
            let c = Connection::open(dir.path().join("store.db")).unwrap();
            c.execute_batch(
                "UPDATE blobs SET parsed = json_set(parsed, '$.search',
                     json_set(json(search), '$.header_text', json_extract(search_text, '$[0]'),
                                            '$.body_text', json_extract(search_text, '$[1]')));
                 DROP TRIGGER search_blob_added;
                 DROP TRIGGER search_blob_removed;
                 DROP TABLE search_pending;
                 DROP TABLE search_removed;
                 CREATE VIRTUAL TABLE blob_fields USING fts5(
                     from_addr, to_addr, cc_addr, bcc_addr, subject, tokenize = 'trigram');
                 CREATE VIRTUAL TABLE blob_text USING fts5(header, body, tokenize = 'trigram');
                 CREATE TRIGGER blob_text_delete AFTER DELETE ON blobs BEGIN
                     DELETE FROM blob_fields WHERE rowid = old.rowid;
                     DELETE FROM blob_text WHERE rowid = old.rowid;
                 END;
                 ALTER TABLE blobs DROP COLUMN search;
                 ALTER TABLE blobs DROP COLUMN search_text;
                 DROP TABLE inline_blobs;
                 PRAGMA user_version = 8;",
            )
            .unwrap();
            std::fs::remove_file(dir.path().join("search.db")).unwrap();
        }
        let store = SqliteStore::open_with(dir.path(), Some(true)).unwrap();
        let list = store.list_messages(inbox.id).await.unwrap();
        let blobs = [list[0].blob.clone()];
        let expected = casella_mime::parse(raw).split();
        let structure = store.structures(&blobs).await.unwrap().remove(0).unwrap();
        assert_eq!(*structure, expected.0);
        let fields = store
            .search_fields(&blobs, true)
            .await
            .unwrap()
            .remove(0)
            .unwrap();
        assert_eq!(*fields, expected.1);
        let headers = store
            .search_fields(&blobs, false)
            .await
            .unwrap()
            .remove(0)
            .unwrap();
        assert_eq!(headers.subject, expected.1.subject);
        assert!(headers.body_text.is_empty());
        let parsed: String = store
            .read(ReadSize::Small, |c| {
                Ok(c.prepare_cached("SELECT parsed FROM blobs")?
                    .query_row([], |r| r.get(0))?)
            })
            .await
            .unwrap();
        assert!(!parsed.contains("old needle"), "{parsed}");
        let search: String = store
            .read(ReadSize::Small, |c| {
                Ok(c.prepare_cached("SELECT search FROM blobs")?
                    .query_row([], |r| r.get(0))?)
            })
            .await
            .unwrap();
        assert!(!search.contains("old needle"), "{search}");
        let search: String = store
            .read(ReadSize::Small, |c| {
                Ok(c.prepare_cached("SELECT search FROM blobs")?
                    .query_row([], |r| r.get(0))?)
            })
            .await
            .unwrap();
        assert!(!search.contains("old needle"), "{search}");
        // The old index is gone; the new one reads the old message and new ones.
        store
            .append(
                inbox.id,
                crate::NewMessage {
                    raw: b"Subject: new\r\n\r\nfresh needle\r\n".to_vec(),
                    internal_date: None,
                    flags: Default::default(),
                },
            )
            .await
            .unwrap();
        wait_indexed(&store).await;
        assert_eq!(
            body_uids(&store, inbox.id, "needle").await,
            Some((vec![1, 2], vec![]))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_changes_since_a_modseq_come_back_whole_and_in_uid_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let (a, inbox) = account_with_inbox(&store, "many@example.org").await;
        let n = SMALL_READ_ROWS + 44;
        let messages = (0..n)
            .map(|i| crate::NewMessage {
                raw: format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes(),
                internal_date: None,
                flags: Default::default(),
            })
            .collect();
        store.append_batch(inbox.id, messages).await.unwrap();
        let before = store.mailbox(inbox.id).await.unwrap().highest_modseq;
        let uids: Vec<Uid> = store
            .list_messages(inbox.id)
            .await
            .unwrap()
            .iter()
            .map(|m| m.uid)
            .collect();
        let seen: FlagSet = [Flag::Seen].into_iter().collect();
        // One MODSEQ for all: more rows than an inline read takes.
        store
            .store_flags(inbox.id, &uids, FlagOp::Add, &seen)
            .await
            .unwrap();
        let changed = store.changed_since(inbox.id, before).await.unwrap();
        assert_eq!(changed.iter().map(|m| m.uid).collect::<Vec<_>>(), uids);
        // A few: the inline read.
        let few = store
            .changed_since(inbox.id, ModSeq(before.0 - 1))
            .await
            .unwrap();
        assert_eq!(few.len(), n);
        let mid = store.mailbox(inbox.id).await.unwrap().highest_modseq;
        store
            .store_flags(inbox.id, &uids[..3], FlagOp::Remove, &seen)
            .await
            .unwrap();
        let three = store.changed_since(inbox.id, mid).await.unwrap();
        assert_eq!(three.iter().map(|m| m.uid).collect::<Vec<_>>(), uids[..3]);
        // Expunged in reverse order, answered in UID order either way.
        let last = store.mailbox(inbox.id).await.unwrap().highest_modseq;
        let refs: Vec<MessageRef> = uids
            .iter()
            .rev()
            .map(|&uid| MessageRef {
                mailbox: inbox.id,
                uid,
            })
            .collect();
        store.expunge(a.id, &refs[..2]).await.unwrap();
        let two = store.expunged_since(inbox.id, last).await.unwrap();
        assert_eq!(two, vec![uids[n - 2], uids[n - 1]]);
        store.expunge(a.id, &refs[2..]).await.unwrap();
        assert_eq!(store.expunged_since(inbox.id, last).await.unwrap(), uids);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_messages_live_in_the_database_and_large_ones_in_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let (a, inbox) = account_with_inbox(&store, "sizes@example.org").await;
        let small = b"Subject: small\r\n\r\nkept inline\r\n".to_vec();
        let mut large = b"Subject: large\r\n\r\n".to_vec();
        large.extend(std::iter::repeat_n(b'x', INLINE_MAX));
        large.extend_from_slice(b"\r\n");
        for raw in [&small, &large] {
            store
                .append(
                    inbox.id,
                    crate::NewMessage {
                        raw: raw.clone(),
                        internal_date: None,
                        flags: Default::default(),
                    },
                )
                .await
                .unwrap();
        }
        let files = |d: &Path| {
            walk(&d.join("blobs"))
                .into_iter()
                .filter(|p| p.is_file())
                .count()
        };
        assert_eq!(files(dir.path()), 1, "only the large message is a file");
        drop(store);
        let store = SqliteStore::open(dir.path()).unwrap();
        let list = store.list_messages(inbox.id).await.unwrap();
        let blobs: Vec<BlobId> = list.iter().map(|m| m.blob.clone()).collect();
        assert_eq!(store.read_blob(&blobs[0]).await.unwrap(), small);
        assert_eq!(store.read_blob(&blobs[1]).await.unwrap(), large);
        let headers = store.read_headers(&blobs).await.unwrap();
        assert_eq!(headers[0].as_deref(), Some(&b"Subject: small\r\n\r\n"[..]));
        assert_eq!(headers[1].as_deref(), Some(&b"Subject: large\r\n\r\n"[..]));
        // A batch mixing a database row, a file and an unknown blob.
        let mut batch = blobs.clone();
        batch.push(BlobId("0".repeat(64)));
        let read = store.read_blobs(&batch).await.unwrap();
        assert_eq!(read, vec![Some(small.clone()), Some(large.clone()), None]);
        assert!(store.read_blob(&batch[2]).await.is_err());
        // Expunged and collected: neither row nor file stays.
        let refs: Vec<MessageRef> = list
            .iter()
            .map(|m| MessageRef {
                mailbox: inbox.id,
                uid: m.uid,
            })
            .collect();
        store.expunge(a.id, &refs).await.unwrap();
        store.collect_blobs().await.unwrap();
        assert_eq!(files(dir.path()), 0);
        let rows: i64 = store
            .read(ReadSize::Small, |c| {
                Ok(c.prepare_cached("SELECT count(*) FROM inline_blobs")?
                    .query_row([], |r| r.get(0))?)
            })
            .await
            .unwrap();
        assert_eq!(rows, 0);
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    out.extend(walk(&p));
                }
                out.push(p);
            }
        }
        out
    }

    /// Waits (up to 20 s) until the text index has read every stored message.
    /// A new account at `address` and its INBOX.
    async fn account_with_inbox(store: &SqliteStore, address: &str) -> (Account, Mailbox) {
        let a = store
            .create_account(crate::NewAccount {
                address: address.into(),
                password_hash: String::new(),
                is_admin: false,
            })
            .await
            .unwrap();
        let inbox = store.mailbox_by_name(a.id, "INBOX").await.unwrap().unwrap();
        (a, inbox)
    }

    async fn wait_indexed(store: &SqliteStore) {
        for _ in 0..400 {
            if store.search_index_backlog().await.unwrap() == Some(0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the text index did not catch up");
    }

    async fn append_text(store: &SqliteStore, mailbox: MailboxId, raw: &[u8]) -> Uid {
        store
            .append(
                mailbox,
                crate::NewMessage {
                    raw: raw.to_vec(),
                    internal_date: None,
                    flags: Default::default(),
                },
            )
            .await
            .unwrap()
            .uid
    }

    /// The index's answer for `needle` in BODY, as UIDs of `mailbox`.
    async fn body_uids(
        store: &SqliteStore,
        mailbox: MailboxId,
        needle: &str,
    ) -> Option<(Vec<u32>, Vec<u32>)> {
        let found = store
            .text_candidates(mailbox, TextField::Body, needle)
            .await
            .unwrap()?;
        Some(crate::conformance::candidate_uids(store, mailbox, &found).await)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_text_index_catches_up_when_turned_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with(dir.path(), Some(false)).unwrap();
        let (_, inbox) = account_with_inbox(&store, "late@example.org").await;
        append_text(
            &store,
            inbox.id,
            b"Subject: before the index\r\n\r\nneedle in a haystack\r\n",
        )
        .await;
        let body = crate::TextField::Body;
        assert_eq!(
            store
                .text_candidates(inbox.id, body, "needle")
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.search_index_backlog().await.unwrap(), None);
        drop(store);
        let store = SqliteStore::open_with(dir.path(), Some(true)).unwrap();
        wait_indexed(&store).await;
        assert_eq!(
            body_uids(&store, inbox.id, "needle").await,
            Some((vec![1], vec![]))
        );
        drop(store);
        // Opened by another command (no indexer): what it stores waits.
        let store = SqliteStore::open(dir.path()).unwrap();
        append_text(
            &store,
            inbox.id,
            b"Subject: later\r\n\r\nanother needle\r\n",
        )
        .await;
        assert_eq!(
            body_uids(&store, inbox.id, "needle").await,
            Some((vec![1], vec![2]))
        );
        assert_eq!(store.search_index_backlog().await.unwrap(), Some(1));
        drop(store);
        // The server again: it indexes what the other command stored.
        let store = SqliteStore::open_with(dir.path(), Some(true)).unwrap();
        wait_indexed(&store).await;
        assert_eq!(
            body_uids(&store, inbox.id, "needle").await,
            Some((vec![1, 2], vec![]))
        );
        drop(store);
        // Off: the index's file goes.
        let store = SqliteStore::open_with(dir.path(), Some(false)).unwrap();
        assert!(!dir.path().join("search.db").exists());
        assert_eq!(
            store
                .text_candidates(inbox.id, body, "needle")
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_damaged_search_column_does_not_stop_the_indexer() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open_with(dir.path(), Some(true)).unwrap());
        let store = SqliteStore::open(dir.path()).unwrap();
        let (_, inbox) = account_with_inbox(&store, "dmg@example.org").await;
        append_text(&store, inbox.id, b"Subject: one\r\n\r\ndamaged needle\r\n").await;
        append_text(&store, inbox.id, b"Subject: two\r\n\r\nsound needle\r\n").await;
        drop(store);
        {
            let c = Connection::open(dir.path().join("store.db")).unwrap();
            c.execute_batch(
                "UPDATE blobs SET search = '{broken', search_text = 'not json'
                 WHERE search_text LIKE '%damaged%'",
            )
            .unwrap();
        }
        let store = SqliteStore::open_with(dir.path(), Some(true)).unwrap();
        wait_indexed(&store).await;
        assert_eq!(
            body_uids(&store, inbox.id, "needle").await,
            Some((vec![2], vec![]))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_index_queue_is_read_from_the_mailbox_side() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open_with(dir.path(), Some(true)).unwrap());
        // Another command's store: nothing indexes, the queue grows.
        let store = SqliteStore::open(dir.path()).unwrap();
        let (a, inbox) = account_with_inbox(&store, "q@example.org").await;
        let other = store.create_mailbox(a.id, "Other", None).await.unwrap();
        let batch = |n: std::ops::Range<usize>| {
            n.map(|i| crate::NewMessage {
                raw: format!("Subject: {i}\r\n\r\nqueued {i}\r\n").into_bytes(),
                internal_date: None,
                flags: Default::default(),
            })
            .collect::<Vec<_>>()
        };
        store.append_batch(other.id, batch(0..2_100)).await.unwrap();
        store
            .append_batch(inbox.id, batch(5_000..5_003))
            .await
            .unwrap();
        assert_eq!(store.search_index_backlog().await.unwrap(), Some(2_103));
        assert_eq!(
            body_uids(&store, inbox.id, "queued").await,
            Some((vec![], vec![1, 2, 3]))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_text_index_follows_appends_and_expunges() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with(dir.path(), Some(true)).unwrap();
        let (a, inbox) = account_with_inbox(&store, "ix@example.org").await;
        for i in 0..200 {
            let word = if i % 10 == 0 { "marmalade" } else { "porridge" };
            let raw =
                format!("From: n{i}@example.org\r\nSubject: breakfast {i}\r\n\r\n{word} today\r\n");
            append_text(&store, inbox.id, raw.as_bytes()).await;
        }
        // Whatever the indexer has read by now, indexed matches and unindexed
        // messages together cover the matches, and indexed matches are real.
        let (matched, unindexed) = body_uids(&store, inbox.id, "MARMALADE").await.unwrap();
        let expected: Vec<u32> = (0..200).filter(|i| i % 10 == 0).map(|i| i + 1).collect();
        for u in &matched {
            assert!(expected.contains(u), "{u} matched");
        }
        for u in &expected {
            assert!(matched.contains(u) || unindexed.contains(u), "{u} missed");
        }
        wait_indexed(&store).await;
        assert_eq!(
            body_uids(&store, inbox.id, "MARMALADE").await,
            Some((expected, vec![]))
        );
        // Expunged and collected: the entry goes with the blob.
        let doomed: Vec<MessageRef> = (1..=200)
            .filter(|u| u % 2 == 1)
            .map(|u| MessageRef {
                mailbox: inbox.id,
                uid: Uid(u),
            })
            .collect();
        store.expunge(a.id, &doomed).await.unwrap();
        store.collect_blobs().await.unwrap();
        let entries = || {
            let c = Connection::open(dir.path().join("search.db")).unwrap();
            c.query_row("SELECT count(*) FROM docs", [], |r| r.get::<_, i64>(0))
                .unwrap()
        };
        for _ in 0..400 {
            if entries() == 100 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(entries(), 100);
        let found = store
            .text_candidates(inbox.id, TextField::Subject, "breakfast 1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.matched.len(), 56, "{found:?}");
        let (left, _) = crate::conformance::candidate_uids(&store, inbox.id, &found).await;
        assert!(left.iter().all(|u| u % 2 == 0), "{left:?}");
        assert!(left.contains(&2) && left.contains(&200));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_by_another_process_reach_subscribers() {
        let dir = tempfile::tempdir().unwrap();
        // Two stores on one directory stand for the server and `casella deliver`.
        let server = SqliteStore::open(dir.path()).unwrap();
        let other = SqliteStore::open(dir.path()).unwrap();
        let a = server
            .create_account(NewAccount {
                address: "w@example.org".into(),
                password_hash: "x".into(),
                is_admin: false,
            })
            .await
            .unwrap();
        let mut rx = server.subscribe(a.id);
        let ap = other
            .deliver(a.id, b"Subject: x\r\n\r\ny\r\n".to_vec())
            .await
            .unwrap();
        let deadline = std::time::Duration::from_secs(5);
        loop {
            let change = tokio::time::timeout(deadline, rx.recv())
                .await
                .unwrap()
                .unwrap();
            if change
                == (Change::MailboxChanged {
                    mailbox: ap.mailbox,
                })
            {
                break;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_in_a_batch_does_not_undo_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let a = store
            .create_account(NewAccount {
                address: "batch@example.org".into(),
                password_hash: "x".into(),
                is_admin: false,
            })
            .await
            .unwrap();
        // Writes issued together are committed together; half of them fail.
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let name = if i % 2 == 0 {
                    format!("box{i}")
                } else {
                    "INBOX".to_string()
                };
                store.create_mailbox(a.id, &name, None).await
            }));
        }
        let mut created = 0;
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok(_) => {
                    assert_eq!(i % 2, 0);
                    created += 1;
                }
                Err(StoreError::Exists(_)) => assert_eq!(i % 2, 1),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(created, 20);
        drop(store);
        let reopened = SqliteStore::open(dir.path()).unwrap();
        let boxes = reopened.list_mailboxes(a.id).await.unwrap();
        assert_eq!(
            boxes.len(),
            DEFAULT_MAILBOXES.len() + 20,
            "every successful write is durable"
        );
    }

    #[tokio::test]
    async fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (uid, validity) = {
            let store = SqliteStore::open(dir.path()).unwrap();
            let a = store
                .create_account(NewAccount {
                    address: "u@example.org".into(),
                    password_hash: "x".into(),
                    is_admin: false,
                })
                .await
                .unwrap();
            let ap = store
                .deliver(a.id, b"Subject: hi\r\n\r\nbody\r\n".to_vec())
                .await
                .unwrap();
            (ap.uid, ap.uid_validity)
        };
        let store = SqliteStore::open(dir.path()).unwrap();
        let a = store
            .account_by_address("U@example.org")
            .await
            .unwrap()
            .unwrap();
        let inbox = store.mailbox_by_name(a.id, "inbox").await.unwrap().unwrap();
        assert_eq!(inbox.uid_validity, validity);
        let msgs = store.list_messages(inbox.id).await.unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].uid, uid);
        assert_eq!(
            store.read_blob(&msgs[0].blob).await.unwrap(),
            b"Subject: hi\r\n\r\nbody\r\n"
        );
    }
}
