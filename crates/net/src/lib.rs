//! casella-net: the network edge every protocol shares.
//!
//! Owns: binding listeners (IPv4 and IPv6), TLS configuration (a configured
//! certificate, or a self-signed one made on first run), the [`Stream`] type that
//! starts cleartext and upgrades in place (STARTTLS/STLS) or starts in TLS, reading
//! command lines with a length cap, connection limits, graceful shutdown, and the
//! one session driver every protocol's handler plugs into (`driver`).
//! Must not: know any mail protocol.

mod addr;
mod budget;
mod driver;
mod limits;
mod line;
mod listener;
mod live;
mod protolog;
mod sessions;
mod shutdown;
mod stream;
mod tls;

pub use addr::{in_network, parse_network, source_of};
pub use budget::{BudgetGuard, MemoryBudget, PREAUTH_BUDGET, preauth_budget};
/// In-memory sessions for tests (feature `test-support`).
#[cfg(any(test, feature = "test-support"))]
pub use driver::memory;
pub use driver::{
    CommandLimits, CommandRefusal, Connection, Ended, Farewell, Literal, Next, Output,
    SessionHandler, SessionStream, Stop, Waited, drive,
};
pub use limits::{Admitted, ConnectionLimits, Counter, Refusal, Slot};
pub use line::{LineError, NextLine, next_line, read_line};
pub use listener::{ConnectionInfo, Handler, ListenerSpec, SessionFuture, bind, serve};
pub use live::Live;
pub use protolog::{ProtocolLog, Rollover, SessionLog};
pub use sessions::{EndReason, LiveSessions, Registration, SessionInfo};
pub use shutdown::{Shutdown, ShutdownSignal};
pub use stream::{ClientStream, MaybeTls, Stream};
pub use tls::{TlsError, TlsSetup, load_or_create_tls, server_certificate, write_owner_only};

/// What the fuzz targets reach that the API does not offer (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use crate::line::read_line_admitted;
}
