//! casella-smtp: mail in and out of casella over SMTP — inbound SMTP for the local
//! domains (RFC 5321) on `smtp`, LMTP (RFC 2033) on `lmtp`, and message submission
//! (RFC 6409) on `submission` (STARTTLS) and `submissions` (implicit TLS, RFC 8314).
//!
//! Owns: the session state machine, DATA and BDAT reading, AUTH for submission,
//! the sender binding, the Received: header and submission header fixups, and
//! handing each accepted message to the store: local recipients' INBOX at once,
//! remote recipients onto the durable outbound queue (the relay crate sends it).
//! On a front end a submission session is handed over to the account's back end
//! right after AUTH (casella-proxy); `submission-internal` sessions start logged in.
//! Must not: relay for anyone who is not logged in on submission — inbound SMTP and
//! LMTP refuse non-local recipients (`550 5.7.1`).
//! Invariant: a `250` for a message (or an LMTP recipient) is sent only after the
//! store durably committed it — delivered or queued.

mod command;
mod data;
mod handler;
mod headers;
mod limits;
mod params;
mod session;
mod time;
mod transaction;

use std::sync::Arc;
use std::time::Duration;

use casella_directory::{Directory, LoginType};
use std::net::IpAddr;

use casella_net::{
    Admitted, Connection, ConnectionInfo, ConnectionLimits, Counter, Handler, Live, Refusal,
    SessionFuture, SessionStream, ShutdownSignal, Stream,
};
use casella_proxy::{Backend, Handover, LoginProxy};
use casella_store::AccountId;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

pub use command::{Command, ParseError, parse as parse_command};
pub use limits::RateLimiter;
pub use time::rfc5322_date;

/// What the fuzz targets reach that the API does not offer (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use crate::data::{DataOutcome, read_data};
    pub use crate::headers::{MAX_LINE, complete_for_submission, first_long_line, from_addresses};
    pub use crate::params::{MailParams, RcptParams, mail_params, rcpt_params};
}

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// RFC 5321 inbound SMTP for the local domains.
    Smtp,
    /// RFC 2033 LMTP, for an MTA delivering into casella.
    Lmtp,
    /// RFC 6409 message submission for logged-in users.
    Submission,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub hostname: String,
    /// Greeting text after "220 HOSTNAME ".
    pub banner: String,
    /// Largest message accepted (SIZE, RFC 1870).
    pub max_message_size: usize,
    pub max_recipients: usize,
    /// Longest command line (RFC 5321 §4.5.3.1.4 says 512; extensions need more).
    pub max_command_size: usize,
    /// Idle time allowed between commands (RFC 5321 §4.5.3.2.7: 5 minutes); on
    /// submission, once logged in.
    pub timeout: Duration,
    /// Idle time allowed on submission before logging in.
    pub preauth_timeout: Duration,
    /// Submission login policy (Exchange's LoginType, as for POP3 and IMAP).
    pub login_type: LoginType,
    /// Passwords (AUTH PLAIN/LOGIN) allowed at all on submission.
    pub allow_basic_auth: bool,
    /// The SASL mechanisms offered (upper case); `None`: every one that works
    /// on the connection (`sasl-mechanisms`).
    pub sasl_mechanisms: Option<Vec<String>>,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_connections_per_user: usize,
    /// Exchange-style protocol log, when switched on.
    pub protocol_log: Option<Arc<casella_net::ProtocolLog>>,
    pub auth_failure_delay: Duration,
    /// Messages one user may submit per hour (0: no limit).
    pub max_messages_per_hour: u32,
    /// How long the outbound queue keeps trying a remote recipient.
    pub queue_lifetime: Duration,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            hostname: "localhost".into(),
            banner: "ESMTP casella ready".into(),
            max_message_size: 36_700_160,
            max_recipients: 100,
            max_command_size: 4096,
            timeout: Duration::from_secs(300),
            preauth_timeout: Duration::from_secs(300),
            login_type: LoginType::SecureLogin,
            allow_basic_auth: true,
            sasl_mechanisms: None,
            max_connections: 10_000,
            // Exchange's MaxConnectionFromSingleIP default; trusted networks
            // are exempt.
            max_connections_per_ip: 50,
            max_connections_per_user: 16,
            protocol_log: None,
            auth_failure_delay: Duration::from_secs(1),
            max_messages_per_hour: 1000,
            queue_lifetime: Duration::from_secs(5 * 24 * 3600),
        }
    }
}

/// What every session of one listener shares.
pub(crate) struct Shared {
    pub config: Live<SmtpConfig>,
    pub limits: ConnectionLimits,
    /// Sessions per account, for max-connections-per-user.
    pub users: Counter<AccountId>,
    pub directory: Arc<Directory>,
    pub tls: Option<TlsAcceptor>,
    /// Woken after a message was queued for remote recipients.
    pub outbound: Option<Arc<Notify>>,
    pub rate: Arc<RateLimiter>,
}

pub struct SmtpService {
    mode: Mode,
    shared: Arc<Shared>,
    /// On a front end (submission): where a session goes right after AUTH.
    proxy: Option<Arc<dyn LoginProxy>>,
}

impl SmtpService {
    pub fn new(
        mode: Mode,
        config: Live<SmtpConfig>,
        directory: Arc<Directory>,
        tls: Option<TlsAcceptor>,
    ) -> SmtpService {
        SmtpService::with_outbound(mode, config, directory, tls, None, Arc::default())
    }

    /// A service that queues remote recipients and wakes `outbound` (submission),
    /// counting messages per user in `rate` (shared by submission listeners).
    pub fn with_outbound(
        mode: Mode,
        config: Live<SmtpConfig>,
        directory: Arc<Directory>,
        tls: Option<TlsAcceptor>,
        outbound: Option<Arc<Notify>>,
        rate: Arc<RateLimiter>,
    ) -> SmtpService {
        SmtpService {
            mode,
            shared: Arc::new(Shared {
                config,
                limits: ConnectionLimits::default(),
                users: Counter::default(),
                directory,
                tls,
                outbound,
                rate,
            }),
            proxy: None,
        }
    }

    /// A front end's submission service: sessions log in here and are then handed
    /// over to the account's back end through `proxy`.
    pub fn with_proxy(mut self, proxy: Arc<dyn LoginProxy>) -> SmtpService {
        self.proxy = Some(proxy);
        self
    }

    fn session<S: SessionStream>(
        &self,
        info: ConnectionInfo,
        tls_active: bool,
        conn: &Connection<S>,
        proxy: Option<Arc<dyn LoginProxy>>,
    ) -> session::Session {
        let starttls = conn.can_start_tls();
        session::Session::new(
            self.mode,
            self.shared.clone(),
            proxy,
            info,
            tls_active,
            starttls,
        )
    }

    /// Runs one session over `stream`: a TCP or TLS connection, or an
    /// in-memory one (`tokio::io::duplex`) in tests.
    pub async fn serve_stream<S: SessionStream>(
        &self,
        stream: S,
        info: ConnectionInfo,
        signal: ShutdownSignal,
    ) {
        let tls_active = stream.is_tls();
        let conn = Connection::new(stream, signal, self.shared.tls.clone());
        let session = self.session(info, tls_active, &conn, self.proxy.clone());
        session.run(conn).await
    }
}

impl Handler for SmtpService {
    fn admit(&self, remote: IpAddr) -> Result<Admitted, Vec<u8>> {
        let c = self.shared.config.get();
        self.shared
            .limits
            .admit(
                remote,
                c.max_connections,
                self.shared
                    .directory
                    .connections_per_ip(remote, c.max_connections_per_ip),
            )
            .map_err(|r| match r {
                Refusal::ServerFull => {
                    b"421 4.7.0 Too many connections, try again later\r\n".to_vec()
                }
                Refusal::TooManyFromAddress => {
                    b"421 4.7.0 Too many connections from your address, try again later\r\n"
                        .to_vec()
                }
            })
    }

    fn handle(
        &self,
        stream: Stream,
        info: ConnectionInfo,
        signal: ShutdownSignal,
        admitted: Admitted,
    ) -> SessionFuture {
        let tls_active = stream.is_tls();
        let conn = Connection::new(stream, signal, self.shared.tls.clone());
        let session = self.session(info, tls_active, &conn, self.proxy.clone());
        Box::pin(async move {
            let _admitted = admitted;
            session.run(conn).await
        })
    }

    fn busy_reply(&self) -> &'static [u8] {
        b"421 4.7.0 Too many connections, try again later\r\n"
    }
}

/// Submission sessions handed over by front ends (the `submission-internal`
/// listener).
impl Backend for SmtpService {
    fn admit_handover(&self, remote: IpAddr) -> Result<Admitted, Vec<u8>> {
        let c = self.shared.config.get();
        self.shared
            .limits
            .admit(remote, c.max_connections, usize::MAX)
            .map_err(|_| {
                b"XCASELLA-BUSY The submission service has too many connections\r\n".to_vec()
            })
    }

    fn start(
        &self,
        stream: Stream,
        info: ConnectionInfo,
        who: Handover,
        signal: ShutdownSignal,
        admitted: Admitted,
    ) -> SessionFuture {
        // The session sees the client, not the front end.
        let info = ConnectionInfo {
            remote: who.client,
            ..info
        };
        // The client's TLS is the front end's; STARTTLS is not offered here.
        let conn = Connection::new(stream, signal, None);
        let session = self.session(info, who.tls, &conn, None);
        Box::pin(async move {
            let _admitted = admitted;
            session.run_handed_over(conn, who).await
        })
    }
}
