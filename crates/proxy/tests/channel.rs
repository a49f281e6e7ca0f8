//! The internal channel end to end on loopback, with a stand-in back-end service:
//! the proof, fail-over between a site's addresses, refusals, and the relay.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use casella_net::{
    Admitted, ConnectionInfo, ConnectionLimits, SessionFuture, Shutdown, ShutdownSignal, Stream,
    bind, serve,
};
use casella_proxy::{
    Backend, ClusterSecret, Connector, Handover, InternalListener, LoginProxy, ProxyError, Site,
    relay,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const SECRET: &[u8] = b"a secret for the channel tests..";

/// Answers a hand-over with "OK <address> <client> <tls>", then echoes each line
/// in upper case.
#[derive(Default)]
struct Echo {
    limits: ConnectionLimits,
}

impl Backend for Echo {
    fn admit_handover(&self, remote: IpAddr) -> Result<Admitted, Vec<u8>> {
        self.limits
            .admit(remote, 100, usize::MAX)
            .map_err(|_| b"XCASELLA-BUSY\r\n".to_vec())
    }

    fn start(
        &self,
        stream: Stream,
        _info: ConnectionInfo,
        who: Handover,
        _signal: ShutdownSignal,
        admitted: Admitted,
    ) -> SessionFuture {
        Box::pin(async move {
            let _admitted = admitted;
            let mut io = BufReader::new(stream);
            let hello = format!("OK {} {} {}\r\n", who.address, who.client, who.tls);
            if io.get_mut().write_all(hello.as_bytes()).await.is_err() {
                return;
            }
            let mut line = String::new();
            while io.read_line(&mut line).await.unwrap_or(0) > 0 {
                let up = line.to_uppercase();
                if io.get_mut().write_all(up.as_bytes()).await.is_err() {
                    return;
                }
                line.clear();
            }
        })
    }
}

async fn back_end(shutdown: &Shutdown) -> SocketAddr {
    let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let secret = Arc::new(ClusterSecret::from_bytes(SECRET).unwrap());
    let handler = Arc::new(InternalListener::new(
        "imap",
        secret,
        Arc::new(Echo::default()),
    ));
    tokio::spawn(serve(
        "imap-internal".into(),
        listener,
        None,
        handler,
        shutdown.clone(),
        100,
    ));
    addr
}

fn dead_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn connector(secret: &[u8], imap: Vec<String>) -> Connector {
    let mut site = Site::default();
    site.addresses.insert("imap".into(), imap);
    let sites = BTreeMap::from([("s1".to_string(), site)]);
    Connector::new(
        Arc::new(ClusterSecret::from_bytes(secret).unwrap()),
        sites,
        None,
        Duration::from_secs(2),
    )
}

fn alice() -> Handover {
    Handover {
        address: "alice@example.org".into(),
        client: "192.0.2.1:4000".parse().unwrap(),
        tls: true,
        helo: None,
        esmtp: false,
    }
}

#[tokio::test]
async fn hand_over_fail_over_and_relay() {
    let shutdown = Shutdown::new();
    let live = back_end(&shutdown).await.to_string();
    let proxy = connector(SECRET, vec![dead_address(), live.clone()]);
    let who = alice();
    // Whichever address comes first, the dead one is skipped.
    for _ in 0..2 {
        let up = proxy.hand_over("imap", Some("s1"), &who).await.unwrap();
        assert_eq!(up.reply, "OK alice@example.org 192.0.2.1:4000 true");
        assert_eq!(up.peer.to_string(), live);
    }

    // The relay: bytes the client sent ahead go first, then both ways until the
    // client closes.
    let up = proxy.hand_over("imap", Some("s1"), &who).await.unwrap();
    let (client, front_side) = tokio::io::duplex(4096);
    let mut front_side = BufReader::new(front_side);
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    client_tx.write_all(b"early\r\n").await.unwrap();
    // Let the front end's reader buffer it before the relay starts.
    front_side.fill_buf().await.unwrap();
    let task = tokio::spawn(relay(front_side, up, shutdown.signal()));
    client_tx.write_all(b"later\r\n").await.unwrap();
    let mut replies = BufReader::new(&mut client_rx);
    let mut line = String::new();
    replies.read_line(&mut line).await.unwrap();
    assert_eq!(line, "EARLY\r\n");
    line.clear();
    replies.read_line(&mut line).await.unwrap();
    assert_eq!(line, "LATER\r\n");
    client_tx.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the relay ends when the client closes")
        .unwrap();
    shutdown.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn refusals_and_missing_back_ends() {
    let shutdown = Shutdown::new();
    let live = back_end(&shutdown).await.to_string();
    let who = alice();

    let wrong = connector(b"another secret of the same size!", vec![live.clone()]);
    let e = wrong.hand_over("imap", Some("s1"), &who).await.unwrap_err();
    assert!(matches!(e, ProxyError::ProofRefused { .. }), "{e}");
    assert_eq!(
        e.client_text(),
        "The mailbox server is not reachable, try again later"
    );

    let proxy = connector(SECRET, vec![live]);
    // The listener serves IMAP; a POP3 hand-over is not attempted there.
    let e = proxy.hand_over("pop3", Some("s1"), &who).await.unwrap_err();
    assert!(matches!(e, ProxyError::NoAddress { .. }), "{e}");
    let e = proxy.hand_over("imap", None, &who).await.unwrap_err();
    assert!(matches!(e, ProxyError::NoBackend), "{e}");
    let e = proxy.hand_over("imap", Some("s9"), &who).await.unwrap_err();
    assert!(matches!(e, ProxyError::UnknownSite(_)), "{e}");
    assert!(e.client_text().starts_with("No mailbox server is assigned"));

    let down = connector(SECRET, vec![dead_address(), dead_address()]);
    let e = down.hand_over("imap", Some("s1"), &who).await.unwrap_err();
    assert!(matches!(e, ProxyError::Unreachable { .. }), "{e}");
    shutdown.shutdown(Duration::from_secs(1)).await;
}
