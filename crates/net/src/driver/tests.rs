//! The driver with a tiny handler over `tokio::io::duplex`: an echo protocol
//! with IMAP-style literals (`{n}`, `{n+}`) and a LOGIN that lifts the
//! pre-login limits.

use std::sync::Arc;
use std::time::Duration;

use super::memory::{MemoryClient, memory_info, memory_pair, running_server};
use super::*;
use crate::{EndReason, LiveSessions, MemoryBudget, Shutdown, ShutdownSignal};

struct Echo {
    out: Output,
    logged_in: bool,
    idle: Duration,
    /// Events to tell of between commands (as IMAP NOTIFY does).
    events: Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
    event: Option<String>,
}

impl SessionHandler for Echo {
    fn output(&mut self) -> &mut Output {
        &mut self.out
    }

    fn limits(&self) -> CommandLimits {
        CommandLimits {
            line: 64,
            literal: if self.logged_in { 1000 } else { 16 },
            command: if self.logged_in { 4000 } else { 100 },
            preauth: !self.logged_in,
        }
    }

    fn idle_timeout(&self) -> Duration {
        self.idle
    }

    fn literal_at_end(&self, line: &[u8]) -> Option<Literal> {
        let text = std::str::from_utf8(line).ok()?;
        let inner = text.strip_suffix('}')?.rsplit_once('{')?.1;
        let (digits, sync) = match inner.strip_suffix('+') {
            Some(d) => (d, false),
            None => (inner, true),
        };
        Some(Literal {
            len: digits.parse().ok()?,
            sync,
        })
    }

    fn continuation(&mut self) {
        self.out.line("+ go");
    }

    fn loggable(&self, command: &[u8]) -> String {
        String::from_utf8_lossy(command).replace("secret", "****")
    }

    fn refused(&mut self, refusal: CommandRefusal, command: &[u8], ending: bool) {
        let word = String::from_utf8_lossy(command.split(|&b| b == b' ').next().unwrap_or(b""))
            .into_owned();
        let status = if ending { "BYE" } else { "NO" };
        self.out.line(&format!("{word} {status} {refusal:?}"));
    }

    fn farewell(&self, why: Farewell) -> &'static str {
        match why {
            Farewell::Idle => "BYE idle",
            Farewell::Shutdown => "BYE shutdown",
            Farewell::Ended(EndReason::Administrator) => "BYE ended by the administrator",
            Farewell::Ended(EndReason::SignedOut) => "BYE signed out",
        }
    }

    fn waits_for_events(&self) -> bool {
        self.events.is_some()
    }

    async fn wait_for_event(&mut self) {
        match self.events.as_mut() {
            Some(rx) => self.event = rx.recv().await,
            None => std::future::pending().await,
        }
    }

    async fn event<S: SessionStream>(&mut self, _conn: &mut Connection<S>) -> Next {
        match self.event.take() {
            Some(e) => {
                self.out.line(&format!("* EVENT {e}"));
                Next::Continue
            }
            // The sender is gone: no more events.
            None => {
                self.events = None;
                Next::Continue
            }
        }
    }

    async fn handle<S: SessionStream>(
        &mut self,
        command: Vec<u8>,
        conn: &mut Connection<S>,
    ) -> Next {
        match command.as_slice() {
            b"LOGIN" => {
                self.logged_in = true;
                self.out.line("OK logged in");
            }
            b"QUIT" => {
                self.out.line("OK bye");
                return Next::Close;
            }
            b"STARTTLS" if !conn.can_start_tls() => self.out.line("NO no TLS here"),
            b"WAIT" => {
                self.out.line("+ waiting");
                if conn.flush(&mut self.out).await.is_err() {
                    return Next::Close;
                }
                return match conn.wait_for_input(self.idle).await {
                    Waited::Input => {
                        let mut line = Vec::new();
                        conn.read_line(&mut line, 64, self.idle).await;
                        self.out.line("OK done waiting");
                        Next::Continue
                    }
                    Waited::Closed => Next::Close,
                    Waited::Idle => Next::Stop(Stop::Idle),
                    Waited::Shutdown => Next::Stop(Stop::Shutdown),
                };
            }
            other => self.out.line(&format!(
                "OK {} bytes: {}",
                other.len(),
                String::from_utf8_lossy(other).replace("\r\n", "|")
            )),
        }
        Next::Continue
    }
}

/// Starts a session of [`Echo`] and returns its client end.
fn start(
    signal: ShutdownSignal,
    budget: Option<Arc<MemoryBudget>>,
    idle: Duration,
) -> (MemoryClient, tokio::task::JoinHandle<()>) {
    start_with_events(signal, budget, idle, None)
}

fn start_with_events(
    signal: ShutdownSignal,
    budget: Option<Arc<MemoryBudget>>,
    idle: Duration,
    events: Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
) -> (MemoryClient, tokio::task::JoinHandle<()>) {
    let (client, server) = memory_pair();
    let mut conn = Connection::new(server, signal, None);
    if let Some(budget) = budget {
        conn = conn.with_preauth_budget(budget);
    }
    let task = tokio::spawn(async move {
        let mut echo = Echo {
            out: Output::new(None, &memory_info(), false),
            logged_in: false,
            idle,
            events,
            event: None,
        };
        echo.out.line("* hello");
        let ended = drive(&mut echo, conn).await;
        assert!(matches!(ended, Ended::Closed));
    });
    (client, task)
}

const LONG: Duration = Duration::from_secs(30);

/// Events reach the client between commands, unasked, and commands are
/// answered as before meanwhile.
#[tokio::test]
async fn events_are_told_between_commands() {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (mut c, task) = start_with_events(running_server(), None, LONG, Some(rx));
    assert_eq!(c.line().await, "* hello");
    tx.send("one".to_string()).unwrap();
    assert_eq!(c.line().await, "* EVENT one");
    c.send(b"a\r\n").await;
    assert_eq!(c.line().await, "OK 1 bytes: a");
    tx.send("two".to_string()).unwrap();
    tx.send("three".to_string()).unwrap();
    assert_eq!(c.line().await, "* EVENT two");
    assert_eq!(c.line().await, "* EVENT three");
    c.send(b"QUIT\r\n").await;
    assert_eq!(c.line().await, "OK bye");
    task.await.unwrap();
}

#[tokio::test]
async fn greeting_commands_and_pipelined_replies() {
    let (mut c, task) = start(running_server(), None, LONG);
    assert_eq!(c.line().await, "* hello");
    c.send(b"a\r\nbb\r\n").await;
    assert_eq!(c.line().await, "OK 1 bytes: a");
    assert_eq!(c.line().await, "OK 2 bytes: bb");
    c.send(b"QUIT\r\n").await;
    assert_eq!(c.line().await, "OK bye");
    assert!(c.is_closed().await);
    task.await.unwrap();
}

#[tokio::test]
async fn a_line_over_the_limit_is_refused_and_the_session_goes_on() {
    let (mut c, task) = start(running_server(), None, LONG);
    c.line().await;
    c.send(format!("a {}\r\n", "x".repeat(100)).as_bytes())
        .await;
    // The handler is told the line's start: its answer can name the tag.
    assert_eq!(c.line().await, "a NO LineTooLong { limit: 64 }");
    c.send(b"next\r\n").await;
    assert_eq!(c.line().await, "OK 4 bytes: next");
    c.send(b"QUIT\r\n").await;
    c.line().await;
    task.await.unwrap();
}

#[tokio::test]
async fn literals_before_login_are_bounded_before_they_are_read() {
    let budget = MemoryBudget::new(1 << 20);
    let (mut c, task) = start(running_server(), Some(budget.clone()), LONG);
    c.line().await;
    // Over the pre-login bound: refused before the client sends a byte.
    c.send(b"a {17}\r\n").await;
    assert_eq!(
        c.line().await,
        "a NO LiteralTooBig { len: 17, limit: 16, preauth: true }"
    );
    // Within it: a continuation request, then the bytes.
    c.send(b"b {5}\r\n").await;
    assert_eq!(c.line().await, "+ go");
    c.send(b"hello tail\r\n").await;
    assert_eq!(c.line().await, "OK 17 bytes: b {5}|hello tail");
    assert_eq!(budget.used(), 0, "given back once answered");
    // After login the bound is the larger one.
    c.send(b"LOGIN\r\n").await;
    c.line().await;
    c.send(b"c {17}\r\n").await;
    assert_eq!(c.line().await, "+ go");
    c.send(&[b'y'; 17]).await;
    c.send(b"\r\n").await;
    assert!(c.line().await.starts_with("OK 25 bytes"));
    c.send(b"QUIT\r\n").await;
    c.line().await;
    task.await.unwrap();
}

#[tokio::test]
async fn a_non_synchronising_literal_over_the_bound_ends_the_session() {
    let (mut c, task) = start(running_server(), None, LONG);
    c.line().await;
    c.send(b"a {1000+}\r\n").await;
    assert_eq!(
        c.line().await,
        "a BYE LiteralTooBig { len: 1000, limit: 16, preauth: true }"
    );
    assert!(c.is_closed().await);
    task.await.unwrap();
}

#[tokio::test]
async fn the_pre_login_budget_is_shared_and_refuses_when_spent() {
    // Room for one short command line and a few literal bytes.
    let budget = MemoryBudget::new(20);
    let held = budget.try_take(5).unwrap();
    let (mut c, task) = start(running_server(), Some(budget.clone()), LONG);
    c.line().await;
    // 8 bytes of line, then 10 of literal: 23 > 20 with what is held.
    c.send(b"a {10}\r\n").await;
    assert_eq!(c.line().await, "a NO Busy");
    drop(held);
    c.send(b"b {10}\r\n").await;
    assert_eq!(c.line().await, "+ go");
    c.send(b"0123456789\r\n").await;
    assert!(c.line().await.starts_with("OK 18 bytes"));
    // Lines count too: a command of many lines ends at the command bound.
    c.send(b"c {0}\r\n").await;
    assert_eq!(c.line().await, "+ go");
    assert_eq!(
        budget.used(),
        7,
        "the command's bytes are held while it is read"
    );
    c.send(b"\r\n").await;
    c.line().await;
    assert_eq!(budget.used(), 0);
    c.send(b"QUIT\r\n").await;
    c.line().await;
    task.await.unwrap();
}

#[tokio::test]
async fn command_lines_before_login_are_bounded_in_total() {
    let (mut c, task) = start(running_server(), Some(MemoryBudget::new(1 << 20)), LONG);
    c.line().await;
    let part = "x".repeat(40);
    c.send(format!("a {part} {{0}}\r\n").as_bytes()).await;
    assert_eq!(c.line().await, "+ go");
    c.send(format!("{part} {{0}}\r\n").as_bytes()).await;
    assert_eq!(c.line().await, "+ go");
    c.send(format!("{part}\r\n").as_bytes()).await;
    assert_eq!(c.line().await, "a NO CommandTooLong { limit: 100 }");
    c.send(b"QUIT\r\n").await;
    c.line().await;
    task.await.unwrap();
}

#[tokio::test]
async fn a_silent_client_is_told_and_disconnected() {
    let (mut c, task) = start(running_server(), None, Duration::from_millis(50));
    c.line().await;
    assert_eq!(c.line().await, "BYE idle");
    assert!(c.is_closed().await);
    task.await.unwrap();
    // Also while a literal is awaited.
    let (mut c, task) = start(running_server(), None, Duration::from_millis(50));
    c.line().await;
    c.send(b"a {5}\r\nab").await;
    assert_eq!(c.line().await, "+ go");
    assert_eq!(c.line().await, "BYE idle");
    task.await.unwrap();
}

#[tokio::test]
async fn shutdown_and_ended_sessions_get_their_farewell() {
    let shutdown = Shutdown::new();
    let (mut c, task) = start(shutdown.signal(), None, LONG);
    c.line().await;
    assert_eq!(shutdown.shutdown(Duration::ZERO).await, 0);
    assert_eq!(c.line().await, "BYE shutdown");
    assert!(c.is_closed().await);
    task.await.unwrap();

    // Ended by an administrator while a command waits for the client.
    let registry = Arc::new(LiveSessions::default());
    let (registration, ended) = registry.register("echo", &memory_info());
    let (mut c, task) = start(running_server().with_end(ended), None, LONG);
    c.line().await;
    c.send(b"WAIT\r\n").await;
    assert_eq!(c.line().await, "+ waiting");
    assert!(registry.end(registry.list()[0].id));
    assert_eq!(c.line().await, "BYE ended by the administrator");
    assert!(c.is_closed().await);
    task.await.unwrap();
    drop(registration);
}

#[tokio::test]
async fn an_in_memory_stream_offers_no_starttls() {
    let (mut c, task) = start(running_server(), None, LONG);
    c.line().await;
    c.send(b"STARTTLS\r\nQUIT\r\n").await;
    assert_eq!(c.line().await, "NO no TLS here");
    assert_eq!(c.line().await, "OK bye");
    task.await.unwrap();
}

#[tokio::test]
async fn both_directions_are_logged_with_secrets_masked() {
    let dir = std::env::temp_dir().join(format!("casella-driver-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let log = Arc::new(crate::ProtocolLog::new(
        dir.clone(),
        "ECHO",
        crate::Rollover::Daily,
    ));
    let (mut c, server) = memory_pair();
    let task = tokio::spawn(async move {
        let mut echo = Echo {
            out: Output::new(Some(&log), &memory_info(), false),
            logged_in: false,
            idle: LONG,
            events: None,
            event: None,
        };
        echo.out.line("* hello");
        drive(&mut echo, Connection::new(server, running_server(), None)).await;
    });
    c.line().await;
    c.send(b"my secret\r\nQUIT\r\n").await;
    c.line().await;
    c.line().await;
    task.await.unwrap();
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(",<,my ****,"), "{text}");
    assert!(text.contains(",>,* hello,"), "{text}");
    assert!(text.contains(",>,OK bye,"), "{text}");
    assert!(!text.contains("<,my secret"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
