//! Reading one command line with a cap on its length. An over-long line is consumed
//! to its end and reported, so the session can answer and go on.

use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::ShutdownSignal;

/// What waiting for a client's next command line gave.
#[derive(Debug)]
pub enum NextLine {
    /// A line is in the buffer (without its line end).
    Line,
    /// The line was over the limit and has been discarded; the buffer holds
    /// its first bytes (as many as the limit allows), for a reply that names
    /// the command's tag.
    TooLong,
    /// The client went away (or the connection failed).
    Closed,
    /// Nothing arrived within the idle timeout.
    Idle,
    /// The server is shutting down.
    Shutdown,
}

/// Waits for the next command line, bounded by `idle` and by shutdown: the one
/// read loop step every protocol session shares.
pub async fn next_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
    idle: Duration,
    signal: &mut ShutdownSignal,
) -> NextLine {
    next_line_admitted(reader, buf, max, idle, signal, &mut |_| true).await
}

/// As [`next_line`], with `admit` asked before the line grows (see
/// [`read_line_admitted`]); a line it refuses is reported `TooLong`.
pub async fn next_line_admitted<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
    idle: Duration,
    signal: &mut ShutdownSignal,
    admit: &mut (dyn FnMut(usize) -> bool + Send),
) -> NextLine {
    tokio::select! {
        _ = signal.wait() => NextLine::Shutdown,
        r = tokio::time::timeout(idle, read_line_admitted(reader, buf, max, admit)) => match r {
            Err(_) => NextLine::Idle,
            Ok(Ok(())) => NextLine::Line,
            Ok(Err(LineError::TooLong)) => NextLine::TooLong,
            Ok(Err(_)) => NextLine::Closed,
        },
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// The peer closed the connection (possibly mid-line).
    #[error("connection closed")]
    Closed,
    /// The line was longer than the limit; it has been discarded (its first
    /// bytes stay in the buffer).
    #[error("line too long")]
    TooLong,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads up to and including LF into `buf` (cleared first), without the line end
/// (CRLF or bare LF). Lines longer than `max` bytes (line end included) are
/// discarded up to their LF and give `TooLong`; `buf` then holds their first
/// `max` bytes, so the caller can still answer the command's tag.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<(), LineError> {
    read_line_admitted(reader, buf, max, &mut |_| true).await
}

/// As [`read_line`], asking `admit(n)` before the buffer takes `n` more
/// bytes (a memory budget charged as the line arrives, so many slow long
/// lines cannot hold more than it). When it says no, the line is discarded to
/// its end like an over-long one (`TooLong`); the caller knows why.
pub async fn read_line_admitted<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
    admit: &mut (dyn FnMut(usize) -> bool + Send),
) -> Result<(), LineError> {
    buf.clear();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Err(LineError::Closed);
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let n = chunk.len();
        if !too_long {
            if buf.len() + n > max || !admit(n.min(max - buf.len())) {
                too_long = true;
                let room = max.saturating_sub(buf.len()).min(n);
                buf.extend_from_slice(&chunk[..room]);
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        reader.consume(n);
        if done {
            break;
        }
    }
    if too_long {
        return Err(LineError::TooLong);
    }
    buf.pop(); // LF
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    #[tokio::test]
    async fn a_line_the_budget_refuses_is_discarded_like_a_long_one() {
        let data: &[u8] = b"a 23456789\r\nok\r\n";
        let mut r = BufReader::with_capacity(4, data);
        let mut buf = Vec::new();
        let mut left = 8usize;
        let mut admit = |n: usize| {
            let fits = n <= left;
            left = left.saturating_sub(n);
            fits
        };
        assert!(matches!(
            read_line_admitted(&mut r, &mut buf, 100, &mut admit).await,
            Err(LineError::TooLong)
        ));
        read_line(&mut r, &mut buf, 100).await.unwrap();
        assert_eq!(buf, b"ok", "the session goes on");
    }

    #[tokio::test]
    async fn lines_and_limits() {
        let data: &[u8] = b"USER a\r\nbare\nt 23456789012\r\nnext\r\npartial";
        let mut r = BufReader::with_capacity(4, data);
        let mut buf = Vec::new();
        read_line(&mut r, &mut buf, 10).await.unwrap();
        assert_eq!(buf, b"USER a");
        read_line(&mut r, &mut buf, 10).await.unwrap();
        assert_eq!(buf, b"bare");
        assert!(matches!(
            read_line(&mut r, &mut buf, 10).await,
            Err(LineError::TooLong)
        ));
        assert_eq!(buf, b"t 23456789", "the start of a long line is kept");
        read_line(&mut r, &mut buf, 10).await.unwrap();
        assert_eq!(buf, b"next", "the session goes on after a long line");
        assert!(matches!(
            read_line(&mut r, &mut buf, 10).await,
            Err(LineError::Closed)
        ));
    }
}
