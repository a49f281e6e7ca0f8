//! IMAP's side of the session driver: what a command looks like (lines and
//! the literals they announce, RFC 9051 §4.3), the limits before and after
//! login, what the protocol log shows, and IMAP's texts for refusals and
//! farewells.

use std::time::Duration;

use casella_net::{
    CommandLimits, CommandRefusal, Connection, EndReason, Farewell, Literal, Next, Output,
    SessionHandler, SessionStream,
};
use casella_proto_imap::{LiteralSpec, literal_at_end};

use crate::session::Session;

/// IMAP on the session driver: commands with literals (RFC 9051 §4.3), the
/// pre-login limits, and IMAP's texts.
impl SessionHandler for Session {
    fn output(&mut self) -> &mut Output {
        &mut self.out
    }

    fn limits(&self) -> CommandLimits {
        let line = self.config.max_command_size;
        if self.auth.is_none() {
            return CommandLimits {
                line,
                literal: PREAUTH_LITERAL_MAX,
                command: PREAUTH_COMMAND_MAX,
                preauth: true,
            };
        }
        let literal = self.config.append_limit as u64;
        CommandLimits {
            line,
            literal,
            // A whole command (MULTIAPPEND) may hold several literals.
            command: literal.saturating_mul(4).max(64 << 20),
            preauth: false,
        }
    }

    fn idle_timeout(&self) -> Duration {
        if self.auth.is_some() {
            self.config.auth_timeout
        } else {
            self.config.preauth_timeout
        }
    }

    fn literal_at_end(&self, line: &[u8]) -> Option<Literal> {
        let LiteralSpec { len, non_sync, .. } = literal_at_end(line)?;
        Some(Literal {
            len,
            sync: !non_sync,
        })
    }

    fn continuation(&mut self) {
        self.line("+ Ready for literal data");
    }

    fn loggable(&self, command: &[u8]) -> String {
        mask_secrets(command)
    }

    /// Literals over the limit are refused before they are sent (RFC 7888
    /// §4, RFC 9051 §7.5 TOOBIG); a non-synchronising one ends the session.
    fn refused(&mut self, refusal: CommandRefusal, command: &[u8], ending: bool) {
        let tag = first_word(command);
        let why = match refusal {
            // RFC 9051 §7.1.5: a command the server cannot take ends with a
            // tagged BAD, so the client's command completes (an untagged one
            // would leave it waiting). The line was read to its end: the
            // session goes on with the next one.
            CommandRefusal::LineTooLong { limit } => {
                self.line(&format!(
                    "{tag} BAD Command line too long (the limit is {limit} bytes)"
                ));
                return;
            }
            CommandRefusal::CommandTooLong { limit } => {
                self.line(&format!(
                    "{tag} BAD Commands before login are limited to {limit} bytes"
                ));
                return;
            }
            CommandRefusal::LiteralTooBig {
                limit,
                preauth: true,
                ..
            } => format!("[TOOBIG] Literals before login are limited to {limit} bytes"),
            CommandRefusal::LiteralTooBig { len, limit, .. } => {
                format!("[TOOBIG] Literal of {len} bytes is over the limit of {limit} bytes")
            }
            CommandRefusal::Busy => {
                "[UNAVAILABLE] Too many connections are sending data before login, try again later"
                    .to_string()
            }
        };
        if ending {
            self.line(&format!("* BYE {why}"));
        } else {
            self.line(&format!("{tag} NO {why}"));
        }
    }

    fn farewell(&self, why: Farewell) -> &'static str {
        match why {
            Farewell::Idle => "* BYE Autologout; idle for too long",
            Farewell::Shutdown => "* BYE [UNAVAILABLE] Server shutting down",
            Farewell::Ended(EndReason::Administrator) => {
                "* BYE [UNAVAILABLE] Session ended by the administrator"
            }
            Farewell::Ended(EndReason::SignedOut) => {
                "* BYE Signed out of all devices; log in again"
            }
        }
    }

    async fn handle<S: SessionStream>(&mut self, command: Vec<u8>, io: &mut Connection<S>) -> Next {
        let next = self.command(&command, io).await;
        if self.upstream.is_some() {
            return Next::HandOver;
        }
        next
    }

    fn tls_started(&mut self) {
        self.tls_active = true;
    }

    // NOTIFY (RFC 5465): events are told between commands, unasked.
    fn waits_for_events(&self) -> bool {
        self.notify.is_some() && self.auth.is_some()
    }

    fn wait_for_event(&mut self) -> impl std::future::Future<Output = ()> + Send {
        self.wait_for_change()
    }

    fn event<S: SessionStream>(
        &mut self,
        conn: &mut Connection<S>,
    ) -> impl std::future::Future<Output = Next> + Send {
        self.notify_change(conn)
    }
}

/// Largest literal before login. Before login only LOGIN, AUTHENTICATE and ID
/// take strings; Dovecot's login process reads no more than a few KiB before
/// authentication either. 8 KiB holds the longest name and password a real
/// client sends and an ID value at RFC 2971's maximum (1,024 octets).
const PREAUTH_LITERAL_MAX: u64 = 8 * 1024;
/// Largest command before login, literals included: an ID with RFC 2971's
/// maximum of 30 pairs of 30-octet names and 1,024-octet values is about 32 KiB.
const PREAUTH_COMMAND_MAX: u64 = 64 * 1024;

/// The tag of a command being read, for replies before it is parsed.
fn first_word(command: &[u8]) -> String {
    let end = command
        .iter()
        .position(|&b| b == b' ')
        .unwrap_or(command.len());
    let tag = String::from_utf8_lossy(&command[..end]).into_owned();
    if tag.is_empty() || tag.contains(|c: char| c.is_control() || c == '+') {
        "*".into()
    } else {
        tag
    }
}

/// The first line of a command as the protocol log shows it: LOGIN's password and
/// AUTHENTICATE's initial response replaced by `****`; literals are not logged.
fn mask_secrets(command: &[u8]) -> String {
    let end = command
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(command.len());
    let line = String::from_utf8_lossy(&command[..end]).into_owned();
    let words: Vec<&str> = line.splitn(4, ' ').collect();
    match words.get(1).map(|w| w.to_ascii_uppercase()).as_deref() {
        Some("LOGIN") if words.len() >= 3 => format!("{} {} {} ****", words[0], words[1], words[2]),
        Some("AUTHENTICATE") if words.len() >= 4 => {
            format!("{} {} {} ****", words[0], words[1], words[2])
        }
        _ => line,
    }
}

#[cfg(test)]
mod mask_tests {
    #[test]
    fn secrets_are_masked() {
        assert_eq!(
            super::mask_secrets(b"a LOGIN alice \"pw\""),
            "a LOGIN alice ****"
        );
        assert_eq!(
            super::mask_secrets(b"a LOGIN {5}\r\nalice {2}\r\npw"),
            "a LOGIN {5} ****"
        );
        assert_eq!(
            super::mask_secrets(b"b authenticate PLAIN AGFAYg=="),
            "b authenticate PLAIN ****"
        );
        assert_eq!(super::mask_secrets(b"c SELECT INBOX"), "c SELECT INBOX");
    }
}
