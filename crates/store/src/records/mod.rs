//! Records without mail-model rules — the directory (accounts, aliases,
//! login history, blocks, sign-outs) and the outbound queue — written once as
//! SQL that both backends run ([`sql`] says which SQL), over a connection or
//! transaction the backend lends ([`SqlTx`]).

mod directory;
pub mod queue;
pub mod sql;

pub use sql::{ReadCost, SqlFuture, SqlJob, SqlRow, SqlTx, SqlValue, sql_job};
