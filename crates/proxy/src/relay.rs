//! After the hand-over the front end only copies bytes, both ways, until either
//! side closes: IDLE, literals, STARTTLS refusals, everything is the back end's.

use std::time::Duration;

use casella_net::ShutdownSignal;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::Upstream;

/// After the client closed, how long the back end may take to finish its last
/// reply.
const LINGER: Duration = Duration::from_secs(5);

/// Relays between the client and the back end until one of them closes (or the
/// front end shuts down, which closes both: a client reconnects). Bytes either side
/// sent ahead (pipelined after the login, or buffered) go first.
pub async fn relay<C>(client: BufReader<C>, upstream: Upstream, mut signal: ShutdownSignal)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let ahead_up = client.buffer().to_vec();
    let client = client.into_inner();
    let Upstream {
        reader, peer, site, ..
    } = upstream;
    let ahead_down = reader.buffer().to_vec();
    let back = reader.into_inner();
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (mut back_rx, mut back_tx) = back.into_split();
    let early = async {
        back_tx.write_all(&ahead_up).await?;
        client_tx.write_all(&ahead_down).await?;
        client_tx.flush().await
    };
    if early.await.is_err() {
        return;
    }
    let up = async {
        let n = tokio::io::copy(&mut client_rx, &mut back_tx).await;
        let _ = back_tx.shutdown().await;
        n
    };
    let down = async {
        let n = tokio::io::copy(&mut back_rx, &mut client_tx).await;
        let _ = client_tx.shutdown().await;
        n
    };
    tokio::pin!(up, down);
    let ended = tokio::select! {
        n = &mut up => {
            // The client is done; let the back end finish what it was saying.
            let _ = tokio::time::timeout(LINGER, &mut down).await;
            format!("client closed after {} bytes", n.unwrap_or(0))
        }
        n = &mut down => format!("back end closed after {} bytes", n.unwrap_or(0)),
        _ = signal.wait() => "shutting down".to_string(),
    };
    tracing::debug!(%site, backend = %peer, %ended, "relay ended");
}
