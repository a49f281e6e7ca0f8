//! The front end's side: which back end serves an account, connecting to it,
//! proving the cluster secret and handing the login over.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use casella_net::read_line;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::proof::{REFUSED, parse_challenge, proof_line};
use crate::{ClusterSecret, Handover};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Longest line read from a back end during the hand-over.
const MAX_LINE: usize = 16 * 1024;

/// The hook a session calls right after a successful login, on a front end.
pub trait LoginProxy: Send + Sync + 'static {
    /// Hands `who`, just authenticated for `protocol` ("imap", "pop3",
    /// "submission"), over to the back end named by the account's `backend`
    /// attribute. On `Ok`, the upstream's `reply` is the back end's answer — its
    /// reply to a successful login, or a refusal — and the caller decides which.
    fn hand_over<'a>(
        &'a self,
        protocol: &'static str,
        backend: Option<&'a str>,
        who: &'a Handover,
    ) -> BoxFuture<'a, Result<Upstream, ProxyError>>;
}

/// A back end that took a hand-over, with its first reply.
pub struct Upstream {
    /// The back end's answer (without CRLF).
    pub reply: String,
    /// The site and address it came from (for logs).
    pub site: String,
    pub peer: SocketAddr,
    pub(crate) reader: BufReader<TcpStream>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("reply", &self.reply)
            .field("site", &self.site)
            .field("peer", &self.peer)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the account has no back end and no default-backend is configured")]
    NoBackend,
    #[error("site {0:?} is not in [sites]")]
    UnknownSite(String),
    #[error("site {site:?} has no {protocol} addresses")]
    NoAddress {
        site: String,
        protocol: &'static str,
    },
    #[error("no back end of site {site:?} answered ({why})")]
    Unreachable { site: String, why: String },
    #[error(
        "the back end {peer} refused our proof of the cluster secret: is [cluster] \
         secret-file the same on front and back ends?"
    )]
    ProofRefused { peer: SocketAddr },
}

impl ProxyError {
    /// What the client is told (after its protocol's temporary-failure code).
    pub fn client_text(&self) -> &'static str {
        match self {
            ProxyError::NoBackend | ProxyError::UnknownSite(_) | ProxyError::NoAddress { .. } => {
                "No mailbox server is assigned to this account, try again later or contact your administrator"
            }
            ProxyError::Unreachable { .. } | ProxyError::ProofRefused { .. } => {
                "The mailbox server is not reachable, try again later"
            }
        }
    }
}

/// One site: the internal listeners of its back ends, per protocol, tried in turn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Site {
    /// Protocol ("imap", "pop3", "submission") → `host:port` of `*-internal`
    /// listeners.
    pub addresses: BTreeMap<String, Vec<String>>,
}

/// The front end's [`LoginProxy`]: sites from `[sites]`, the cluster secret.
pub struct Connector {
    secret: Arc<ClusterSecret>,
    sites: BTreeMap<String, Site>,
    default_site: Option<String>,
    /// For connecting and for the back end's challenge, per address.
    connect_timeout: Duration,
    /// For the back end's reply to the hand-over (it opens the mailbox).
    login_timeout: Duration,
    /// Where the next hand-over starts among a site's addresses.
    next: AtomicUsize,
}

impl Connector {
    pub fn new(
        secret: Arc<ClusterSecret>,
        sites: BTreeMap<String, Site>,
        default_site: Option<String>,
        connect_timeout: Duration,
    ) -> Connector {
        Connector {
            secret,
            sites,
            default_site,
            connect_timeout,
            login_timeout: Duration::from_secs(30),
            next: AtomicUsize::new(0),
        }
    }

    async fn connect(
        &self,
        protocol: &'static str,
        backend: Option<&str>,
        who: &Handover,
    ) -> Result<Upstream, ProxyError> {
        let site_name = backend
            .or(self.default_site.as_deref())
            .ok_or(ProxyError::NoBackend)?;
        let site = self
            .sites
            .get(site_name)
            .ok_or_else(|| ProxyError::UnknownSite(site_name.to_string()))?;
        let addresses = site
            .addresses
            .get(protocol)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| ProxyError::NoAddress {
                site: site_name.to_string(),
                protocol,
            })?;
        // Spread sessions over the site's back ends; fail over in turn.
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut why = Vec::new();
        for i in 0..addresses.len() {
            let address = &addresses[(start + i) % addresses.len()];
            match self.attempt(protocol, address, who).await {
                Ok((reply, peer, reader)) => {
                    return Ok(Upstream {
                        reply,
                        site: site_name.to_string(),
                        peer,
                        reader,
                    });
                }
                Err(Attempt::Refused(peer)) => return Err(ProxyError::ProofRefused { peer }),
                Err(Attempt::Failed(e)) => {
                    tracing::warn!(protocol, site = site_name, backend = %address, error = %e, "back end not usable");
                    why.push(format!("{address}: {e}"));
                }
            }
        }
        Err(ProxyError::Unreachable {
            site: site_name.to_string(),
            why: why.join("; "),
        })
    }

    async fn attempt(
        &self,
        protocol: &'static str,
        address: &str,
        who: &Handover,
    ) -> Result<(String, SocketAddr, BufReader<TcpStream>), Attempt> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| Attempt::Failed("connect timed out".into()))?
            .map_err(|e| Attempt::Failed(e.to_string()))?;
        let peer = tcp
            .peer_addr()
            .map_err(|e| Attempt::Failed(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        // A back end that vanishes without a reset is noticed within minutes, not
        // when the client gives up.
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(60))
            .with_interval(Duration::from_secs(15));
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
        let mut reader = BufReader::with_capacity(8192, tcp);
        let mut line = Vec::new();
        match tokio::time::timeout(
            self.connect_timeout,
            read_line(&mut reader, &mut line, MAX_LINE),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Attempt::Failed(format!("reading its challenge: {e}"))),
            Err(_) => return Err(Attempt::Failed("no challenge in time".into())),
        }
        let challenge = String::from_utf8_lossy(&line).into_owned();
        let nonce = parse_challenge(&challenge, protocol)
            .map_err(|e| Attempt::Failed(format!("{e}; it said {:?}", truncate(&challenge))))?;
        let mut proof = proof_line(&self.secret, protocol, &nonce, who);
        proof.push_str("\r\n");
        reader
            .get_mut()
            .write_all(proof.as_bytes())
            .await
            .map_err(|e| Attempt::Failed(e.to_string()))?;
        match tokio::time::timeout(
            self.login_timeout,
            read_line(&mut reader, &mut line, MAX_LINE),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Attempt::Failed(format!("reading its reply: {e}"))),
            Err(_) => return Err(Attempt::Failed("no reply in time".into())),
        }
        let reply = String::from_utf8_lossy(&line).into_owned();
        if reply.starts_with(REFUSED) {
            return Err(Attempt::Refused(peer));
        }
        Ok((reply, peer, reader))
    }
}

enum Attempt {
    /// Try the next address.
    Failed(String),
    /// The proof was refused: a configuration error, not an outage.
    Refused(SocketAddr),
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl LoginProxy for Connector {
    fn hand_over<'a>(
        &'a self,
        protocol: &'static str,
        backend: Option<&'a str>,
        who: &'a Handover,
    ) -> BoxFuture<'a, Result<Upstream, ProxyError>> {
        Box::pin(self.connect(protocol, backend, who))
    }
}
