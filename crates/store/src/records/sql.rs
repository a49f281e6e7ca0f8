//! The few SQL primitives both backends run: a statement with parameters, a
//! query returning rows, and a named lock. The directory and the outbound
//! queue are written once over them (`records::directory`,
//! `records::queue`).
//!
//! The SQL is PostgreSQL's, kept to what SQLite runs too: `$1`-style
//! parameters, `RETURNING`, `ON CONFLICT … DO UPDATE`, no casts, no arrays, no
//! `greatest`. Row locks (`FOR UPDATE`, `FOR UPDATE SKIP LOCKED`) are written
//! where PostgreSQL needs them; the embedded backend, whose writes are one
//! at a time, drops them with its placeholder rewrite.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;

use crate::error::{StoreError, StoreResult};

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue<'a> {
    Null,
    Int(i64),
    Bool(bool),
    Text(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
}

impl<'a> SqlValue<'a> {
    pub fn text(s: &'a str) -> SqlValue<'a> {
        SqlValue::Text(Cow::Borrowed(s))
    }

    /// Text the value owns (for a parameter moved into a job).
    pub fn owned(s: String) -> SqlValue<'static> {
        SqlValue::Text(Cow::Owned(s))
    }

    pub fn opt_text(s: Option<&'a str>) -> SqlValue<'a> {
        s.map_or(SqlValue::Null, SqlValue::text)
    }

    pub fn opt_int(n: Option<i64>) -> SqlValue<'a> {
        n.map_or(SqlValue::Null, SqlValue::Int)
    }

    fn type_name(&self) -> &'static str {
        match self {
            SqlValue::Null => "NULL",
            SqlValue::Int(_) => "an integer",
            SqlValue::Bool(_) => "a boolean",
            SqlValue::Text(_) => "text",
            SqlValue::Bytes(_) => "bytes",
        }
    }
}

/// One row of a query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlRow(pub Vec<SqlValue<'static>>);

impl SqlRow {
    fn at(&self, i: usize) -> StoreResult<&SqlValue<'static>> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Internal(format!("a row has no column {i}")))
    }

    fn wrong(&self, i: usize, want: &str) -> StoreError {
        let got = self.0.get(i).map_or("nothing", SqlValue::type_name);
        StoreError::Internal(format!("column {i} holds {got}, not {want}"))
    }

    pub fn opt_int(&self, i: usize) -> StoreResult<Option<i64>> {
        match self.at(i)? {
            SqlValue::Null => Ok(None),
            SqlValue::Int(n) => Ok(Some(*n)),
            _ => Err(self.wrong(i, "an integer")),
        }
    }

    pub fn int(&self, i: usize) -> StoreResult<i64> {
        self.opt_int(i)?.ok_or_else(|| self.wrong(i, "an integer"))
    }

    /// A boolean: PostgreSQL's own type, or SQLite's 0 and 1.
    pub fn bool(&self, i: usize) -> StoreResult<bool> {
        match self.at(i)? {
            SqlValue::Bool(b) => Ok(*b),
            SqlValue::Int(n) => Ok(*n != 0),
            _ => Err(self.wrong(i, "a boolean")),
        }
    }

    pub fn opt_text(&self, i: usize) -> StoreResult<Option<String>> {
        match self.at(i)? {
            SqlValue::Null => Ok(None),
            SqlValue::Text(s) => Ok(Some(s.to_string())),
            _ => Err(self.wrong(i, "text")),
        }
    }

    pub fn text(&self, i: usize) -> StoreResult<String> {
        self.opt_text(i)?.ok_or_else(|| self.wrong(i, "text"))
    }

    /// Takes the bytes out of column `i`.
    pub fn into_bytes(mut self, i: usize) -> StoreResult<Vec<u8>> {
        let value = self
            .0
            .get_mut(i)
            .map(|v| std::mem::replace(v, SqlValue::Null));
        match value {
            Some(SqlValue::Bytes(b)) => Ok(b.into_owned()),
            // SQLite keeps what was written: text stays text.
            Some(SqlValue::Text(s)) => Ok(s.into_owned().into_bytes()),
            other => {
                let got = other.as_ref().map_or("nothing", SqlValue::type_name);
                Err(StoreError::Internal(format!(
                    "column {i} holds {got}, not bytes"
                )))
            }
        }
    }
}

/// A connection or an open transaction, as the records code sees it.
#[async_trait]
pub trait SqlTx: Send {
    /// Runs a statement; how many rows it changed.
    async fn execute(&mut self, sql: &'static str, params: &[SqlValue<'_>]) -> StoreResult<u64>;
    /// Runs a query; its rows.
    async fn query(
        &mut self,
        sql: &'static str,
        params: &[SqlValue<'_>],
    ) -> StoreResult<Vec<SqlRow>>;
    /// Holds `key` until the transaction ends: two transactions that lock the
    /// same key run one after the other, on any node. A backend whose write
    /// transactions never overlap does nothing.
    async fn lock_key(&mut self, key: &str) -> StoreResult<()>;

    /// The first row, if any.
    async fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[SqlValue<'_>],
    ) -> StoreResult<Option<SqlRow>> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    /// The first row; an internal error when there is none.
    async fn query_one(
        &mut self,
        sql: &'static str,
        params: &[SqlValue<'_>],
    ) -> StoreResult<SqlRow> {
        self.query_opt(sql, params)
            .await?
            .ok_or_else(|| StoreError::Internal(format!("no row from {sql}")))
    }
}

/// The future of a job over [`SqlTx`].
pub type SqlFuture<'t, T> = Pin<Box<dyn Future<Output = StoreResult<T>> + Send + 't>>;

/// A job run over a reader connection ([`crate::model::MailBackend::read_records`]).
pub type SqlJob<T> = Box<dyn for<'t> FnOnce(&'t mut dyn SqlTx) -> SqlFuture<'t, T> + Send>;

/// Boxes a closure as a [`SqlJob`] (and lets the compiler infer its signature).
pub fn sql_job<T, F>(f: F) -> SqlJob<T>
where
    F: for<'t> FnOnce(&'t mut dyn SqlTx) -> SqlFuture<'t, T> + Send + 'static,
{
    Box::new(f)
}

/// How much a read may return: the embedded backend runs small reads on the
/// caller's thread and large ones on the blocking pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadCost {
    /// Index lookups and a bounded number of rows.
    Small,
    /// Whole tables, message bytes.
    Large,
}

/// The embedded backend's form of a statement: `$n` becomes `?n`, and row
/// locks go (its writes never overlap).
pub fn sqlite_form(sql: &str) -> Cow<'_, str> {
    if !sql.contains('$') && !sql.contains(" FOR UPDATE") {
        return Cow::Borrowed(sql);
    }
    let sql = sql
        .replace(" FOR UPDATE SKIP LOCKED", "")
        .replace(" FOR UPDATE", "");
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_form_rewrites_parameters_and_drops_row_locks() {
        assert_eq!(
            sqlite_form("SELECT a FROM t WHERE b = $1 AND c = $12 FOR UPDATE SKIP LOCKED"),
            "SELECT a FROM t WHERE b = ?1 AND c = ?12"
        );
        assert_eq!(
            sqlite_form("SELECT 1 FROM t WHERE id = $1 FOR UPDATE"),
            "SELECT 1 FROM t WHERE id = ?1"
        );
        assert_eq!(sqlite_form("SELECT '$' FROM t"), "SELECT '$' FROM t");
        assert!(matches!(sqlite_form("SELECT 1"), Cow::Borrowed(_)));
    }

    #[test]
    fn rows_read_booleans_from_either_backend() {
        let row = SqlRow(vec![
            SqlValue::Int(1),
            SqlValue::Bool(false),
            SqlValue::Null,
        ]);
        assert!(row.bool(0).unwrap());
        assert!(!row.bool(1).unwrap());
        assert!(row.bool(2).is_err());
        assert_eq!(row.opt_int(2).unwrap(), None);
        assert!(row.int(2).is_err());
    }
}
