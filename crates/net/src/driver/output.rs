//! A session's output buffer and its protocol log. Replies are queued here and
//! written by the driver when the session is about to wait for the client, so
//! pipelined commands get their replies in one write. Every queued line is
//! logged (its first line only: message bodies never are); raw bytes are not.
//! Secrets never reach this type: callers mask them before logging.

use std::sync::Arc;

use crate::{ConnectionInfo, ProtocolLog, SessionLog};

pub struct Output {
    buf: Vec<u8>,
    log: Option<SessionLog>,
}

impl Output {
    /// An output for one connection; with a protocol log, the connection is
    /// logged (`+`, "TLS" when it started in TLS).
    pub fn new(log: Option<&Arc<ProtocolLog>>, info: &ConnectionInfo, tls: bool) -> Output {
        let log = log.map(|log| {
            let mut session = log.session(info.local, info.remote);
            session.event('+', "", if tls { "TLS" } else { "" });
            session
        });
        Output {
            buf: Vec::with_capacity(1024),
            log,
        }
    }

    /// Queues `text` and a CRLF; logs its first line.
    pub fn line(&mut self, text: &str) {
        self.log('>', text.lines().next().unwrap_or(""), "");
        self.buf.extend_from_slice(text.as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    /// Queues a response that may hold literals (IMAP FETCH, LIST, STATUS)
    /// and a CRLF; logs its text up to the first line end — so up to a
    /// literal's `{n}`, never the literal itself.
    pub fn response(&mut self, bytes: &[u8]) {
        let first = bytes
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .map_or(bytes, |end| &bytes[..end]);
        if self.log.is_some() {
            let text = String::from_utf8_lossy(first);
            self.log('>', &text, "");
        }
        self.buf.extend_from_slice(bytes);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// Bytes queued as they are, not logged (message bodies, literals).
    pub fn raw(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Adds an event to the protocol log, when there is one; `data` must
    /// have its secrets masked.
    pub fn log(&mut self, event: char, data: &str, context: &str) {
        if let Some(log) = self.log.as_mut() {
            log.event(event, data, context);
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
    }
}
