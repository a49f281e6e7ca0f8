//! casella-smtp: mail intake for the local domains — inbound SMTP (RFC 5321) on the
//! `smtp` listener and LMTP (RFC 2033) on the `lmtp` listener.
//!
//! Owns: the SMTP/LMTP session state machine, DATA reading, the Received: header,
//! and handing each accepted message to the store for every recipient.
//! Must not: relay. A recipient outside the local domains is refused (`550 5.7.1`).
//! Invariant: `250` after DATA (SMTP) or a recipient's `250` (LMTP) is sent only after
//! the store has durably committed that recipient's copy.

mod command;
mod data;
mod session;
mod time;

use std::sync::Arc;
use std::time::Duration;

use casella_directory::Directory;
use casella_net::{ConnectionInfo, Handler, SessionFuture, ShutdownSignal, Stream};
use tokio_rustls::TlsAcceptor;

pub use command::{Command, ParseError};
pub use time::rfc5322_date;

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// RFC 5321 inbound SMTP for the local domains.
    Smtp,
    /// RFC 2033 LMTP, for an MTA delivering into casella.
    Lmtp,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub hostname: String,
    /// Largest message accepted (SIZE, RFC 1870).
    pub max_message_size: usize,
    pub max_recipients: usize,
    /// Longest command line (RFC 5321 §4.5.3.1.4 says 512; extensions need more).
    pub max_command_size: usize,
    /// Idle time allowed between commands (RFC 5321 §4.5.3.2.7: 5 minutes).
    pub timeout: Duration,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            hostname: "localhost".into(),
            max_message_size: 36_700_160,
            max_recipients: 100,
            max_command_size: 4096,
            timeout: Duration::from_secs(300),
        }
    }
}

pub struct SmtpService {
    mode: Mode,
    config: Arc<SmtpConfig>,
    directory: Arc<Directory>,
    tls: Option<TlsAcceptor>,
}

impl SmtpService {
    pub fn new(
        mode: Mode,
        config: SmtpConfig,
        directory: Arc<Directory>,
        tls: Option<TlsAcceptor>,
    ) -> SmtpService {
        SmtpService {
            mode,
            config: Arc::new(config),
            directory,
            tls,
        }
    }
}

impl Handler for SmtpService {
    fn handle(
        &self,
        stream: Stream,
        info: ConnectionInfo,
        signal: ShutdownSignal,
    ) -> SessionFuture {
        let session = session::Session::new(
            self.mode,
            self.config.clone(),
            self.directory.clone(),
            self.tls.clone(),
            info,
            signal,
        );
        Box::pin(session.run(stream))
    }

    fn busy_reply(&self) -> &'static [u8] {
        b"421 4.7.0 Too many connections, try again later\r\n"
    }
}
