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
    tokio::select! {
        _ = signal.wait() => NextLine::Shutdown,
        r = tokio::time::timeout(idle, read_line(reader, buf, max)) => match r {
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
            if buf.len() + n > max {
                too_long = true;
                let room = max.saturating_sub(buf.len());
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
