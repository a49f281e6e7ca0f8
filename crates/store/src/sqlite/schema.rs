//! The embedded store's schema, versioned with `PRAGMA user_version`. Each entry of
//! [`MIGRATIONS`] moves the schema one version up; they run in one transaction at open.

pub const MIGRATIONS: &[&str] = &[
    // version 1
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE accounts (
        id                 INTEGER PRIMARY KEY,
        address            TEXT NOT NULL UNIQUE COLLATE NOCASE,
        domain             TEXT NOT NULL COLLATE NOCASE,
        password_hash      TEXT NOT NULL,
        is_admin           INTEGER NOT NULL DEFAULT 0,
        pop_enabled        INTEGER NOT NULL DEFAULT 1,
        imap_enabled       INTEGER NOT NULL DEFAULT 1,
        submission_enabled INTEGER NOT NULL DEFAULT 1,
        settings           TEXT NOT NULL DEFAULT '{}',
        created            INTEGER NOT NULL
    );
    CREATE INDEX accounts_domain ON accounts(domain);
    CREATE TABLE mailboxes (
        id             INTEGER PRIMARY KEY,
        account_id     INTEGER NOT NULL REFERENCES accounts(id),
        name           TEXT NOT NULL,
        special_use    TEXT,
        uidvalidity    INTEGER NOT NULL,
        uidnext        INTEGER NOT NULL,
        highest_modseq INTEGER NOT NULL,
        subscribed     INTEGER NOT NULL DEFAULT 1,
        UNIQUE (account_id, name)
    );
    -- One row per distinct message content; refcount counts the messages rows.
    CREATE TABLE blobs (
        hash     TEXT PRIMARY KEY,
        size     INTEGER NOT NULL,
        refcount INTEGER NOT NULL,
        parsed   TEXT NOT NULL
    );
    CREATE INDEX blobs_unreferenced ON blobs(refcount) WHERE refcount = 0;
    CREATE TABLE messages (
        mailbox_id    INTEGER NOT NULL,
        uid           INTEGER NOT NULL,
        modseq        INTEGER NOT NULL,
        blob          TEXT NOT NULL,
        size          INTEGER NOT NULL,
        internal_date INTEGER NOT NULL,
        flags         TEXT NOT NULL,
        PRIMARY KEY (mailbox_id, uid)
    ) WITHOUT ROWID;
    CREATE TABLE expunged (
        mailbox_id INTEGER NOT NULL,
        uid        INTEGER NOT NULL,
        modseq     INTEGER NOT NULL,
        PRIMARY KEY (mailbox_id, uid)
    ) WITHOUT ROWID;
    "#,
    // version 2: sessions resynchronise by MODSEQ; \Recent is claimed per mailbox.
    r#"
    CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);
    ALTER TABLE mailboxes ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 0;
    "#,
    // version 3: aliases, and the outbound queue of submitted mail.
    r#"
    CREATE TABLE aliases (
        alias      TEXT PRIMARY KEY COLLATE NOCASE,
        domain     TEXT NOT NULL COLLATE NOCASE,
        account_id INTEGER NOT NULL REFERENCES accounts(id)
    );
    CREATE INDEX aliases_account ON aliases(account_id);
    CREATE INDEX aliases_domain ON aliases(domain);
    CREATE TABLE queue (
        id           INTEGER PRIMARY KEY,
        sender       TEXT NOT NULL,
        account_id   INTEGER,
        recipients   TEXT NOT NULL,
        message      BLOB NOT NULL,
        envid        TEXT,
        ret          TEXT,
        created      INTEGER NOT NULL,
        expires      INTEGER NOT NULL,
        next_attempt INTEGER NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        last_error   TEXT
    );
    CREATE INDEX queue_due ON queue(next_attempt);
    "#,
    // version 4: a claim is separate from the retry time, so a restarted node can
    // take back its own claims at once.
    r#"
    ALTER TABLE queue ADD COLUMN claimed_until INTEGER;
    "#,
    // version 5: each account's recent logins (the users' security page).
    r#"
    CREATE TABLE logins (
        id         INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        at         INTEGER NOT NULL,
        protocol   TEXT NOT NULL,
        remote     TEXT NOT NULL,
        success    INTEGER NOT NULL,
        client     TEXT
    );
    CREATE INDEX logins_account ON logins(account_id, id);
    "#,
    // version 6: login blocks shared by the nodes (the directory's throttle).
    r#"
    CREATE TABLE login_blocks (
        key    TEXT PRIMARY KEY,
        until  INTEGER NOT NULL,
        reason TEXT NOT NULL
    );
    "#,
    // version 7: trigram indexes of the text SEARCH matches (the decoded fields
    // parsed at delivery), one row per blob; SEARCH asks them which messages
    // contain a string instead of reading every message. The short address and
    // subject fields have their own index, so their lookups do not wade through
    // the trigrams of every body. Filled only with `search-index = true` (see
    // `SqliteStore::open_with`): the insert trigger is made there.
    r#"
    CREATE VIRTUAL TABLE blob_fields USING fts5(
        from_addr, to_addr, cc_addr, bcc_addr, subject,
        tokenize = 'trigram case_sensitive 0'
    );
    CREATE VIRTUAL TABLE blob_text USING fts5(
        header, body,
        tokenize = 'trigram case_sensitive 0'
    );
    CREATE TRIGGER blob_text_delete AFTER DELETE ON blobs BEGIN
        DELETE FROM blob_fields WHERE rowid = old.rowid;
        DELETE FROM blob_text WHERE rowid = old.rowid;
    END;
    "#,
    // version 8: from the text index's blobs straight to their messages.
    r#"
    CREATE INDEX messages_blob ON messages(blob, mailbox_id);
    "#,
    // version 9: the fields SEARCH matches (as large as the message's text)
    // move out of `parsed` into their own last column, so reading a structure
    // for FETCH no longer reads them. The index trigger reads the new column;
    // it is made again at start when the index is on.
    r#"
    ALTER TABLE blobs ADD COLUMN search TEXT;
    UPDATE blobs SET search = json_extract(parsed, '$.search'),
                     parsed = json_remove(parsed, '$.search');
    DROP TRIGGER IF EXISTS blob_text_insert;
    "#,
    // version 10: the header and body text move on into `search_text`
    // (`[header, body]`), so searches by header field read (and cache) only the
    // small `search`.
    r#"
    ALTER TABLE blobs ADD COLUMN search_text TEXT;
    UPDATE blobs SET search_text = json_array(json_extract(search, '$.header_text'),
                                              json_extract(search, '$.body_text')),
                     search = json_set(search, '$.header_text', '', '$.body_text', '');
    DROP TRIGGER IF EXISTS blob_text_insert;
    "#,
    // version 11: messages up to INLINE_MAX bytes are kept in the database, so
    // storing one costs no file, no directory and no fsync of its own: the
    // batch's one WAL fsync makes it durable. Larger ones stay files.
    r#"
    CREATE TABLE inline_blobs (
        hash    TEXT PRIMARY KEY,
        content BLOB NOT NULL
    ) WITHOUT ROWID;
    "#,
    // version 12: the text index moves to its own file, `search.db`, filled in
    // the background (see `text_index`); here only its queues stay: blobs to
    // index and blobs removed. An index that was on is built again there.
    r#"
    DROP TRIGGER IF EXISTS blob_text_insert;
    DROP TRIGGER IF EXISTS blob_text_delete;
    DROP TABLE IF EXISTS blob_fields;
    DROP TABLE IF EXISTS blob_text;
    CREATE TABLE search_pending (hash TEXT PRIMARY KEY) WITHOUT ROWID;
    CREATE TABLE search_removed (hash TEXT PRIMARY KEY) WITHOUT ROWID;
    "#,
    // version 13: `inline_blobs` becomes a rowid table. WITHOUT ROWID, a row
    // (the whole message) was the b-tree's key, and SQLite reads every
    // overflow page of a key it compares while searching: finding one message
    // read dozens of pages. Now the primary-key index holds only the hash and
    // the content is reached by rowid. (SQLite's advice: WITHOUT ROWID only
    // for rows under a twentieth of a page.)
    r#"
    CREATE TABLE inline_blobs_by_rowid (
        hash    TEXT PRIMARY KEY,
        content BLOB NOT NULL
    );
    INSERT INTO inline_blobs_by_rowid(hash, content) SELECT hash, content FROM inline_blobs;
    DROP TABLE inline_blobs;
    ALTER TABLE inline_blobs_by_rowid RENAME TO inline_blobs;
    "#,
    // version 14: the expunge log by MODSEQ, so a session's resync reads only
    // the expunges since it last looked, not the mailbox's whole history.
    r#"
    CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged(mailbox_id, modseq);
    "#,
    // version 15: "sign out of all devices", for the running server (and every
    // node) to end the account's open sessions; AUTOINCREMENT so a number is
    // never given twice even after old rows are dropped.
    r#"
    CREATE TABLE IF NOT EXISTS signouts (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        address TEXT NOT NULL,
        at      INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS signouts_at ON signouts(at);
    "#,
    // version 16: queue ids are never given twice (AUTOINCREMENT), so a
    // `queue delete ID` from an older listing cannot hit a newer message once
    // the queue emptied; a rowid alone restarts after the highest row goes.
    r#"
    CREATE TABLE queue_ids_never_reused (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        sender        TEXT NOT NULL,
        account_id    INTEGER,
        recipients    TEXT NOT NULL,
        message       BLOB NOT NULL,
        envid         TEXT,
        ret           TEXT,
        created       INTEGER NOT NULL,
        expires       INTEGER NOT NULL,
        next_attempt  INTEGER NOT NULL,
        attempts      INTEGER NOT NULL DEFAULT 0,
        last_error    TEXT,
        claimed_until INTEGER
    );
    INSERT INTO queue_ids_never_reused(id, sender, account_id, recipients, message, envid,
        ret, created, expires, next_attempt, attempts, last_error, claimed_until)
    SELECT id, sender, account_id, recipients, message, envid, ret, created, expires,
        next_attempt, attempts, last_error, claimed_until FROM queue;
    DROP TABLE queue;
    ALTER TABLE queue_ids_never_reused RENAME TO queue;
    CREATE INDEX queue_due ON queue(next_attempt);
    "#,
    // version 17: subscriptions are a list of names (RFC 9051 §6.3.7): they
    // may name no mailbox, stay when a mailbox is deleted, and CREATE does not
    // add to them. The old per-mailbox mark is copied over and no longer read.
    r#"
    CREATE TABLE IF NOT EXISTS subscriptions (
        account_id INTEGER NOT NULL,
        name       TEXT NOT NULL,
        PRIMARY KEY (account_id, name)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO subscriptions(account_id, name)
        SELECT account_id, name FROM mailboxes WHERE subscribed = 1;
    "#,
    // version 18: the queue says which node holds a claim, as the shared
    // store's does, so the queue is written once for both (`records::queue`).
    // The embedded store is one node: claims held before are its own.
    r#"
    ALTER TABLE queue ADD COLUMN claimed_by TEXT;
    UPDATE queue SET claimed_by = 'embedded' WHERE claimed_until IS NOT NULL;
    "#,
    // version 19: when each message was saved to its mailbox (RFC 8514
    // SAVEDATE; retention counts from it), the messages expunged and
    // recoverable for a while (Exchange's Recoverable Items), and the
    // retention job's runs. Messages stored before count as saved at the
    // upgrade, so none is purged earlier than its folder's policy from the
    // day the server could know.
    r#"
    ALTER TABLE messages ADD COLUMN save_date INTEGER NOT NULL DEFAULT 0;
    UPDATE messages SET save_date = CAST(strftime('%s', 'now') AS INTEGER);
    CREATE TABLE recoverable (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        account_id    INTEGER NOT NULL,
        folder        TEXT NOT NULL,
        blob          TEXT NOT NULL,
        size          INTEGER NOT NULL,
        internal_date INTEGER NOT NULL,
        flags         TEXT NOT NULL,
        deleted_at    INTEGER NOT NULL
    );
    CREATE INDEX recoverable_account ON recoverable(account_id, deleted_at);
    CREATE INDEX recoverable_deleted ON recoverable(deleted_at);
    CREATE TABLE retention_runs (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        node     TEXT NOT NULL,
        started  INTEGER NOT NULL,
        finished INTEGER NOT NULL,
        expired  INTEGER NOT NULL,
        purged   INTEGER NOT NULL,
        error    TEXT
    );
    "#,
    // version 20: each mailbox keeps the sum of its messages' sizes and their
    // number (quota usage without a scan), counted once here.
    r#"
    ALTER TABLE mailboxes ADD COLUMN total_size INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE mailboxes ADD COLUMN message_count INTEGER NOT NULL DEFAULT 0;
    UPDATE mailboxes SET
        total_size = (SELECT COALESCE(SUM(size), 0) FROM messages WHERE mailbox_id = mailboxes.id),
        message_count = (SELECT COUNT(*) FROM messages WHERE mailbox_id = mailboxes.id);
    "#,
];
