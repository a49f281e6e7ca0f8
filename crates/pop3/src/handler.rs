//! POP3's side of the session driver: commands are lines (no literals), the
//! line limit and idle timeouts by state, what the protocol log shows, and
//! POP3's texts for refusals and farewells.

use std::time::Duration;

use casella_net::{
    CommandLimits, CommandRefusal, Connection, EndReason, Farewell, Next, Output, SessionHandler,
    SessionStream,
};

use crate::login::MAX_SASL_LINE;
use crate::session::{Session, State};

/// POP3 on the session driver: lines only, no literals.
impl SessionHandler for Session {
    fn output(&mut self) -> &mut Output {
        &mut self.out
    }

    fn limits(&self) -> CommandLimits {
        let max = self.config.max_command_size;
        // AUTH's initial response may be longer than a command (see `command`).
        match self.state {
            State::Authorization { .. } => CommandLimits::lines(max.max(MAX_SASL_LINE)),
            State::Transaction(_) => CommandLimits::lines(max),
        }
    }

    fn idle_timeout(&self) -> Duration {
        match self.state {
            State::Authorization { .. } => self.config.preauth_timeout,
            State::Transaction(_) => self.config.auth_timeout,
        }
    }

    fn loggable(&self, line: &[u8]) -> String {
        mask_secrets(&String::from_utf8_lossy(line))
    }

    fn refused(&mut self, _: CommandRefusal, _: &[u8], _: bool) {
        // Only lines are refused here (no literals, no pre-login budget).
        let max = self.config.max_command_size;
        self.reply(&format!(
            "-ERR Command line too long (the limit is {max} bytes)"
        ));
    }

    /// RFC 1939 §6: a session that ends without QUIT removes nothing.
    fn farewell(&self, why: Farewell) -> &'static str {
        match why {
            Farewell::Idle => "-ERR Disconnected for inactivity",
            Farewell::Shutdown => "-ERR [SYS/TEMP] The server is shutting down; try again shortly",
            Farewell::Ended(EndReason::Administrator) => {
                "-ERR [SYS/PERM] Session ended by the administrator"
            }
            // RFC 3206 §4: AUTH, the credentials must be given again.
            Farewell::Ended(EndReason::SignedOut) => {
                "-ERR [AUTH] Signed out of all devices; log in again"
            }
        }
    }

    async fn handle<S: SessionStream>(&mut self, line: Vec<u8>, conn: &mut Connection<S>) -> Next {
        let next = self.command(&line, conn).await;
        if self.upstream.is_some() {
            return Next::HandOver;
        }
        next
    }

    /// After STLS the session starts over, in TLS.
    fn tls_started(&mut self) {
        self.tls_active = true;
        self.state = State::Authorization { user: None };
    }
}

/// A command line as the protocol log shows it: PASS and AUTH's initial response
/// replaced by `****`.
fn mask_secrets(line: &str) -> String {
    let mut words = line.splitn(3, ' ');
    let verb = words.next().unwrap_or("");
    match verb.to_ascii_uppercase().as_str() {
        "PASS" => "PASS ****".to_string(),
        "AUTH" => match (words.next(), words.next()) {
            (Some(mech), Some(_)) => format!("{verb} {mech} ****"),
            _ => line.to_string(),
        },
        "APOP" => "APOP ****".to_string(),
        // A common client mistake: `USER name password`. What follows the
        // name is never logged.
        "USER" => match (words.next(), words.next()) {
            (Some(name), Some(_)) => format!("{verb} {name} ****"),
            _ => line.to_string(),
        },
        _ => line.to_string(),
    }
}

#[cfg(test)]
mod mask_tests {
    #[test]
    fn secrets_are_masked() {
        assert_eq!(super::mask_secrets("PASS hunter2 with spaces"), "PASS ****");
        assert_eq!(
            super::mask_secrets("auth PLAIN AGFAYg=="),
            "auth PLAIN ****"
        );
        assert_eq!(super::mask_secrets("AUTH LOGIN"), "AUTH LOGIN");
        assert_eq!(super::mask_secrets("USER alice"), "USER alice");
        assert_eq!(super::mask_secrets("USER alice hunter2"), "USER alice ****");
    }
}
