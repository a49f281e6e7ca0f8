//! The embedded store's side of the records' SQL (`crate::records`): values
//! to and from SQLite, statements in SQLite's form, and a connection that
//! stays on its thread.

use std::borrow::Cow;

use async_trait::async_trait;
use rusqlite::Connection;
use rusqlite::types::{ToSqlOutput, ValueRef};

use crate::error::StoreResult;
use crate::records::sql::sqlite_form;
use crate::records::{SqlRow, SqlTx, SqlValue};

impl rusqlite::ToSql for SqlValue<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Int(n) => ValueRef::Integer(*n),
            SqlValue::Bool(b) => ValueRef::Integer(i64::from(*b)),
            SqlValue::Text(s) => ValueRef::Text(s.as_bytes()),
            SqlValue::Bytes(b) => ValueRef::Blob(b),
        }))
    }
}

fn row_values(r: &rusqlite::Row<'_>) -> rusqlite::Result<SqlRow> {
    let columns = r.as_ref().column_count();
    (0..columns)
        .map(|i| {
            Ok(match r.get_ref(i)? {
                ValueRef::Null => SqlValue::Null,
                ValueRef::Integer(n) => SqlValue::Int(n),
                // No records column is a float; keep the integer part.
                ValueRef::Real(f) => SqlValue::Int(f as i64),
                ValueRef::Text(t) => {
                    SqlValue::Text(Cow::Owned(String::from_utf8_lossy(t).into_owned()))
                }
                ValueRef::Blob(b) => SqlValue::Bytes(Cow::Owned(b.to_vec())),
            })
        })
        .collect::<rusqlite::Result<Vec<_>>>()
        .map(SqlRow)
}

pub(super) fn sql_execute(
    conn: &Connection,
    sql: &str,
    params: &[SqlValue<'_>],
) -> StoreResult<u64> {
    let n = conn
        .prepare_cached(&sqlite_form(sql))?
        .execute(rusqlite::params_from_iter(params))?;
    Ok(n as u64)
}

pub(super) fn sql_query(
    conn: &Connection,
    sql: &str,
    params: &[SqlValue<'_>],
) -> StoreResult<Vec<SqlRow>> {
    let mut stmt = conn.prepare_cached(&sqlite_form(sql))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(params), row_values)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A connection as a job's future holds it, with the thread it belongs to.
pub(super) struct ThreadConnection<'c> {
    conn: &'c Connection,
    thread: std::thread::ThreadId,
}

impl<'c> ThreadConnection<'c> {
    /// Only for a job run to completion on this thread by `run_ready`.
    pub(super) fn new(conn: &'c Connection) -> ThreadConnection<'c> {
        ThreadConnection {
            conn,
            thread: std::thread::current().id(),
        }
    }
}

// SAFETY: `MailTx` and `SqlTx` are `Send` because the shared backend's
// transactions run in tokio tasks that may move between threads. This one is
// made on the thread that runs the job (the writer thread, or a reader's), and
// the job's future that borrows it is created, polled to completion
// (`run_ready` fails a future that would wait) and dropped there; the borrow
// is not 'static, so no task can take it. Safe code could still hand it to a
// scoped thread: every use goes through `Deref`, which checks the thread and
// panics on any other (the writer thread catches a job's panic), so the `!Sync`
// connection is only ever used on its own thread.
unsafe impl Send for ThreadConnection<'_> {}

impl std::ops::Deref for ThreadConnection<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        assert_eq!(
            std::thread::current().id(),
            self.thread,
            "a store connection used off its thread"
        );
        self.conn
    }
}

/// A reader connection, for the records' reads.
pub(super) struct SqliteReader<'c>(pub(super) ThreadConnection<'c>);

#[async_trait]
impl SqlTx for SqliteReader<'_> {
    async fn execute(&mut self, sql: &'static str, params: &[SqlValue<'_>]) -> StoreResult<u64> {
        sql_execute(&self.0, sql, params)
    }

    async fn query(
        &mut self,
        sql: &'static str,
        params: &[SqlValue<'_>],
    ) -> StoreResult<Vec<SqlRow>> {
        sql_query(&self.0, sql, params)
    }

    async fn lock_key(&mut self, _key: &str) -> StoreResult<()> {
        Ok(())
    }
}
