//! The shared store's side of the records' SQL (`crate::records`): values to
//! and from PostgreSQL, the key lock, and a pooled connection for reads.

use std::borrow::Cow;
use std::error::Error;

use async_trait::async_trait;
use bytes::BytesMut;
use tokio_postgres::Row;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::mail_tx::PgTx;
use super::pool::{Conn, PooledConn};
use crate::error::{StoreError, StoreResult};
use crate::records::{SqlRow, SqlTx, SqlValue};

/// The advisory lock class of [`SqlTx::lock_key`]: `pg_advisory_xact_lock`
/// with it and the key's hash. (The same value casella has always used for
/// addresses, so nodes of two versions still exclude each other.)
const KEY_LOCK: i32 = 0x6361_7302;

impl ToSql for SqlValue<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Int(n) => match *ty {
                Type::INT8 => n.to_sql(ty, out),
                Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
                _ => Err(format!("an integer for a parameter of type {ty}").into()),
            },
            SqlValue::Bool(b) => b.to_sql(ty, out),
            SqlValue::Text(s) => s.as_ref().to_sql(ty, out),
            SqlValue::Bytes(b) => b.as_ref().to_sql(ty, out),
        }
    }

    /// Any type: `to_sql` converts, or says why not.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn row_values(row: &Row) -> StoreResult<SqlRow> {
    row.columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let value = match *column.type_() {
                Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(SqlValue::Int),
                Type::INT4 => row
                    .try_get::<_, Option<i32>>(i)?
                    .map(|n| SqlValue::Int(n.into())),
                Type::INT2 => row
                    .try_get::<_, Option<i16>>(i)?
                    .map(|n| SqlValue::Int(n.into())),
                Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map(SqlValue::Bool),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row
                    .try_get::<_, Option<String>>(i)?
                    .map(|s| SqlValue::Text(Cow::Owned(s))),
                Type::BYTEA => row
                    .try_get::<_, Option<Vec<u8>>>(i)?
                    .map(|b| SqlValue::Bytes(Cow::Owned(b))),
                ref other => {
                    return Err(StoreError::Internal(format!(
                        "column {} has type {other}, which records do not read",
                        column.name()
                    )));
                }
            };
            Ok(value.unwrap_or(SqlValue::Null))
        })
        .collect::<StoreResult<Vec<_>>>()
        .map(SqlRow)
}

fn params<'p>(values: &'p [SqlValue<'_>]) -> Vec<&'p (dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

async fn execute(conn: &mut Conn, sql: &'static str, values: &[SqlValue<'_>]) -> StoreResult<u64> {
    conn.execute(sql, &params(values)).await
}

async fn query(
    conn: &mut Conn,
    sql: &'static str,
    values: &[SqlValue<'_>],
) -> StoreResult<Vec<SqlRow>> {
    conn.query(sql, &params(values))
        .await?
        .iter()
        .map(row_values)
        .collect()
}

#[async_trait]
impl SqlTx for PgTx<'_, '_> {
    async fn execute(&mut self, sql: &'static str, params: &[SqlValue<'_>]) -> StoreResult<u64> {
        execute(self.tx, sql, params).await
    }

    async fn query(
        &mut self,
        sql: &'static str,
        params: &[SqlValue<'_>],
    ) -> StoreResult<Vec<SqlRow>> {
        query(self.tx, sql, params).await
    }

    async fn lock_key(&mut self, key: &str) -> StoreResult<()> {
        self.tx
            .execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&KEY_LOCK, &key],
            )
            .await?;
        Ok(())
    }
}

/// A pooled connection outside a transaction, for the records' reads.
pub(super) struct PgReader(pub(super) PooledConn);

#[async_trait]
impl SqlTx for PgReader {
    async fn execute(&mut self, sql: &'static str, params: &[SqlValue<'_>]) -> StoreResult<u64> {
        execute(&mut self.0, sql, params).await
    }

    async fn query(
        &mut self,
        sql: &'static str,
        params: &[SqlValue<'_>],
    ) -> StoreResult<Vec<SqlRow>> {
        query(&mut self.0, sql, params).await
    }

    /// Outside a transaction there is nothing to hold a lock to.
    async fn lock_key(&mut self, _key: &str) -> StoreResult<()> {
        Err(StoreError::Internal(
            "a key lock outside a transaction".into(),
        ))
    }
}
