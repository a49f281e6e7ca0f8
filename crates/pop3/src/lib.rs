//! casella-pop3: the POP3 service — RFC 1939, with CAPA (RFC 2449), STLS (RFC 2595),
//! SASL (RFC 5034), response codes (RFC 3206) and UTF8 (RFC 6856).
//!
//! Owns: the POP3 session state machine and its replies.
//! Must not: touch storage below the `MailStore` API or check passwords itself
//! (the directory does).
//! Invariants: a maildrop is locked for the whole TRANSACTION state; DELE only marks,
//! and the marked messages are removed at QUIT in one store transaction; a session
//! that ends any other way removes nothing (RFC 1939 §6).

mod command;
mod session;

use std::sync::Arc;
use std::time::Duration;

use casella_directory::{Directory, LoginType};
use casella_net::{ConnectionInfo, Handler, ShutdownSignal, Stream};
use tokio_rustls::TlsAcceptor;

pub use command::{Command, ParseError};

/// POP3 settings (Exchange's Set-PopSettings names in kebab-case in the config).
#[derive(Debug, Clone)]
pub struct Pop3Config {
    /// Host name shown in the greeting.
    pub hostname: String,
    pub login_type: LoginType,
    /// Longest command line accepted, line end included (Exchange's MaxCommandSize: 512).
    pub max_command_size: usize,
    /// Idle time allowed before login.
    pub preauth_timeout: Duration,
    /// Idle time allowed after login (RFC 1939 §3: at least 10 minutes).
    pub auth_timeout: Duration,
    /// Pause after a failed login, to slow down guessing.
    pub auth_failure_delay: Duration,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            hostname: "localhost".into(),
            login_type: LoginType::SecureLogin,
            max_command_size: 512,
            preauth_timeout: Duration::from_secs(60),
            auth_timeout: Duration::from_secs(600),
            auth_failure_delay: Duration::from_secs(1),
        }
    }
}

/// The POP3 service: one per server, shared by its pop3 and pop3s listeners.
pub struct Pop3Service {
    config: Arc<Pop3Config>,
    directory: Arc<Directory>,
    /// For STLS; `None` when no certificate is available.
    tls: Option<TlsAcceptor>,
}

impl Pop3Service {
    pub fn new(
        config: Pop3Config,
        directory: Arc<Directory>,
        tls: Option<TlsAcceptor>,
    ) -> Pop3Service {
        Pop3Service {
            config: Arc::new(config),
            directory,
            tls,
        }
    }
}

impl Handler for Pop3Service {
    fn handle(
        &self,
        stream: Stream,
        info: ConnectionInfo,
        signal: ShutdownSignal,
    ) -> casella_net::SessionFuture {
        let session = session::Session::new(
            self.config.clone(),
            self.directory.clone(),
            self.tls.clone(),
            info,
            signal,
        );
        Box::pin(session.run(stream))
    }

    fn busy_reply(&self) -> &'static [u8] {
        b"-ERR [SYS/TEMP] Too many connections, try again later\r\n"
    }
}
