//! The SEARCH text index of the embedded store: trigram FTS5 tables in a
//! database file of their own (`search.db`), filled in the background.
//!
//! Storing a message costs its delivery one row in `search_pending` (a trigger
//! on `blobs`), nothing more. A thread at the lowest CPU priority
//! (`SCHED_IDLE`: it runs when nothing else wants the CPU) reads pending blobs'
//! decoded text and indexes it into `search.db`. Its own file means its writes
//! never hold the store's write lock, so deliveries never wait for it.
//!
//! A search asks the index which messages contain the text and, besides, which
//! messages it has not indexed yet; the caller checks those itself. Answers are
//! exact whether or not the index has caught up.
//!
//! Blobs are content-addressed, so an entry keyed by hash is never stale. `docs`
//! (hash → FTS rowid) says which blobs are indexed; a pending row whose hash is
//! in `docs` is done, and such rows are deleted later, in batches, by a write on
//! the store's writer thread. Blobs removed from the store are queued in
//! `search_removed`; their entries go once no blob with that hash is left.
//!
//! Invariant (what makes answers exact): every blob whose hash is not in `docs`
//! has a row in `search_pending`. Rows are added in the same transaction as the
//! blob, and removed only once `search.db` has committed the blob's entry, or
//! when the blob itself goes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Inner, WriteJob, open_connection};
use crate::error::{StoreError, StoreResult};
use crate::types::{BlobId, MailboxId, TextCandidates, TextField};

/// The index's file, beside `store.db`.
const FILE: &str = "search.db";
/// The schema name the index is attached under on reader connections.
pub(super) const SCHEMA: &str = "fts";

/// In `store.db`: queue every new blob, and every removed one.
const TRIGGERS_ON: &str = r#"
    CREATE TRIGGER IF NOT EXISTS search_blob_added AFTER INSERT ON blobs BEGIN
        INSERT OR IGNORE INTO search_pending(hash) VALUES (new.hash);
    END;
    CREATE TRIGGER IF NOT EXISTS search_blob_removed AFTER DELETE ON blobs BEGIN
        DELETE FROM search_pending WHERE hash = old.hash;
        INSERT OR IGNORE INTO search_removed(hash) VALUES (old.hash);
    END;
"#;

const TRIGGERS_OFF: &str = r#"
    DROP TRIGGER IF EXISTS search_blob_added;
    DROP TRIGGER IF EXISTS search_blob_removed;
    DELETE FROM search_pending;
    DELETE FROM search_removed;
"#;

/// In `search.db`. Contentless tables: the text is in `store.db` already, the
/// index keeps only the trigrams and their positions. The text is indexed as
/// SEARCH folds it (`casella_mime::search_fold`), and needles are folded the
/// same way, so the trigrams are case-sensitive: SQLite's own case folding is
/// not SEARCH's (it folds "ſ" to "s", SEARCH does not; SEARCH folds "İ" to
/// "i" and a combining dot, SQLite leaves it), and with it the index missed
/// messages SEARCH matches and found some it does not.
const INDEX_SCHEMA: &str = r#"
    CREATE TABLE IF NOT EXISTS docs (
        id   INTEGER PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE
    );
    CREATE VIRTUAL TABLE IF NOT EXISTS field_index USING fts5(
        from_addr, to_addr, cc_addr, bcc_addr, subject,
        content = '', contentless_delete = 1,
        tokenize = 'trigram case_sensitive 1'
    );
    CREATE VIRTUAL TABLE IF NOT EXISTS text_index USING fts5(
        header, body,
        content = '', contentless_delete = 1,
        tokenize = 'trigram case_sensitive 1'
    );
"#;

/// `search.db`'s format, kept as its `user_version`: 1 holds text as
/// `index_text` makes it (0, before, the text as it is, folded by SQLite).
/// The server builds an index of another format again.
const INDEX_VERSION: i64 = 1;

/// Up to this many queued blobs, a search finds a mailbox's unindexed
/// messages from the queue; beyond, from the mailbox.
const SHORT_QUEUE: i64 = 2_000;
/// Blobs indexed per `search.db` transaction.
const BATCH: usize = 64;
/// Done queue rows are deleted once this many have gathered, or `CLEANUP_EVERY`
/// after the last deletion.
const CLEANUP_AT: usize = 1024;
const CLEANUP_EVERY: Duration = Duration::from_secs(1);
/// The indexer works once the store's writer has committed nothing for this
/// long (so deliveries keep the disk and the CPU to themselves under load)…
const QUIET: Duration = Duration::from_millis(50);
/// …or when it has waited this long for such a pause.
const MAX_DEFER: Duration = Duration::from_secs(5);
/// The indexer looks for work this often even unwoken (another process, such
/// as `casella deliver`, may have stored mail).
const POLL: Duration = Duration::from_secs(1);

/// `search.db`'s path for a store whose database is at `db_path`.
pub(super) fn index_path(db_path: &Path) -> PathBuf {
    db_path.with_file_name(FILE)
}

fn trigger_exists(conn: &Connection) -> StoreResult<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master
                       WHERE type = 'trigger' AND name = 'search_blob_added')",
        [],
        |r| r.get(0),
    )?)
}

fn remove_index_files(path: &Path) -> StoreResult<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(PathBuf::from(p)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Applies the server's setting before the store's threads start: `Some(true)`
/// turns the index on (queueing every stored blob when it was off or its file
/// is gone), `Some(false)` off (dropping it), `None` leaves it. Says whether it
/// is on.
pub(super) fn configure(
    store: &mut Connection,
    db_path: &Path,
    setting: Option<bool>,
) -> StoreResult<bool> {
    let path = index_path(db_path);
    let was_on = trigger_exists(store)? && path.exists();
    match setting {
        Some(true) if was_on && index_version(&path).ok() == Some(INDEX_VERSION) => Ok(true),
        Some(true) => {
            remove_index_files(&path)?;
            open_index(&path)?.pragma_update(None, "user_version", INDEX_VERSION)?;
            let tx = store.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(TRIGGERS_OFF)?;
            tx.execute_batch(TRIGGERS_ON)?;
            tx.execute_batch("INSERT OR IGNORE INTO search_pending(hash) SELECT hash FROM blobs")?;
            tx.commit()?;
            Ok(true)
        }
        Some(false) => {
            store.execute_batch(TRIGGERS_OFF)?;
            remove_index_files(&path)?;
            Ok(false)
        }
        None => Ok(was_on),
    }
}

/// The format of the index at `path` (see `INDEX_VERSION`).
fn index_version(path: &Path) -> StoreResult<i64> {
    Ok(open_connection(path)?.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Opens `search.db` (creating its tables), as durable as the store: an entry
/// is on disk before its queue row may go.
fn open_index(path: &Path) -> StoreResult<Connection> {
    let conn = open_connection(path)?;
    conn.execute_batch(INDEX_SCHEMA)?;
    Ok(conn)
}

/// Makes the index readable on a reader connection of the store.
pub(super) fn attach(conn: &Connection, db_path: &Path) -> StoreResult<()> {
    let path = index_path(db_path);
    conn.execute(
        &format!("ATTACH DATABASE ?1 AS {SCHEMA}"),
        [path.to_string_lossy()],
    )?;
    Ok(())
}

/// Text as the index holds it: folded as SEARCH folds it (see INDEX_SCHEMA),
/// and with NUL as U+FFFD. The trigram tokenizer skips NUL, joining the text
/// on either side of it ("tea", NUL, "m" would match "team"); U+FFFD separates
/// them, and no needle the index answers holds either (see `answers`).
fn index_text(text: &str) -> String {
    casella_mime::search_fold(text).replace('\0', "\u{FFFD}")
}

/// Whether the trigram index can answer a search for `needle`: substrings of
/// three characters or more, exactly, folded as SEARCH folds them; asked only
/// for ASCII needles without control characters.
pub(super) fn answers(needle: &str) -> bool {
    needle.chars().count() >= 3 && needle.is_ascii() && !needle.chars().any(|c| c.is_control())
}

/// The blobs whose `field` contains `needle`, as far as the index knows, and
/// the blobs of `mailbox` it does not know yet. Runs on a reader connection
/// with the index attached.
pub(super) fn candidates(
    c: &Connection,
    mailbox: MailboxId,
    field: TextField,
    needle: &str,
) -> StoreResult<TextCandidates> {
    let (table, columns) = match field {
        TextField::From => ("field_index", "from_addr"),
        TextField::To => ("field_index", "to_addr"),
        TextField::Cc => ("field_index", "cc_addr"),
        TextField::Bcc => ("field_index", "bcc_addr"),
        TextField::Subject => ("field_index", "subject"),
        TextField::Body => ("text_index", "body"),
        TextField::Text => ("text_index", "{header body}"),
    };
    let needle = casella_mime::search_fold(needle);
    let query = format!("{columns} : \"{}\"", needle.replace('"', "\"\""));
    let blobs = |sql: &str, arg: &dyn rusqlite::ToSql| -> StoreResult<Vec<BlobId>> {
        let mut stmt = c.prepare_cached(sql)?;
        let found = stmt
            .query_map([arg], |r| r.get::<_, String>(0))?
            .map(|r| r.map(BlobId))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(found)
    };
    // One transaction, and `store.db` read first: its snapshot is then no newer
    // than the index's, so a blob whose queue row is gone in it is in the index
    // the match reads (rows go only after the index committed).
    c.execute_batch("BEGIN")?;
    let answer = (|| {
        // From the smaller side: the queue when it is short (the usual case),
        // else the mailbox's messages.
        let backlog: i64 = c
            .prepare_cached("SELECT count(*) FROM (SELECT 1 FROM search_pending LIMIT ?1)")?
            .query_row([SHORT_QUEUE], |r| r.get(0))?;
        let matched = blobs(
            &format!(
                "SELECT d.hash FROM {SCHEMA}.{table}
                     JOIN {SCHEMA}.docs d ON d.id = {table}.rowid
                 WHERE {table} MATCH ?1"
            ),
            &query,
        )?;
        let unindexed = if backlog < SHORT_QUEUE {
            blobs(
                &format!(
                    "SELECT p.hash FROM search_pending p
                     WHERE NOT EXISTS (SELECT 1 FROM {SCHEMA}.docs d WHERE d.hash = p.hash)
                       AND EXISTS (SELECT 1 FROM messages m
                                   WHERE m.blob = p.hash AND m.mailbox_id = ?1)"
                ),
                &mailbox.0,
            )?
        } else {
            blobs(
                &format!(
                    "SELECT DISTINCT m.blob FROM messages m
                     WHERE m.mailbox_id = ?1
                       AND EXISTS (SELECT 1 FROM search_pending p WHERE p.hash = m.blob)
                       AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.docs d WHERE d.hash = m.blob)"
                ),
                &mailbox.0,
            )?
        };
        Ok(TextCandidates { matched, unindexed })
    })();
    c.execute_batch("COMMIT")?;
    answer
}

/// How many stored blobs wait to be indexed.
pub(super) fn backlog(c: &Connection) -> StoreResult<u64> {
    Ok(c.query_row(
        &format!(
            "SELECT count(*) FROM search_pending p
             WHERE NOT EXISTS (SELECT 1 FROM {SCHEMA}.docs d WHERE d.hash = p.hash)"
        ),
        [],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

/// Between the store's writer and the indexer: wakes the indexer when a commit
/// stored new blobs, and tells it how long the writer has been quiet.
/// Lock-free on the writer's side: the indexer runs at the lowest priority and
/// must never hold up the writer thread by holding a lock it needs.
pub(super) struct Signal {
    added: AtomicBool,
    indexer: OnceLock<std::thread::Thread>,
    start: Instant,
    /// When the writer last committed, in ms after `start`.
    last_commit_ms: AtomicU64,
}

impl Default for Signal {
    fn default() -> Signal {
        Signal {
            added: AtomicBool::new(false),
            indexer: OnceLock::new(),
            start: Instant::now(),
            last_commit_ms: AtomicU64::new(0),
        }
    }
}

impl Signal {
    /// A write stored a new blob (called inside the write).
    pub(super) fn note_added(&self) {
        self.added.store(true, Ordering::Relaxed);
    }

    /// The writer committed a batch.
    pub(super) fn committed(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_commit_ms.store(now, Ordering::Relaxed);
        if self.added.swap(false, Ordering::Relaxed) {
            self.wake();
        }
    }

    pub(super) fn wake(&self) {
        if let Some(t) = self.indexer.get() {
            t.unpark();
        }
    }

    /// How long since the writer last committed.
    fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_commit_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Starts the indexer thread. It stops once the store is dropped; after an
/// error it starts again, waiting longer each time (1 s up to 5 minutes).
pub(super) fn start(
    inner: &Arc<Inner>,
    writer: std::sync::mpsc::Sender<WriteJob>,
) -> StoreResult<std::thread::JoinHandle<()>> {
    let weak = Arc::downgrade(inner);
    let db_path = inner.db_path.clone();
    let signal = inner.index_signal.clone();
    let handle = std::thread::Builder::new()
        .name("casella-search-index".into())
        .spawn(move || {
            lowest_priority();
            let mut backoff = Duration::from_secs(1);
            loop {
                let indexer = Indexer::open(&db_path, writer.clone());
                match indexer.and_then(|mut ix| ix.run(&weak, &signal)) {
                    Ok(()) => return,
                    Err(e) => tracing::warn!(
                        error = %e,
                        retry_in_s = backoff.as_secs(),
                        "the search indexer failed; searches read unindexed mail directly meanwhile"
                    ),
                }
                let until = Instant::now() + backoff;
                while Instant::now() < until {
                    if weak.strong_count() == 0 {
                        return;
                    }
                    std::thread::park_timeout(POLL);
                }
                backoff = (backoff * 2).min(Duration::from_secs(300));
            }
        })?;
    let _ = inner.index_signal.indexer.set(handle.thread().clone());
    Ok(handle)
}

#[cfg(target_os = "linux")]
fn lowest_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads `param`; pid 0 is this thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc != 0 {
        tracing::debug!("could not lower the search indexer's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lowest_priority() {}

struct Indexer {
    /// `search.db`, with `store.db` attached as `store` (read only by us).
    conn: Connection,
    writer: std::sync::mpsc::Sender<WriteJob>,
    /// Queue rows whose work is in `search.db`, to delete from `store.db`.
    done_pending: Vec<String>,
    last_cleanup: Instant,
    /// When the indexer last looked for work.
    last_batch: Instant,
}

/// One pending blob's decoded text, as `blobs.search` / `search_text` hold it.
struct PendingText {
    hash: String,
    fields: [Option<String>; 5],
    header: Option<String>,
    body: Option<String>,
}

impl Indexer {
    fn open(db_path: &Path, writer: std::sync::mpsc::Sender<WriteJob>) -> StoreResult<Indexer> {
        let conn = open_index(&index_path(db_path))?;
        conn.execute("ATTACH DATABASE ?1 AS store", [db_path.to_string_lossy()])?;
        // Rows done before a restart (their deletion had not run yet).
        let mut stmt = conn.prepare(
            "SELECT p.hash FROM store.search_pending p
             WHERE EXISTS (SELECT 1 FROM docs d WHERE d.hash = p.hash)",
        )?;
        let done_pending = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        drop(stmt);
        Ok(Indexer {
            conn,
            writer,
            done_pending,
            last_cleanup: Instant::now(),
            last_batch: Instant::now(),
        })
    }

    /// Indexes while the store's writer is quiet, and a batch at least every
    /// `MAX_DEFER` when it never is; stops when the store is dropped.
    fn run(&mut self, store: &Weak<Inner>, signal: &Signal) -> StoreResult<()> {
        loop {
            if store.strong_count() == 0 {
                return Ok(());
            }
            let quiet = signal.quiet_for();
            if quiet < QUIET && self.last_batch.elapsed() < MAX_DEFER {
                std::thread::park_timeout(QUIET - quiet);
                continue;
            }
            self.last_batch = Instant::now();
            let indexed = self.index_batch()?;
            if self.done_pending.len() >= CLEANUP_AT
                || (indexed == 0 && self.last_cleanup.elapsed() >= CLEANUP_EVERY)
            {
                self.cleanup()?;
            }
            if indexed == 0 {
                std::thread::park_timeout(POLL);
            }
        }
    }

    /// Indexes up to `BATCH` pending blobs in one transaction; how many.
    fn index_batch(&mut self) -> StoreResult<usize> {
        let mut stmt = self.conn.prepare_cached(
            // A damaged column indexes as empty rather than stopping the indexer.
            "SELECT p.hash,
                    json_extract(iif(json_valid(b.search), b.search, NULL), '$.from'),
                    json_extract(iif(json_valid(b.search), b.search, NULL), '$.to'),
                    json_extract(iif(json_valid(b.search), b.search, NULL), '$.cc'),
                    json_extract(iif(json_valid(b.search), b.search, NULL), '$.bcc'),
                    json_extract(iif(json_valid(b.search), b.search, NULL), '$.subject'),
                    json_extract(iif(json_valid(b.search_text), b.search_text, NULL), '$[0]'),
                    json_extract(iif(json_valid(b.search_text), b.search_text, NULL), '$[1]')
             FROM store.search_pending p JOIN store.blobs b ON b.hash = p.hash
             WHERE NOT EXISTS (SELECT 1 FROM docs d WHERE d.hash = p.hash)
             LIMIT ?1",
        )?;
        let texts = stmt
            .query_map([BATCH as i64], |r| {
                Ok(PendingText {
                    hash: r.get(0)?,
                    fields: [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?],
                    header: r.get(6)?,
                    body: r.get(7)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        if texts.is_empty() {
            return Ok(0);
        }
        // Deferred, not IMMEDIATE: BEGIN IMMEDIATE would take the write lock
        // of every attached database, the store's too, and hold up its writer.
        let tx = self.conn.transaction()?;
        for t in &texts {
            let added = tx
                .prepare_cached("INSERT OR IGNORE INTO docs(hash) VALUES (?1)")?
                .execute([&t.hash])?;
            if added == 0 {
                continue;
            }
            let id = tx.last_insert_rowid();
            let fold = |text: &Option<String>| text.as_deref().map(index_text);
            let [from, to, cc, bcc, subject] = &t.fields.each_ref().map(fold);
            tx.prepare_cached(
                "INSERT INTO field_index(rowid, from_addr, to_addr, cc_addr, bcc_addr, subject)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![id, from, to, cc, bcc, subject])?;
            tx.prepare_cached("INSERT INTO text_index(rowid, header, body) VALUES (?1, ?2, ?3)")?
                .execute(params![id, fold(&t.header), fold(&t.body)])?;
        }
        tx.commit()?;
        let n = texts.len();
        self.done_pending.extend(texts.into_iter().map(|t| t.hash));
        Ok(n)
    }

    /// Drops the entries of blobs no longer stored, then has the writer thread
    /// delete the queue rows that are done.
    fn cleanup(&mut self) -> StoreResult<()> {
        self.last_cleanup = Instant::now();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT hash FROM store.search_removed LIMIT 4096")?;
        let removed = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        if removed.is_empty() && self.done_pending.is_empty() {
            return Ok(());
        }
        // Entries dropped now: the same bytes may be stored again before the
        // writer deletes the done queue rows, and their new row must stay.
        let mut dropped = std::collections::HashSet::new();
        if !removed.is_empty() {
            let tx = self.conn.transaction()?;
            for hash in &removed {
                let stored: bool = tx
                    .prepare_cached("SELECT EXISTS(SELECT 1 FROM store.blobs WHERE hash = ?1)")?
                    .query_row([hash], |r| r.get(0))?;
                if stored {
                    continue;
                }
                let id: Option<i64> = tx
                    .prepare_cached("DELETE FROM docs WHERE hash = ?1 RETURNING id")?
                    .query_row([hash], |r| r.get(0))
                    .optional()?;
                if let Some(id) = id {
                    dropped.insert(hash.clone());
                    tx.prepare_cached("DELETE FROM field_index WHERE rowid = ?1")?
                        .execute([id])?;
                    tx.prepare_cached("DELETE FROM text_index WHERE rowid = ?1")?
                        .execute([id])?;
                }
            }
            tx.commit()?;
        }
        let mut pending = std::mem::take(&mut self.done_pending);
        pending.retain(|h| !dropped.contains(h));
        let job = WriteJob {
            run: Box::new(move |tx| {
                let delete = || -> rusqlite::Result<()> {
                    let mut p = tx.prepare_cached("DELETE FROM search_pending WHERE hash = ?1")?;
                    for h in &pending {
                        p.execute([h])?;
                    }
                    let mut r = tx.prepare_cached("DELETE FROM search_removed WHERE hash = ?1")?;
                    for h in &removed {
                        r.execute([h])?;
                    }
                    Ok(())
                };
                delete().is_ok()
            }),
            finish: Box::new(|failed: Option<StoreError>| {
                if let Some(e) = failed {
                    tracing::warn!(error = %e, "deleting the search index's done queue rows failed");
                }
            }),
        };
        self.writer
            .send(job)
            .map_err(|_| StoreError::Internal("the store's writer has stopped".into()))
    }
}

/// The text index as the fuzz targets drive it (feature `fuzzing`): a store
/// and an index of their own, in memory, holding one message. It is stored by
/// the store's schema and queue trigger, indexed by the indexer's own batch,
/// and asked by the same query as `text_candidates`.
#[cfg(feature = "fuzzing")]
pub struct TextIndexProbe {
    /// The store, with the index attached, as a reader connection sees them.
    reader: Connection,
    indexer: Indexer,
}

#[cfg(feature = "fuzzing")]
impl TextIndexProbe {
    /// The mailbox of the message.
    pub const MAILBOX: MailboxId = MailboxId(1);
    /// The blob of the message.
    pub const BLOB: &str = "0000000000000000000000000000000000000000000000000000000000000001";

    pub fn new() -> StoreResult<TextIndexProbe> {
        // memdb databases named with a leading '/' are shared by the process's
        // connections, as the two files are by the store's.
        static PROBES: AtomicU64 = AtomicU64::new(0);
        let n = PROBES.fetch_add(1, Ordering::Relaxed);
        let store_uri = format!("file:/casella-probe-store-{n}?vfs=memdb");
        let index_uri = format!("file:/casella-probe-index-{n}?vfs=memdb");
        let mut reader = Connection::open(&store_uri)?;
        super::migrate(&mut reader)?;
        reader.execute_batch(TRIGGERS_ON)?;
        let conn = Connection::open(&index_uri)?;
        conn.execute_batch(INDEX_SCHEMA)?;
        conn.execute("ATTACH DATABASE ?1 AS store", [&store_uri])?;
        reader.execute(&format!("ATTACH DATABASE ?1 AS {SCHEMA}"), [&index_uri])?;
        let (writer, _) = std::sync::mpsc::channel();
        Ok(TextIndexProbe {
            reader,
            indexer: Indexer {
                conn,
                writer,
                done_pending: Vec::new(),
                last_cleanup: Instant::now(),
                last_batch: Instant::now(),
            },
        })
    }

    /// Makes `fields` the one message's (in place of the one before), queued
    /// for the index as delivery queues it, and read by the indexer if
    /// `indexed`. Answers the fields as the store gives them back to SEARCH.
    pub fn store(
        &mut self,
        fields: crate::SearchFields,
        indexed: bool,
    ) -> StoreResult<crate::SearchFields> {
        self.reader.execute_batch(
            "DELETE FROM messages; DELETE FROM blobs; DELETE FROM search_removed;",
        )?;
        self.indexer.conn.execute_batch(
            "DELETE FROM docs;
             INSERT INTO field_index(field_index) VALUES ('delete-all');
             INSERT INTO text_index(text_index) VALUES ('delete-all');",
        )?;
        self.indexer.done_pending.clear();
        let (search, text) = crate::search_columns::to_columns(fields)?;
        self.reader.execute(
            "INSERT INTO blobs(hash, size, refcount, parsed, search, search_text)
             VALUES (?1, 0, 1, '{}', ?2, ?3)",
            params![Self::BLOB, search, text],
        )?;
        self.reader.execute(
            "INSERT INTO messages(mailbox_id, uid, modseq, blob, size, internal_date, flags)
             VALUES (?1, 1, 1, ?2, 0, 0, '[]')",
            params![Self::MAILBOX.0, Self::BLOB],
        )?;
        if indexed && self.indexer.index_batch()? != 1 {
            return Err(StoreError::Internal(
                "the probe's message was not indexed".into(),
            ));
        }
        crate::search_columns::from_columns(&search, Some(&text))
    }

    /// What the store's `text_candidates` answers for the message's mailbox.
    pub fn text_candidates(
        &self,
        field: TextField,
        needle: &str,
    ) -> StoreResult<Option<TextCandidates>> {
        // As `SqliteStore::text_candidates` with the index on.
        if !answers(needle) {
            return Ok(None);
        }
        candidates(&self.reader, Self::MAILBOX, field, needle).map(Some)
    }
}
