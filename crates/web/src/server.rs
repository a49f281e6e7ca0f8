//! The HTTP(S) accept loop: one task per connection, HTTP/1.1 with keep-alive,
//! a bounded time to send request headers, and a graceful end at shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use casella_net::{ShutdownSignal, Stream};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a TLS handshake may take.
const TLS_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the request arrived over TLS (cookies are then marked Secure).
#[derive(Debug, Clone, Copy)]
pub struct Transport {
    pub tls: bool,
}

/// Serves `app` on `listener` until shutdown; with `tls`, every connection
/// starts with a TLS handshake (the `https` listener).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    signal: ShutdownSignal,
) {
    let mut stop = signal.clone();
    loop {
        let (tcp, remote) = tokio::select! {
            _ = stop.wait() => return,
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let signal = signal.clone();
        tokio::spawn(async move {
            let stream = match tls {
                None => Stream::Plain(tcp),
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => Stream::Tls(Box::new(s)),
                        _ => return,
                    }
                }
            };
            connection(stream, remote, app, signal).await;
        });
    }
}

async fn connection(stream: Stream, remote: SocketAddr, app: Router, mut signal: ShutdownSignal) {
    let transport = Transport {
        tls: matches!(stream, Stream::Tls(_)),
    };
    let app = app
        .layer(axum::Extension(ConnectInfo(remote)))
        .layer(axum::Extension(transport));
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%remote, error = %e, "HTTP connection ended with an error");
            }
        }
        _ = signal.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}
