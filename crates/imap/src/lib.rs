//! casella-imap: IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) server sessions.
//!
//! Owns: the session state machine (not authenticated → authenticated → selected →
//! logout), each command's behaviour, the selected mailbox's view (sequence numbers,
//! flags, \Recent) and how other sessions' changes reach it (EXISTS, EXPUNGE, FETCH
//! FLAGS at the points RFC 9051 §7.5.1 allows), and IDLE. On a front end a session
//! is handed over to the account's back end right after LOGIN/AUTHENTICATE
//! (casella-proxy); `imap-internal` sessions start in the authenticated state.
//! Must not: parse or encode wire syntax by hand where `casella-proto-imap` does it,
//! or touch storage below the `MailStore` API.
//! Invariants:
//! - A session's sequence numbers change only when it reports them: an expunge by
//!   another session stays in this view (as a ghost) until EXPUNGE may be sent.
//! - No EXPUNGE is sent while answering FETCH, STORE or SEARCH (non-UID forms).
//! - Nothing is answered OK before the store committed it.

mod capability;
mod cmd;
mod context;
mod handler;
mod listing;
mod names;
pub mod search;
mod session;
pub mod sort;
pub mod thread;
mod view;

/// What the fuzz targets reach that the API does not offer (feature `fuzzing`):
/// SEARCH's narrowing by the store's text index.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use crate::cmd::search::{required_text, without_answered};
}

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
use tokio_rustls::TlsAcceptor;

/// The longest command line by default, literals excluded: Dovecot's
/// `imap_max_line_length`. An ID at RFC 2971 §3.3's maximum (30 field-value
/// pairs, fields of 30 octets, values of 1,024) is a line of about 32 KiB, and
/// clients send it before login.
pub const DEFAULT_MAX_COMMAND_SIZE: usize = 64 * 1024;

/// IMAP settings (Set-ImapSettings names, kebab-case in the config file).
#[derive(Debug, Clone)]
pub struct ImapConfig {
    pub hostname: String,
    /// Text of the greeting after the capability code.
    pub banner: String,
    pub login_type: LoginType,
    /// Passwords (LOGIN, AUTHENTICATE PLAIN/LOGIN) allowed at all.
    pub allow_basic_auth: bool,
    /// The SASL mechanisms offered (upper case); `None`: every one that works
    /// on the connection (`sasl-mechanisms`).
    pub sasl_mechanisms: Option<Vec<String>>,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_connections_per_user: usize,
    /// Exchange-style protocol log, when switched on.
    pub protocol_log: Option<Arc<casella_net::ProtocolLog>>,
    /// Longest command line, literals excluded ([`DEFAULT_MAX_COMMAND_SIZE`]).
    pub max_command_size: usize,
    /// Largest message APPEND accepts (advertised as APPENDLIMIT) and largest literal.
    pub append_limit: u32,
    pub preauth_timeout: Duration,
    /// Idle time allowed after login (RFC 9051 §5.4: at least 30 minutes).
    pub auth_timeout: Duration,
    pub auth_failure_delay: Duration,
    /// What a client is shown of each message (Exchange's MessageRetrievalFormat
    /// and SuppressReadReceipt); an account may override it.
    pub presentation: casella_mime::Presentation,
    /// With a conversion in effect, RFC822.SIZE is the converted message's size
    /// (Exchange's EnableExactRFC822Size); otherwise the stored size.
    pub exact_rfc822_size: bool,
    /// LIST shows hidden folders (names starting with "."; Exchange's
    /// ShowHiddenFoldersEnabled).
    pub show_hidden_folders: bool,
    /// SEARCH asks the store's text index only in mailboxes of at least this
    /// many messages; `None`: by field (see `cmd::search`).
    pub search_index_min_messages: Option<usize>,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            hostname: "localhost".into(),
            banner: "The casella IMAP4 service is ready.".into(),
            login_type: LoginType::SecureLogin,
            allow_basic_auth: true,
            sasl_mechanisms: None,
            max_connections: 10_000,
            // Exchange's MaxConnectionFromSingleIP default; trusted networks
            // are exempt.
            max_connections_per_ip: 50,
            max_connections_per_user: 16,
            protocol_log: None,
            max_command_size: DEFAULT_MAX_COMMAND_SIZE,
            append_limit: 36_700_160,
            preauth_timeout: Duration::from_secs(60),
            auth_timeout: Duration::from_secs(1800),
            auth_failure_delay: Duration::from_secs(1),
            presentation: casella_mime::Presentation::default(),
            exact_rfc822_size: false,
            show_hidden_folders: false,
            search_index_min_messages: None,
        }
    }
}

pub(crate) struct Shared {
    pub config: Live<ImapConfig>,
    pub directory: Arc<Directory>,
    pub tls: Option<TlsAcceptor>,
    pub limits: ConnectionLimits,
    /// Sessions per account, for max-connections-per-user.
    pub users: Counter<AccountId>,
    /// On a front end: where a session goes right after its login.
    pub proxy: Option<Arc<dyn LoginProxy>>,
}

/// The IMAP service: shared by the imap and imaps listeners.
pub struct ImapService {
    shared: Arc<Shared>,
}

impl ImapService {
    pub fn new(
        config: Live<ImapConfig>,
        directory: Arc<Directory>,
        tls: Option<TlsAcceptor>,
    ) -> ImapService {
        ImapService::build(config, directory, tls, None)
    }

    /// A front end's service: sessions log in here and are then handed over to
    /// the account's back end through `proxy`.
    pub fn with_proxy(
        config: Live<ImapConfig>,
        directory: Arc<Directory>,
        tls: Option<TlsAcceptor>,
        proxy: Arc<dyn LoginProxy>,
    ) -> ImapService {
        ImapService::build(config, directory, tls, Some(proxy))
    }

    fn build(
        config: Live<ImapConfig>,
        directory: Arc<Directory>,
        tls: Option<TlsAcceptor>,
        proxy: Option<Arc<dyn LoginProxy>>,
    ) -> ImapService {
        ImapService {
            shared: Arc::new(Shared {
                config,
                directory,
                tls,
                limits: ConnectionLimits::default(),
                users: Counter::default(),
                proxy,
            }),
        }
    }

    fn session<S: SessionStream>(
        &self,
        info: ConnectionInfo,
        tls_active: bool,
        conn: &Connection<S>,
    ) -> session::Session {
        let starttls = conn.can_start_tls();
        session::Session::new(self.shared.clone(), info, tls_active, starttls)
    }

    /// Runs one IMAP session over `stream`: a TCP or TLS connection, or an
    /// in-memory one (`tokio::io::duplex`) in tests.
    pub async fn serve_stream<S: SessionStream>(
        &self,
        stream: S,
        info: ConnectionInfo,
        signal: ShutdownSignal,
    ) {
        let tls_active = stream.is_tls();
        let conn = Connection::new(stream, signal, self.shared.tls.clone());
        self.session(info, tls_active, &conn).run(conn).await
    }
}

impl Handler for ImapService {
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
                    b"* BYE [UNAVAILABLE] The IMAP service has too many connections, try again later\r\n".to_vec()
                }
                Refusal::TooManyFromAddress => {
                    b"* BYE [UNAVAILABLE] Too many connections from your address, try again later\r\n".to_vec()
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
        let session = self.session(info, tls_active, &conn);
        Box::pin(async move {
            let _admitted = admitted;
            session.run(conn).await
        })
    }

    fn busy_reply(&self) -> &'static [u8] {
        b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n"
    }
}

/// Sessions handed over by front ends (the `imap-internal` listener).
impl Backend for ImapService {
    fn admit_handover(&self, remote: IpAddr) -> Result<Admitted, Vec<u8>> {
        let c = self.shared.config.get();
        self.shared
            .limits
            .admit(remote, c.max_connections, usize::MAX)
            .map_err(|_| b"XCASELLA-BUSY The IMAP service has too many connections\r\n".to_vec())
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
        let session = self.session(info, who.tls, &conn);
        Box::pin(async move {
            let _admitted = admitted;
            session.run_handed_over(conn, &who.address).await
        })
    }
}
