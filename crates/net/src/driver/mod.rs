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
        // Between commands a handler may have events to tell of unasked
        // (IMAP NOTIFY): whichever comes first, the next command or an event.
        let mut next = None;
        if !conn.has_input() && handler.waits_for_events() {
            tokio::select! {
                waited = conn.wait_for_input(handler.idle_timeout()) => match waited {
                    Waited::Input => {}
                    Waited::Closed => return Ended::Closed,
                    Waited::Idle => next = Some(Next::Stop(Stop::Idle)),
                    Waited::Shutdown => next = Some(Next::Stop(Stop::Shutdown)),
                },
                () = handler.wait_for_event() => next = Some(handler.event(&mut conn).await),
            }
        }
        let next = match next {
            Some(next) => next,
            None => match read_and_handle(handler, &mut conn).await {
                Ok(next) => next,
                Err(ended) => return ended,
            },
        };
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

/// Reads the next command and has the handler answer it; `Err` when the
/// session ends without one.
async fn read_and_handle<H: SessionHandler, S: SessionStream>(
    handler: &mut H,
    conn: &mut Connection<S>,
) -> Result<Next, Ended<S>> {
    let command = match read_command(handler, conn).await {
        Ok(command) => command,
        Err(NoCommand::Answered) => return Ok(Next::Continue),
        Err(NoCommand::Closed) => return Err(Ended::Closed),
        Err(NoCommand::Fatal) => {
            conn.close(handler.output()).await;
            return Err(Ended::Closed);
        }
        Err(NoCommand::Stopped(stop)) => return Ok(Next::Stop(stop)),
    };
    let logged = handler.loggable(&command.bytes);
    handler.output().log('<', &logged, "");
    let next = handler.handle(command.bytes, conn).await;
    // Before login, the command's bytes are held until it is answered.
    drop(command.held);
    Ok(next)
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
