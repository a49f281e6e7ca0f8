//! Binding listeners and running their accept loops.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::{Admitted, Shutdown, ShutdownSignal, Stream};

/// How long an implicit-TLS client may take to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a connection came from and arrived.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionInfo {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The listener is implicit TLS (pop3s, imaps, submissions).
    pub implicit_tls: bool,
}

/// One listening socket as configured: protocol name, address, implicit TLS or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub protocol: String,
    pub addr: SocketAddr,
    pub implicit_tls: bool,
}

pub type SessionFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A protocol's session entry point.
pub trait Handler: Send + Sync + 'static {
    /// Decides whether a new connection from `remote` may start (the service's
    /// connection limits). `Err` carries the refusal to send before closing, e.g.
    /// `-ERR [SYS/TEMP] Too many connections from your address\r\n`.
    fn admit(&self, remote: IpAddr) -> Result<Admitted, Vec<u8>>;
    /// Runs one session to its end; `admitted` is held until it ends.
    fn handle(
        &self,
        stream: Stream,
        info: ConnectionInfo,
        signal: ShutdownSignal,
        admitted: Admitted,
    ) -> SessionFuture;
    /// What to send when even the listener's hard cap is reached.
    fn busy_reply(&self) -> &'static [u8];
}

/// Binds a TCP listener. IPv6 sockets are IPv6-only, so `0.0.0.0:P` and `[::]:P`
/// can both be bound, as Exchange's default bindings are.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let domain = if addr.is_ipv6() {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Accepts connections until shutdown, each in its own task. At most
/// `max_connections` sessions run at once on this listener; beyond that a
/// connection gets the handler's busy reply and is closed.
pub async fn serve(
    protocol: String,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<dyn Handler>,
    shutdown: Shutdown,
    max_connections: usize,
) {
    let limit = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut signal = shutdown.signal();
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "listener has no local address");
            return;
        }
    };
    loop {
        let (tcp, remote) = tokio::select! {
            _ = signal.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, %local, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let info = ConnectionInfo {
            local,
            remote,
            implicit_tls: tls.is_some(),
        };
        let permit = match limit.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                tracing::warn!(%remote, %local, "listener connection cap reached");
                let busy = handler.busy_reply().to_vec();
                tokio::spawn(refuse(tcp, tls.clone(), busy));
                continue;
            }
        };
        let admitted = match handler.admit(remote.ip()) {
            Ok(a) => a,
            Err(reply) => {
                tracing::warn!(%remote, %local, "connection refused by the service's limits");
                tokio::spawn(refuse(tcp, tls.clone(), reply));
                continue;
            }
        };
        let guard = shutdown.track();
        let handler = handler.clone();
        let tls = tls.clone();
        let (registration, ended) = crate::LiveSessions::global().register(&protocol, &info);
        let session_signal = shutdown.signal().with_end(ended);
        tokio::spawn(async move {
            let _permit = permit;
            let _guard = guard;
            let _registration = registration;
            let stream = match tls {
                None => Stream::Plain(tcp),
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => Stream::Tls(Box::new(s)),
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            handler.handle(stream, info, session_signal, admitted).await;
        });
    }
}

async fn refuse(tcp: TcpStream, tls: Option<TlsAcceptor>, reply: Vec<u8>) {
    let attempt = async {
        let mut stream = match tls {
            None => Stream::Plain(tcp),
            Some(a) => Stream::Tls(Box::new(a.accept(tcp).await?)),
        };
        stream.write_all(&reply).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), attempt).await;
}
