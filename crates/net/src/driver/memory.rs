//! The client end of an in-memory session (`tokio::io::duplex`), for tests
//! that drive a protocol's handler without a socket. Exact bytes in, lines
//! out, every read bounded in time.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};

use crate::{ConnectionInfo, Shutdown, ShutdownSignal};

/// How long a test waits for a reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct MemoryClient {
    reader: BufReader<DuplexStream>,
}

/// A connected pair: the client end, and the server end to hand to a session.
pub fn memory_pair() -> (MemoryClient, DuplexStream) {
    let (client, server) = tokio::io::duplex(256 * 1024);
    (
        MemoryClient {
            reader: BufReader::new(client),
        },
        server,
    )
}

/// Loopback addresses for an in-memory connection.
pub fn memory_info() -> ConnectionInfo {
    ConnectionInfo {
        local: "127.0.0.1:1".parse().expect("address"),
        remote: "127.0.0.1:2".parse().expect("address"),
        implicit_tls: false,
    }
}

/// The signal of a server that stays up for the rest of the process.
pub fn running_server() -> ShutdownSignal {
    static SERVER: std::sync::OnceLock<Shutdown> = std::sync::OnceLock::new();
    SERVER.get_or_init(Shutdown::new).signal()
}

impl MemoryClient {
    /// Sends bytes as they are.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.reader
            .get_mut()
            .write_all(bytes)
            .await
            .expect("the session is there");
    }

    /// Sends `line` and a CRLF.
    pub async fn send_line(&mut self, line: &str) {
        self.send(format!("{line}\r\n").as_bytes()).await;
    }

    /// The next line, without its line end.
    pub async fn line(&mut self) -> String {
        let mut line = Vec::new();
        let read = tokio::time::timeout(REPLY_TIMEOUT, self.reader.read_until(b'\n', &mut line));
        let n = read.await.expect("a reply in time").expect("readable");
        assert!(n > 0, "the session closed the connection");
        String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string()
    }

    /// The next line, which must start with `prefix`.
    pub async fn expect(&mut self, prefix: &str) -> String {
        let line = self.line().await;
        assert!(
            line.starts_with(prefix),
            "expected {prefix:?}, got {line:?}"
        );
        line
    }

    /// Lines up to and including the one starting with `prefix`.
    pub async fn until(&mut self, prefix: &str) -> Vec<String> {
        self.until_match(|line| line.starts_with(prefix)).await
    }

    /// Lines up to and including `last` (a whole line: POP3's ".").
    pub async fn until_line(&mut self, last: &str) -> Vec<String> {
        self.until_match(|line| line == last).await
    }

    async fn until_match(&mut self, last: impl Fn(&str) -> bool) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            let done = last(&line);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// Whether the session closed the connection (after what is left to read).
    pub async fn is_closed(&mut self) -> bool {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(REPLY_TIMEOUT, self.reader.read_to_end(&mut rest));
        matches!(read.await, Ok(Ok(_)))
    }
}
