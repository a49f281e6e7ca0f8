//! casella-pop3: the POP3 service — RFC 1939, with CAPA (RFC 2449), STLS (RFC 2595),
//! SASL (RFC 5034), response codes (RFC 3206) and UTF8 (RFC 6856).
//!
//! Owns: the POP3 session state machine and its replies. On a front end a session
//! is handed over to the account's back end right after PASS/AUTH (casella-proxy);
//! on a back end, `pop3-internal` sessions start with the maildrop opened and locked.
//! Must not: touch storage below the `MailStore` API or check passwords itself
//! (the directory does).
//! Invariants: a maildrop is locked for the whole TRANSACTION state: a session
//! checks its lock before each command and ends when it was lost (a shared store's
//! lease), and writes only through the lock's fenced store; DELE only marks,
//! and the marked messages are removed at QUIT in one store transaction; a session
//! that ends any other way removes nothing (RFC 1939 §6).

mod command;
mod handler;
mod login;
mod maildrop;
mod session;

use std::sync::Arc;
use std::time::Duration;

use casella_directory::{Directory, LoginType};
use std::net::IpAddr;

use casella_net::{
    Admitted, Connection, ConnectionInfo, ConnectionLimits, Counter, Handler, Live, Refusal,
    SessionStream, ShutdownSignal, Stream,
};
use casella_proxy::{Backend, Handover, LoginProxy};
use casella_store::AccountId;
use tokio_rustls::TlsAcceptor;

pub use command::{Command, ParseError, parse as parse_command};

/// The order POP3 numbers messages in (Exchange's MessageSortOrder... SortOrder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// Oldest first (message 1 is the oldest).
    #[default]
    Ascending,
    /// Newest first.
    Descending,
}

/// POP3 settings (Exchange's Set-PopSettings names in kebab-case). A session
/// takes a snapshot when it starts; changes apply to new sessions.
#[derive(Debug, Clone)]
pub struct Pop3Config {
    /// Host name (for logs).
    pub hostname: String,
    /// Text of the greeting after "+OK ".
    pub banner: String,
    pub login_type: LoginType,
    /// Passwords (USER/PASS, AUTH PLAIN/LOGIN) allowed at all (Exchange Online's
    /// basic-authentication switch).
    pub allow_basic_auth: bool,
    /// The SASL mechanisms offered (upper case); `None`: every one that works
    /// on the connection (`sasl-mechanisms`).
    pub sasl_mechanisms: Option<Vec<String>>,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_connections_per_user: usize,
    pub sort_order: SortOrder,
    /// What a client is shown of each message (Exchange's MessageRetrievalFormat
    /// and SuppressReadReceipt); an account may override it.
    pub presentation: casella_mime::Presentation,
    /// With a conversion in effect, LIST and STAT give the size of the converted
    /// message (computed at login) instead of the stored one (Exchange's
    /// EnableExactRFC822Size; off by default, as there).
    pub exact_rfc822_size: bool,
    /// Exchange-style protocol log, when switched on.
    pub protocol_log: Option<Arc<casella_net::ProtocolLog>>,
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
            banner: "The casella POP3 service is ready.".into(),
            login_type: LoginType::SecureLogin,
            allow_basic_auth: true,
            sasl_mechanisms: None,
            max_connections: 10_000,
            // Exchange's MaxConnectionFromSingleIP default; trusted networks
            // are exempt.
            max_connections_per_ip: 50,
            max_connections_per_user: 16,
            sort_order: SortOrder::Ascending,
            presentation: casella_mime::Presentation::default(),
            exact_rfc822_size: false,
            protocol_log: None,
            max_command_size: 512,
            preauth_timeout: Duration::from_secs(60),
            auth_timeout: Duration::from_secs(600),
            auth_failure_delay: Duration::from_secs(1),
        }
    }
}

/// The POP3 service: one per server, shared by its pop3 and pop3s listeners.
pub struct Pop3Service {
    config: Live<Pop3Config>,
    directory: Arc<Directory>,
    /// For STLS; `None` when no certificate is available.
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    users: Arc<Counter<AccountId>>,
    /// On a front end: where a session goes right after its login.
    proxy: Option<Arc<dyn LoginProxy>>,
}

impl Pop3Service {
    pub fn new(
        config: Live<Pop3Config>,
        directory: Arc<Directory>,
        tls: Option<TlsAcceptor>,
    ) -> Pop3Service {
        Pop3Service {
            config,
            directory,
            tls,
            limits: ConnectionLimits::default(),
            users: Arc::default(),
            proxy: None,
        }
    }

    /// A front end's service: sessions log in here and are then handed over to
    /// the account's back end through `proxy`.
    pub fn with_proxy(
        config: Live<Pop3Config>,
        directory: Arc<Directory>,
        tls: Option<TlsAcceptor>,
        proxy: Arc<dyn LoginProxy>,
    ) -> Pop3Service {
        Pop3Service {
            proxy: Some(proxy),
            ..Pop3Service::new(config, directory, tls)
        }
    }

    fn session<S: SessionStream>(
        &self,
        info: ConnectionInfo,
        tls_active: bool,
        conn: &Connection<S>,
    ) -> session::Session {
        session::Session::new(
            self.config.get(),
            self.directory.clone(),
            self.users.clone(),
            self.proxy.clone(),
            info,
            tls_active,
            conn.can_start_tls(),
        )
    }

    /// Runs one POP3 session over `stream`: a TCP or TLS connection, or an
    /// in-memory one (`tokio::io::duplex`) in tests.
    pub async fn serve_stream<S: SessionStream>(
        &self,
        stream: S,
        info: ConnectionInfo,
        signal: ShutdownSignal,
    ) {
        let tls_active = stream.is_tls();
        let conn = Connection::new(stream, signal, self.tls.clone());
        self.session(info, tls_active, &conn).run(conn).await
    }
}

impl Handler for Pop3Service {
    fn admit(&self, remote: IpAddr) -> Result<Admitted, Vec<u8>> {
        let c = self.config.get();
        self.limits
            .admit(
                remote,
                c.max_connections,
                self.directory
                    .connections_per_ip(remote, c.max_connections_per_ip),
            )
            .map_err(|r| match r {
                Refusal::ServerFull => {
                    b"-ERR [SYS/TEMP] The POP3 service has too many connections, try again later\r\n".to_vec()
                }
                Refusal::TooManyFromAddress => {
                    b"-ERR [SYS/TEMP] Too many connections from your address, try again later\r\n".to_vec()
                }
            })
    }

    fn handle(
        &self,
        stream: Stream,
        info: ConnectionInfo,
        signal: ShutdownSignal,
        admitted: Admitted,
    ) -> casella_net::SessionFuture {
        let tls_active = stream.is_tls();
        let conn = Connection::new(stream, signal, self.tls.clone());
        let session = self.session(info, tls_active, &conn);
        Box::pin(async move {
            let _admitted = admitted;
            session.run(conn).await
        })
    }

    fn busy_reply(&self) -> &'static [u8] {
        b"-ERR [SYS/TEMP] Too many connections, try again later\r\n"
    }
}

/// Sessions handed over by front ends (the `pop3-internal` listener).
impl Backend for Pop3Service {
    fn admit_handover(&self, remote: IpAddr) -> Result<Admitted, Vec<u8>> {
        let c = self.config.get();
        self.limits
            .admit(remote, c.max_connections, usize::MAX)
            .map_err(|_| b"XCASELLA-BUSY The POP3 service has too many connections\r\n".to_vec())
    }

    fn start(
        &self,
        stream: Stream,
        info: ConnectionInfo,
        who: Handover,
        signal: ShutdownSignal,
        admitted: Admitted,
    ) -> casella_net::SessionFuture {
        // The session sees the client, not the front end.
        let info = ConnectionInfo {
            remote: who.client,
            ..info
        };
        // The client's TLS is the front end's; STLS is not offered here.
        let conn = Connection::new(stream, signal, None);
        let session = self.session(info, who.tls, &conn);
        Box::pin(async move {
            let _admitted = admitted;
            session.run_handed_over(conn, &who).await
        })
    }
}
