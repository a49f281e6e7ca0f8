//! Records without mail-model rules — the directory (accounts, aliases,
//! login history, blocks, sign-outs) and the outbound queue — written once as
//! SQL that both backends run ([`sql`] says which SQL), over a connection or
//! transaction the backend lends ([`SqlTx`]).

mod directory;
pub mod queue;
pub mod sql;

pub use sql::{ReadCost, SqlFuture, SqlJob, SqlRow, SqlTx, SqlValue, sql_job};

use crate::error::StoreResult;
use crate::model::MailBackend;

/// The rows of one read-only query, each mapped by `row` (the common read of
/// the records: one statement, no transaction).
pub(crate) async fn read_rows<B: MailBackend, T: Send + 'static>(
    backend: &B,
    cost: ReadCost,
    sql: &'static str,
    params: Vec<SqlValue<'static>>,
    row: fn(&SqlRow) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    backend
        .read_records(
            cost,
            sql_job(move |c| {
                Box::pin(async move { c.query(sql, &params).await?.iter().map(row).collect() })
            }),
        )
        .await
}

/// The first row of one read-only query, mapped by `row`.
pub(crate) async fn read_row<B: MailBackend, T: Send + 'static>(
    backend: &B,
    sql: &'static str,
    params: Vec<SqlValue<'static>>,
    row: fn(&SqlRow) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    Ok(read_rows(backend, ReadCost::Small, sql, params, row)
        .await?
        .into_iter()
        .next())
}
