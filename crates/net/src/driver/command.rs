//! Reading one command: its lines, and the literals they announce, joined as
//! `line CRLF literal line …` (the form IMAP's parser takes; other protocols
//! have one line). Limits are checked before bytes are read: a literal over
//! its limit is refused before the client sends it, and before login every
//! byte is taken from the pre-login budget first, so unauthenticated
//! connections cannot make the server hold more than that budget, however
//! many they are.

use super::{CommandLimits, CommandRefusal, Connection, SessionHandler, SessionStream, Stop};
use crate::{BudgetGuard, MemoryBudget, NextLine};

use std::sync::Arc;

/// A command as read, with the pre-login budget it holds (until answered).
pub(crate) struct Command {
    pub bytes: Vec<u8>,
    pub held: Option<BudgetGuard>,
}

/// Why no command came.
pub(crate) enum NoCommand {
    /// Refused and answered; the session goes on.
    Answered,
    /// Refused and answered; the session ends (the client sends bytes the
    /// server will not read, so the stream cannot be resynchronised).
    Fatal,
    Closed,
    Stopped(Stop),
}

/// Reads the next command with the handler's limits.
pub(crate) async fn read_command<H: SessionHandler, S: SessionStream>(
    handler: &mut H,
    conn: &mut Connection<S>,
) -> Result<Command, NoCommand> {
    let limits = handler.limits();
    let budget = &conn.preauth_budget().clone();
    let mut command = Command {
        bytes: Vec::new(),
        held: None,
    };
    let mut line = Vec::with_capacity(256);
    loop {
        // Before login every byte of a line is taken from the pre-login
        // budget as it arrives, not once the line is whole: otherwise many
        // connections each sending a long line slowly would hold up to the
        // line limit each, outside the budget.
        let mut refused_by_budget = false;
        let next = if limits.preauth {
            let mut held = command.held.take();
            let mut admit = |n: usize| match budget.try_take(n) {
                Some(guard) => {
                    match held.as_mut() {
                        Some(h) => h.absorb(guard),
                        None => held = Some(guard),
                    }
                    true
                }
                None => {
                    refused_by_budget = true;
                    false
                }
            };
            let next = conn
                .read_line_admitted(&mut line, limits.line, handler.idle_timeout(), &mut admit)
                .await;
            command.held = held;
            next
        } else {
            conn.read_line(&mut line, limits.line, handler.idle_timeout())
                .await
        };
        match next {
            NextLine::Line => {}
            NextLine::TooLong => {
                let refusal = if refused_by_budget {
                    CommandRefusal::Busy
                } else {
                    CommandRefusal::LineTooLong { limit: limits.line }
                };
                // The first line's start names the command (its tag).
                let so_far = if command.bytes.is_empty() {
                    &line
                } else {
                    &command.bytes
                };
                handler.refused(refusal, so_far, false);
                return Err(NoCommand::Answered);
            }
            NextLine::Closed => return Err(NoCommand::Closed),
            NextLine::Idle => return Err(NoCommand::Stopped(Stop::Idle)),
            NextLine::Shutdown => return Err(NoCommand::Stopped(Stop::Shutdown)),
        }
        if limits.preauth {
            // The line itself was charged as it arrived (above).
            let refusal = if command.bytes.len() as u64 + line.len() as u64 > limits.command {
                Some(CommandRefusal::CommandTooLong {
                    limit: limits.command,
                })
            } else {
                None
            };
            if let Some(refusal) = refusal {
                let so_far = if command.bytes.is_empty() {
                    &line
                } else {
                    &command.bytes
                };
                handler.refused(refusal, so_far, false);
                return Err(NoCommand::Answered);
            }
        }
        command.bytes.extend_from_slice(&line);
        let Some(literal) = handler.literal_at_end(&line) else {
            return Ok(command);
        };
        if let Some(refusal) = check_literal(&limits, &mut command, literal.len, budget) {
            // A client that does not wait sends the bytes anyway: the next
            // command could only be found by reading them all.
            let ending = !literal.sync;
            handler.refused(refusal, &command.bytes, ending);
            return Err(if ending {
                NoCommand::Fatal
            } else {
                NoCommand::Answered
            });
        }
        if literal.sync {
            handler.continuation();
            if conn.flush(handler.output()).await.is_err() {
                return Err(NoCommand::Closed);
            }
        }
        command.bytes.extend_from_slice(b"\r\n");
        let len = literal.len as usize;
        let read = tokio::time::timeout(
            handler.idle_timeout(),
            conn.read_into(&mut command.bytes, len),
        );
        match read.await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(NoCommand::Closed),
            Err(_) => return Err(NoCommand::Stopped(Stop::Idle)),
        }
    }
}

/// Why a literal of `len` bytes may not be read, if it may not.
fn check_literal(
    limits: &CommandLimits,
    command: &mut Command,
    len: u64,
    budget: &Arc<MemoryBudget>,
) -> Option<CommandRefusal> {
    let total = (command.bytes.len() as u64).saturating_add(len);
    if len > limits.literal || total > limits.command {
        return Some(CommandRefusal::LiteralTooBig {
            len,
            limit: limits.literal,
            preauth: limits.preauth,
        });
    }
    // Within the limit, so it fits in memory's terms (usize).
    if limits.preauth && !command.hold(budget, len as usize) {
        return Some(CommandRefusal::Busy);
    }
    None
}

impl Command {
    /// Takes `bytes` more from `budget` for this command; false when spent.
    fn hold(&mut self, budget: &Arc<MemoryBudget>, bytes: usize) -> bool {
        let Some(guard) = budget.try_take(bytes) else {
            return false;
        };
        match self.held.as_mut() {
            Some(held) => held.absorb(guard),
            None => self.held = Some(guard),
        }
        true
    }
}
