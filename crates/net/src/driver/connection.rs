//! One client connection as the driver holds it: the buffered stream, the
//! shutdown signal, and the TLS acceptor for STARTTLS. Handlers get it while a
//! command runs, for the input a command reads itself (SASL responses, IDLE's
//! DONE, SMTP's DATA and BDAT) and to write a large answer in pieces.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_rustls::TlsAcceptor;

use super::{Output, SessionStream};
use crate::{MemoryBudget, NextLine, ShutdownSignal, next_line};

/// Bytes buffered from the client at most.
const READ_BUFFER: usize = 8192;

/// Literal and chunk bytes are made room for as they arrive, this many at a
/// time: a client that announces much and sends little costs little.
const READ_STEP: usize = 256 * 1024;

pub struct Connection<S> {
    reader: BufReader<S>,
    signal: ShutdownSignal,
    tls: Option<TlsAcceptor>,
    /// What commands read before login are taken from.
    budget: Arc<MemoryBudget>,
}

/// What waiting for the client gave, when nothing is read yet.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    /// Bytes are waiting to be read.
    Input,
    Closed,
    /// Nothing arrived within the timeout.
    Idle,
    /// The server is shutting down or the session was ended.
    Shutdown,
}

impl<S: SessionStream> Connection<S> {
    /// A connection; `tls` is what STARTTLS uses (`None`: not offered).
    pub fn new(stream: S, signal: ShutdownSignal, tls: Option<TlsAcceptor>) -> Connection<S> {
        Connection {
            reader: BufReader::with_capacity(READ_BUFFER, stream),
            signal,
            tls,
            budget: crate::preauth_budget().clone(),
        }
    }

    /// This connection with its pre-login commands taken from `budget`
    /// instead of the process's (tests).
    pub fn with_preauth_budget(mut self, budget: Arc<MemoryBudget>) -> Connection<S> {
        self.budget = budget;
        self
    }

    pub(crate) fn preauth_budget(&self) -> &Arc<MemoryBudget> {
        &self.budget
    }

    pub fn signal(&self) -> &ShutdownSignal {
        &self.signal
    }

    pub fn is_tls(&self) -> bool {
        self.reader.get_ref().is_tls()
    }

    /// RFC 9266 tls-exporter channel binding; `None` without TLS.
    pub fn tls_exporter(&self) -> Option<Vec<u8>> {
        self.reader.get_ref().tls_exporter()
    }

    /// Whether STARTTLS can be offered: an acceptor, and a stream that can
    /// become TLS (not TLS already, not an in-memory stream).
    pub fn can_start_tls(&self) -> bool {
        self.tls.is_some() && self.reader.get_ref().can_start_tls()
    }

    /// Whether the client's next bytes are already read (pipelined input).
    pub fn has_input(&self) -> bool {
        !self.reader.buffer().is_empty()
    }

    /// The buffered input, for readers of their own (SMTP's DATA).
    pub fn reader(&mut self) -> &mut BufReader<S> {
        &mut self.reader
    }

    /// Writes out what `out` holds.
    pub async fn flush(&mut self, out: &mut Output) -> io::Result<()> {
        self.write(out).await?;
        self.reader.get_mut().flush().await
    }

    /// Writes out what `out` holds once it holds at least `threshold` bytes:
    /// a large answer goes out in pieces.
    pub async fn flush_over(&mut self, out: &mut Output, threshold: usize) -> io::Result<()> {
        if out.len() >= threshold {
            self.write(out).await?;
        }
        Ok(())
    }

    async fn write(&mut self, out: &mut Output) -> io::Result<()> {
        if !out.is_empty() {
            self.reader.get_mut().write_all(out.bytes()).await?;
            out.clear();
        }
        Ok(())
    }

    /// Writes what is pending and closes the connection.
    pub async fn close(&mut self, out: &mut Output) {
        if self.flush(out).await.is_ok() {
            let _ = self.reader.get_mut().shutdown().await;
        }
    }

    /// Reads one line into `buf` (without its line end), bounded by `max`,
    /// by `timeout` and by shutdown.
    pub async fn read_line(
        &mut self,
        buf: &mut Vec<u8>,
        max: usize,
        timeout: Duration,
    ) -> NextLine {
        let mut signal = self.signal.clone();
        next_line(&mut self.reader, buf, max, timeout, &mut signal).await
    }

    /// As [`Connection::read_line`], with `admit` asked before the line grows
    /// (the pre-login budget, charged as the line arrives).
    pub(crate) async fn read_line_admitted(
        &mut self,
        buf: &mut Vec<u8>,
        max: usize,
        timeout: Duration,
        admit: &mut (dyn FnMut(usize) -> bool + Send),
    ) -> NextLine {
        let mut signal = self.signal.clone();
        crate::line::next_line_admitted(&mut self.reader, buf, max, timeout, &mut signal, admit)
            .await
    }

    /// Sends `prompt` (a SASL challenge), then reads the client's answer into
    /// `buf`: a line that is not a command, logged as `****` whatever it holds.
    pub async fn prompt(
        &mut self,
        out: &mut Output,
        prompt: &str,
        buf: &mut Vec<u8>,
        max: usize,
        timeout: Duration,
    ) -> NextLine {
        out.line(prompt);
        if self.flush(out).await.is_err() {
            return NextLine::Closed;
        }
        let read = self.read_line(buf, max, timeout).await;
        out.log('<', "****", "SASL response");
        read
    }

    /// Waits until the client sends something, without reading it; bounded
    /// by `timeout` and by shutdown.
    pub async fn wait_for_input(&mut self, timeout: Duration) -> Waited {
        let mut signal = self.signal.clone();
        tokio::select! {
            _ = signal.wait() => Waited::Shutdown,
            r = tokio::time::timeout(timeout, self.reader.fill_buf()) => match r {
                Err(_) => Waited::Idle,
                Ok(Ok([])) | Ok(Err(_)) => Waited::Closed,
                Ok(Ok(_)) => Waited::Input,
            },
        }
    }

    /// Appends exactly `len` bytes to `buf`, making room as they arrive.
    pub async fn read_into(&mut self, buf: &mut Vec<u8>, len: usize) -> io::Result<()> {
        let mut left = len;
        while left > 0 {
            let n = left.min(READ_STEP);
            let start = buf.len();
            buf.resize(start + n, 0);
            self.reader.read_exact(&mut buf[start..]).await?;
            left -= n;
        }
        Ok(())
    }

    /// Reads and drops exactly `len` bytes.
    pub async fn discard(&mut self, len: u64) -> io::Result<()> {
        let copied =
            tokio::io::copy(&mut (&mut self.reader).take(len), &mut tokio::io::sink()).await?;
        if copied < len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// Runs the TLS handshake (STARTTLS), bounded by `timeout`. Input the
    /// client sent before it is dropped, not run after it (RFC 3207 §4.2, RFC
    /// 2595 §3.1, RFC 9051 §6.2.1: the STARTTLS command injection attack).
    /// `None` when the handshake failed or STARTTLS is not possible here.
    pub(crate) async fn start_tls(self, timeout: Duration) -> Option<Connection<S>> {
        let acceptor = self.tls.clone()?;
        if !self.reader.get_ref().can_start_tls() {
            return None;
        }
        let stream = self.reader.into_inner();
        match tokio::time::timeout(timeout, stream.start_tls(&acceptor)).await {
            Ok(Ok(stream)) => Some(Connection {
                reader: BufReader::with_capacity(READ_BUFFER, stream),
                signal: self.signal,
                tls: self.tls,
                budget: self.budget,
            }),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "STARTTLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!("STARTTLS handshake timed out");
                None
            }
        }
    }

    /// The buffered stream, for a session handed over to another server (the
    /// bytes already read come with it).
    pub fn into_reader(self) -> BufReader<S> {
        self.reader
    }
}
