//! The back end's side: the `*-internal` listeners. A connection must prove the
//! cluster secret before anything else; then the protocol's session starts already
//! logged in as the account handed over.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use casella_net::{
    Admitted, ConnectionInfo, Handler, SessionFuture, ShutdownSignal, Stream, read_line,
};
use tokio::io::{AsyncWriteExt, BufReader};

use crate::proof::{REFUSED, challenge_line, new_nonce, verify_proof};
use crate::{ClusterSecret, Handover};

/// How long a front end may take to answer the challenge.
const PROOF_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest proof line accepted.
const MAX_PROOF_LINE: usize = 4096;

/// A protocol service that can serve sessions handed over by front ends.
pub trait Backend: Send + Sync + 'static {
    /// Admits a connection from a front end: the service's total limit only, as
    /// all of them come from a few front-end addresses.
    fn admit_handover(&self, remote: IpAddr) -> Result<Admitted, Vec<u8>>;

    /// Runs a session that starts logged in as `who.address`: it answers with the
    /// protocol's reply to a successful login (which the front end passes on to the
    /// client) or with a refusal, and then closes.
    fn start(
        &self,
        stream: Stream,
        info: ConnectionInfo,
        who: Handover,
        signal: ShutdownSignal,
        admitted: Admitted,
    ) -> SessionFuture;
}

/// The `imap-internal`, `pop3-internal` and `submission-internal` listeners.
pub struct InternalListener {
    protocol: &'static str,
    secret: Arc<ClusterSecret>,
    backend: Arc<dyn Backend>,
}

impl InternalListener {
    pub fn new(
        protocol: &'static str,
        secret: Arc<ClusterSecret>,
        backend: Arc<dyn Backend>,
    ) -> InternalListener {
        InternalListener {
            protocol,
            secret,
            backend,
        }
    }
}

impl Handler for InternalListener {
    fn admit(&self, remote: IpAddr) -> Result<Admitted, Vec<u8>> {
        self.backend.admit_handover(remote)
    }

    fn handle(
        &self,
        stream: Stream,
        info: ConnectionInfo,
        signal: ShutdownSignal,
        admitted: Admitted,
    ) -> SessionFuture {
        let protocol = self.protocol;
        let secret = self.secret.clone();
        let backend = self.backend.clone();
        Box::pin(async move {
            let front_end = info.remote;
            match prove(stream, protocol, &secret).await {
                Ok((stream, who)) => {
                    tracing::info!(
                        protocol, %front_end, user = %who.address, client = %who.client,
                        "session handed over by a front end"
                    );
                    backend.start(stream, info, who, signal, admitted).await;
                }
                Err(why) => {
                    tracing::warn!(protocol, remote = %front_end, reason = %why, "internal connection refused");
                }
            }
        })
    }

    fn busy_reply(&self) -> &'static [u8] {
        b"XCASELLA-BUSY Too many connections, try again later\r\n"
    }
}

/// Sends a fresh challenge and checks the answer. On failure the connection is
/// told so and closed.
async fn prove(
    stream: Stream,
    protocol: &'static str,
    secret: &ClusterSecret,
) -> Result<(Stream, Handover), String> {
    let nonce = new_nonce();
    let mut reader = BufReader::with_capacity(4096, stream);
    let challenge = format!("{}\r\n", challenge_line(protocol, &nonce));
    reader
        .get_mut()
        .write_all(challenge.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut line = Vec::new();
    let answer = match tokio::time::timeout(
        PROOF_TIMEOUT,
        read_line(&mut reader, &mut line, MAX_PROOF_LINE),
    )
    .await
    {
        Ok(Ok(())) => String::from_utf8_lossy(&line).into_owned(),
        Ok(Err(e)) => return Err(format!("no proof: {e}")),
        Err(_) => {
            refuse(reader, "No proof in time").await;
            return Err("no proof in time".into());
        }
    };
    let who = match verify_proof(secret, protocol, &nonce, &answer) {
        Ok(w) => w,
        Err(e) => {
            refuse(reader, "The proof of the cluster secret is wrong").await;
            return Err(e.to_string());
        }
    };
    // The front end waits for the reply before it relays anything.
    if !reader.buffer().is_empty() {
        refuse(reader, "Nothing may follow the proof before the reply").await;
        return Err("data after the proof".into());
    }
    Ok((reader.into_inner(), who))
}

async fn refuse(mut reader: BufReader<Stream>, text: &str) {
    let line = format!("{REFUSED} {text}\r\n");
    let attempt = async {
        reader.get_mut().write_all(line.as_bytes()).await?;
        reader.get_mut().shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), attempt).await;
}
