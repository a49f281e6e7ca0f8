//! The session driver's command reader (issue 24): lines and IMAP literals
//! (`{n}`, `{n+}`, `~{n}`) assembled into commands under the line, literal and
//! command limits and the pre-login memory budget, over an in-memory stream.
//!
//! The driver's commands and refusals must be exactly those of a simple
//! reference reader (below), which reads the whole input at once: so no byte
//! is lost or invented, every limit is applied where it should be, a
//! pre-login command holds from the budget exactly what was read for it (its
//! lines as sent and its literals) while it is handled, and nothing is held
//! once the session is over.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use casella_net::{
    CommandLimits, CommandRefusal, Connection, ConnectionInfo, Farewell, Literal, MemoryBudget,
    Next, Output, SessionHandler, SessionStream, Shutdown, ShutdownSignal, drive,
};
use casella_proto_imap::literal_at_end;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// A command, and the budget it held while handled: before login, every
    /// line as it came (line end included) and every literal.
    Command(Vec<u8>, usize),
    Refused(Kind, bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    LineTooLong,
    CommandTooLong,
    LiteralTooBig,
    Busy,
}

/// What the reference expects: one event, or (a line over its limit and
/// over the budget at once) either refusal, depending on how the bytes
/// arrived.
#[derive(Debug)]
enum Expect {
    Exactly(Event),
    LineRefused,
}

struct Recorder {
    out: Output,
    before: CommandLimits,
    after: CommandLimits,
    logged_in: bool,
    budget: Arc<MemoryBudget>,
    events: Vec<Event>,
}

impl SessionHandler for Recorder {
    fn output(&mut self) -> &mut Output {
        &mut self.out
    }

    fn limits(&self) -> CommandLimits {
        if self.logged_in {
            self.after
        } else {
            self.before
        }
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(20)
    }

    fn literal_at_end(&self, line: &[u8]) -> Option<Literal> {
        literal_at_end(line).map(|l| Literal {
            len: l.len,
            sync: !l.non_sync,
        })
    }

    fn continuation(&mut self) {
        self.out.line("+ go");
    }

    fn loggable(&self, command: &[u8]) -> String {
        String::from_utf8_lossy(command).into_owned()
    }

    fn refused(&mut self, refusal: CommandRefusal, _command: &[u8], ending: bool) {
        let kind = match refusal {
            CommandRefusal::LineTooLong { .. } => Kind::LineTooLong,
            CommandRefusal::CommandTooLong { .. } => Kind::CommandTooLong,
            CommandRefusal::LiteralTooBig { .. } => Kind::LiteralTooBig,
            CommandRefusal::Busy => Kind::Busy,
        };
        self.events.push(Event::Refused(kind, ending));
        self.out.line("NO refused");
    }

    fn farewell(&self, _why: Farewell) -> &'static str {
        "BYE"
    }

    async fn handle<S: SessionStream>(
        &mut self,
        command: Vec<u8>,
        _conn: &mut Connection<S>,
    ) -> Next {
        let held = self.budget.used();
        if command == b"a LOGIN" {
            self.logged_in = true;
        }
        self.events.push(Event::Command(command, held));
        self.out.line("OK");
        Next::Continue
    }
}

/// The driver's reading, written plainly over the whole input.
fn reference(
    input: &[u8],
    before: CommandLimits,
    after: CommandLimits,
    budget: usize,
) -> Vec<Expect> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut logged_in = false;
    'commands: loop {
        let limits = if logged_in { after } else { before };
        let mut command = Vec::new();
        let mut used = 0usize;
        loop {
            let Some(lf) = input[pos..].iter().position(|&b| b == b'\n') else {
                return out;
            };
            let raw = &input[pos..pos + lf + 1];
            pos += lf + 1;
            let len = raw.len();
            if len > limits.line {
                // Before login the budget may refuse the line's start first.
                out.push(if limits.preauth && budget - used < limits.line {
                    Expect::LineRefused
                } else {
                    Expect::Exactly(Event::Refused(Kind::LineTooLong, false))
                });
                continue 'commands;
            }
            if limits.preauth {
                if used + len > budget {
                    out.push(Expect::Exactly(Event::Refused(Kind::Busy, false)));
                    continue 'commands;
                }
                used += len;
            }
            let line = &raw[..len - 1];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if limits.preauth && (command.len() + line.len()) as u64 > limits.command {
                out.push(Expect::Exactly(Event::Refused(Kind::CommandTooLong, false)));
                continue 'commands;
            }
            command.extend_from_slice(line);
            let Some(literal) = literal_at_end(line) else {
                logged_in |= command == b"a LOGIN";
                out.push(Expect::Exactly(Event::Command(command, used)));
                continue 'commands;
            };
            let ending = literal.non_sync;
            let total = (command.len() as u64).saturating_add(literal.len);
            let refusal = if literal.len > limits.literal || total > limits.command {
                Some(Kind::LiteralTooBig)
            } else if limits.preauth && used as u64 + literal.len > budget as u64 {
                Some(Kind::Busy)
            } else {
                None
            };
            if let Some(kind) = refusal {
                out.push(Expect::Exactly(Event::Refused(kind, ending)));
                if ending {
                    return out;
                }
                continue 'commands;
            }
            let len = literal.len as usize;
            if limits.preauth {
                used += len;
            }
            command.extend_from_slice(b"\r\n");
            if input.len() - pos < len {
                return out;
            }
            command.extend_from_slice(&input[pos..pos + len]);
            pos += len;
        }
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

fn signal() -> ShutdownSignal {
    static SERVER: OnceLock<Shutdown> = OnceLock::new();
    SERVER.get_or_init(Shutdown::new).signal()
}

fuzz_target!(|data: &[u8]| {
    let [a, b, c, d, e, f, input @ ..] = data else {
        return;
    };
    let before = CommandLimits {
        line: 8 + usize::from(*a % 120),
        literal: u64::from(*b % 64),
        command: 16 + u64::from(*c) * 2,
        preauth: true,
    };
    let after = CommandLimits {
        line: 8 + usize::from(*e),
        literal: u64::from(*f) * 16,
        command: 64 + u64::from(*f) * 32,
        preauth: false,
    };
    let budget_bytes = usize::from(*d) * 4;
    let budget = MemoryBudget::new(budget_bytes);
    let info = ConnectionInfo {
        local: SocketAddr::from(([127, 0, 0, 1], 1)),
        remote: SocketAddr::from(([127, 0, 0, 1], 2)),
        implicit_tls: false,
    };
    let mut handler = Recorder {
        out: Output::new(None, &info, false),
        before,
        after,
        logged_in: false,
        budget: budget.clone(),
        events: Vec::new(),
    };
    runtime().block_on(async {
        let (client, server) = tokio::io::duplex(256 * 1024);
        let conn = Connection::new(server, signal(), None).with_preauth_budget(budget.clone());
        let (mut from_server, mut to_server) = tokio::io::split(client);
        let send = async {
            // The session may end before reading it all (a refused
            // non-synchronising literal).
            let _ = to_server.write_all(input).await;
            let _ = to_server.shutdown().await;
        };
        let receive = async {
            let mut replies = Vec::new();
            let _ = from_server.read_to_end(&mut replies).await;
        };
        tokio::join!(drive(&mut handler, conn), send, receive);
    });
    assert_eq!(budget.used(), 0, "the budget is given back");
    let expected = reference(input, before, after, budget_bytes);
    let got = &handler.events;
    assert_eq!(got.len(), expected.len(), "{got:?}\n{expected:?}");
    for (g, x) in got.iter().zip(&expected) {
        match x {
            Expect::Exactly(x) => assert_eq!(g, x),
            Expect::LineRefused => assert!(
                matches!(g, Event::Refused(Kind::LineTooLong | Kind::Busy, false)),
                "{g:?}"
            ),
        }
    }
});
