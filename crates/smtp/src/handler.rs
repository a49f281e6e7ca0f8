//! SMTP's side of the session driver: commands are lines (DATA and BDAT read
//! their content themselves), the idle timeouts, what the protocol log shows,
//! and SMTP's texts for refusals and farewells.

use std::time::Duration;

use casella_net::{
    CommandLimits, CommandRefusal, Connection, EndReason, Farewell, Next, Output, SessionHandler,
    SessionStream,
};

use crate::Mode;
use crate::session::Session;

/// SMTP, LMTP and submission on the session driver: lines only; DATA and
/// BDAT are read by their commands.
impl SessionHandler for Session {
    fn output(&mut self) -> &mut Output {
        &mut self.out
    }

    fn limits(&self) -> CommandLimits {
        CommandLimits::lines(self.config.max_command_size)
    }

    /// Submission waits `preauth_timeout` for a client that has not logged in.
    fn idle_timeout(&self) -> Duration {
        if self.mode == Mode::Submission && self.auth.is_none() {
            self.config.preauth_timeout
        } else {
            self.config.timeout
        }
    }

    fn loggable(&self, line: &[u8]) -> String {
        mask_secrets(&String::from_utf8_lossy(line))
    }

    fn refused(&mut self, _: CommandRefusal, _: &[u8], _: bool) {
        // Only lines are refused here (no literals, no pre-login budget).
        self.reply("500 5.5.2 Line too long");
    }

    fn farewell(&self, why: Farewell) -> &'static str {
        match why {
            Farewell::Idle => "421 4.4.2 Timeout exceeded, closing connection",
            Farewell::Shutdown => "421 4.3.2 Server shutting down, try again later",
            Farewell::Ended(EndReason::Administrator) => {
                "421 4.7.0 Session ended by the administrator"
            }
            Farewell::Ended(EndReason::SignedOut) => {
                "421 4.7.0 Signed out of all devices; log in again"
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

    /// RFC 3207 §4.2: after STARTTLS the session starts over.
    fn tls_started(&mut self) {
        self.tls_active = true;
        self.helo = None;
        self.esmtp = false;
        self.envelope = None;
        self.auth = None;
        self.user_slot = None;
    }
}

/// A command line as the protocol log shows it: AUTH's initial response replaced by
/// `****`.
fn mask_secrets(line: &str) -> String {
    let words: Vec<&str> = line.splitn(3, ' ').collect();
    if words.len() == 3 && words[0].eq_ignore_ascii_case("AUTH") {
        return format!("{} {} ****", words[0], words[1]);
    }
    line.to_string()
}

#[cfg(test)]
mod mask_tests {
    #[test]
    fn secrets_are_masked() {
        assert_eq!(
            super::mask_secrets("AUTH PLAIN AGFAYg=="),
            "AUTH PLAIN ****"
        );
        assert_eq!(super::mask_secrets("MAIL FROM:<a@b>"), "MAIL FROM:<a@b>");
    }
}
