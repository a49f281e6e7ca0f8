//! What a protocol supplies to the driver: its replies, its limits and its
//! texts, and one command handled at a time.

use std::future::Future;
use std::time::Duration;

use super::{Connection, Output, SessionStream};
use crate::EndReason;

/// One protocol's side of a session (IMAP, POP3, SMTP). The driver reads each
/// command (lines, and literals the protocol announces), applies the limits,
/// timeouts and shutdown, logs, writes `output()`, and starts TLS; the
/// handler only answers.
pub trait SessionHandler: Send {
    /// Where replies are queued.
    fn output(&mut self) -> &mut Output;

    /// The limits for the next command (they change at login).
    fn limits(&self) -> CommandLimits;

    /// How long the client may stay silent now.
    fn idle_timeout(&self) -> Duration;

    /// The literal announced at the end of `line` (IMAP's `{n}` and `{n+}`);
    /// protocols without literals keep the default.
    fn literal_at_end(&self, line: &[u8]) -> Option<Literal> {
        let _ = line;
        None
    }

    /// Queues the continuation request before a synchronising literal.
    fn continuation(&mut self) {}

    /// `command` as the protocol log shows it: secrets masked.
    fn loggable(&self, command: &[u8]) -> String;

    /// Queues the answer to a command the driver refused to read. `command` is
    /// what was read of it (its first line at least, unless that was too
    /// long); with `ending`, the session ends after this answer.
    fn refused(&mut self, refusal: CommandRefusal, command: &[u8], ending: bool);

    /// The last line a client gets when the server ends the session.
    fn farewell(&self, why: Farewell) -> &'static str;

    /// Runs one command: queues its replies in `output()`; may read and write
    /// through `conn` while it runs.
    fn handle<S: SessionStream>(
        &mut self,
        command: Vec<u8>,
        conn: &mut Connection<S>,
    ) -> impl Future<Output = Next> + Send;

    /// TLS is active after STARTTLS: the session starts over (what the client
    /// said in cleartext is forgotten).
    fn tls_started(&mut self) {}

    /// Whether the session tells its client of events between commands,
    /// unasked (IMAP NOTIFY, RFC 5465): the driver then waits for the client
    /// and for [`SessionHandler::wait_for_event`] at once.
    fn waits_for_events(&self) -> bool {
        false
    }

    /// Resolves when there is an event to tell the client of. Cancel-safe:
    /// the driver drops it when the client sends a command first.
    fn wait_for_event(&mut self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    /// Queues what the awaited event means for the client (and may write
    /// through `conn`).
    fn event<S: SessionStream>(
        &mut self,
        conn: &mut Connection<S>,
    ) -> impl Future<Output = Next> + Send {
        let _ = conn;
        async { Next::Continue }
    }
}

/// What the driver does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read the next command.
    Continue,
    /// Send what is queued and close.
    Close,
    /// Send what is queued (the go-ahead), then the TLS handshake.
    StartTls,
    /// The session stops waiting for the client; its farewell is sent.
    Stop(Stop),
    /// Send what is queued and give the connection back to the caller (a
    /// front end relays it to a back end from now on).
    HandOver,
}

/// Why a session stopped waiting for its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The client was silent for too long.
    Idle,
    /// The server shuts down, or the session was ended (see [`Farewell`]).
    Shutdown,
}

/// Why the server ends a session, for its last line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Farewell {
    /// The client was silent for too long.
    Idle,
    /// The server shuts down.
    Shutdown,
    /// An administrator ended the session, or the account was signed out.
    Ended(EndReason),
}

/// The bounds on reading one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandLimits {
    /// Longest line, line end included.
    pub line: usize,
    /// Largest literal.
    pub literal: u64,
    /// Largest command, lines and literals.
    pub command: u64,
    /// Before login: every byte of a command (lines and literals) is first
    /// taken from the process's pre-login budget, and its lines count toward
    /// `command` as they arrive.
    pub preauth: bool,
}

impl CommandLimits {
    /// Limits for a protocol of lines only.
    pub fn lines(line: usize) -> CommandLimits {
        CommandLimits {
            line,
            literal: 0,
            command: u64::MAX,
            preauth: false,
        }
    }
}

/// A literal a line announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Literal {
    pub len: u64,
    /// The client waits for a continuation request before sending it
    /// (`{n}`); a non-synchronising literal (`{n+}`) follows at once.
    pub sync: bool,
}

/// Why the driver refused to read (the rest of) a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandRefusal {
    /// A line over `limit` bytes; it was read to its end and dropped (the
    /// command handed to `refused` is its start, or the lines before it).
    LineTooLong { limit: usize },
    /// Before login, the command's lines passed `limit` bytes.
    CommandTooLong { limit: u64 },
    /// A literal of `len` bytes over `limit` (or past the command's limit),
    /// refused before it was read.
    LiteralTooBig { len: u64, limit: u64, preauth: bool },
    /// Before login: the pre-login memory budget is spent (too many clients
    /// are sending data before login).
    Busy,
}
