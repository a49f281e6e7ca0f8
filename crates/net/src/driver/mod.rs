//! The one session driver every protocol runs on: IMAP, POP3 and SMTP supply
//! a [`SessionHandler`]; the driver owns the connection loop around it.
//!
//! Owns: reading commands (lines with a length limit, literals read as they
//! arrive), the pre-login limits and memory budget, idle timeouts, shutdown
//! and ended-session farewells, the output buffer and when it is flushed
//! (not while pipelined input waits), the protocol log of both directions,
//! and STARTTLS. Generic over the stream ([`SessionStream`]): TCP, TLS, and
//! `tokio::io::duplex` for handler tests without a socket.
//! Must not: know any protocol's syntax or texts (the handler gives them).

mod command;
mod connection;
mod handler;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
mod output;
mod stream;
#[cfg(test)]
mod tests;

pub use connection::{Connection, Waited};
pub use handler::{CommandLimits, CommandRefusal, Farewell, Literal, Next, SessionHandler, Stop};
pub use output::Output;
pub use stream::SessionStream;

use command::{NoCommand, read_command};

/// How a driven session ended.
pub enum Ended<S> {
    /// The connection is closed (or failed).
    Closed,
    /// The handler handed the session over: the connection, its replies
    /// sent, is the caller's now.
    HandedOver(Connection<S>),
}

/// Runs a session: whatever `handler` queued already (its greeting) is sent,
/// then one command after another until the session ends.
pub async fn drive<H: SessionHandler, S: SessionStream>(
    handler: &mut H,
    mut conn: Connection<S>,
) -> Ended<S> {
    loop {
        // Replies go out when the client is waiting for them: not while more
        // pipelined commands are already read (RFC 2920, RFC 2449 PIPELINING).
        if !conn.has_input() && conn.flush(handler.output()).await.is_err() {
            return Ended::Closed;
        }
        let command = match read_command(handler, &mut conn).await {
            Ok(command) => command,
            Err(NoCommand::Answered) => continue,
            Err(NoCommand::Closed) => return Ended::Closed,
            Err(NoCommand::Fatal) => {
                conn.close(handler.output()).await;
                return Ended::Closed;
            }
            Err(NoCommand::Stopped(stop)) => {
                farewell(handler, &mut conn, stop).await;
                return Ended::Closed;
            }
        };
        let logged = handler.loggable(&command.bytes);
        handler.output().log('<', &logged, "");
        let next = handler.handle(command.bytes, &mut conn).await;
        // Before login, the command's bytes are held until it is answered.
        drop(command.held);
        match next {
            Next::Continue => {}
            Next::Close => {
                conn.close(handler.output()).await;
                return Ended::Closed;
            }
            Next::Stop(stop) => {
                farewell(handler, &mut conn, stop).await;
                return Ended::Closed;
            }
            Next::HandOver => {
                if conn.flush(handler.output()).await.is_err() {
                    return Ended::Closed;
                }
                return Ended::HandedOver(conn);
            }
            Next::StartTls => {
                if conn.flush(handler.output()).await.is_err() {
                    return Ended::Closed;
                }
                match conn.start_tls(handler.idle_timeout()).await {
                    Some(tls) => {
                        conn = tls;
                        handler.tls_started();
                    }
                    None => return Ended::Closed,
                }
            }
        }
    }
}

/// Says why the session ends, and closes it.
async fn farewell<H: SessionHandler, S: SessionStream>(
    handler: &mut H,
    conn: &mut Connection<S>,
    stop: Stop,
) {
    let why = match stop {
        Stop::Idle => Farewell::Idle,
        Stop::Shutdown => match conn.signal().end_reason() {
            Some(reason) => Farewell::Ended(reason),
            None => Farewell::Shutdown,
        },
    };
    let text = handler.farewell(why);
    handler.output().line(text);
    conn.close(handler.output()).await;
}
