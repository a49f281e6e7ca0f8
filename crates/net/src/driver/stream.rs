//! What the session driver needs of a connection beyond reading and writing:
//! whether it is TLS, its channel binding, and whether (and how) it can become
//! TLS in place. A TCP [`Stream`] can; an in-memory `tokio::io::DuplexStream`
//! (handler tests) cannot, so STARTTLS is simply not offered on it.

use std::future::Future;
use std::io;

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio_rustls::TlsAcceptor;

use crate::Stream;

pub trait SessionStream: AsyncRead + AsyncWrite + Unpin + Send + Sized + 'static {
    fn is_tls(&self) -> bool {
        false
    }

    /// RFC 9266 tls-exporter channel binding; `None` without TLS.
    fn tls_exporter(&self) -> Option<Vec<u8>> {
        None
    }

    /// Whether [`SessionStream::start_tls`] can work on this stream now.
    fn can_start_tls(&self) -> bool {
        false
    }

    /// Runs the server side of a TLS handshake on this stream (STARTTLS).
    fn start_tls(self, acceptor: &TlsAcceptor) -> impl Future<Output = io::Result<Self>> + Send {
        let _ = (self, acceptor);
        async {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this stream cannot start TLS",
            ))
        }
    }
}

impl SessionStream for Stream {
    fn is_tls(&self) -> bool {
        Stream::is_tls(self)
    }

    fn tls_exporter(&self) -> Option<Vec<u8>> {
        Stream::tls_exporter(self)
    }

    fn can_start_tls(&self) -> bool {
        !Stream::is_tls(self)
    }

    fn start_tls(self, acceptor: &TlsAcceptor) -> impl Future<Output = io::Result<Self>> + Send {
        self.into_tls(acceptor)
    }
}

/// In-memory connections, for testing handlers without a socket.
impl SessionStream for DuplexStream {}
