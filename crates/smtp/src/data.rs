//! Reading the DATA section — RFC 5321 §4.1.1.4 and §4.5.2: lines up to a line with
//! a single ".", with leading dots removed (dot-unstuffing). No line length cap: a
//! message's long lines are its own business; the total size is capped instead.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Outcome of reading one DATA section.
pub enum DataOutcome {
    /// The message, unstuffed, with its line ends as sent.
    Complete(Vec<u8>),
    /// The message was larger than the limit; it was read to its end and dropped.
    TooBig,
}

#[derive(Clone, Copy)]
enum State {
    LineStart,
    Middle,
    Cr,
    Dot,
    DotCr,
}

/// Reads to the terminating "." line. `Err` when the connection closes first.
pub async fn read_data<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<DataOutcome> {
    let mut out = Vec::with_capacity(16 * 1024);
    let mut too_big = false;
    let mut state = State::LineStart;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let mut consumed = 0;
        let mut done = false;
        for &b in buf {
            consumed += 1;
            let mut push = |bytes: &[u8]| {
                if !too_big {
                    if out.len() + bytes.len() > max {
                        too_big = true;
                        out = Vec::new();
                    } else {
                        out.extend_from_slice(bytes);
                    }
                }
            };
            state = match (state, b) {
                (State::LineStart, b'.') => State::Dot,
                (State::Dot, b'\r') => State::DotCr,
                // A bare LF after the dot ends the data too (lenient, like Postfix).
                (State::Dot, b'\n') | (State::DotCr, b'\n') => {
                    done = true;
                    break;
                }
                (State::DotCr, other) => {
                    // ".\r" not followed by LF: keep the CR, go on with this byte.
                    push(b"\r");
                    push(&[other]);
                    next_state(other)
                }
                // A stuffed dot: the first dot is dropped.
                (State::Dot, other) => {
                    push(&[other]);
                    next_state(other)
                }
                (_, other) => {
                    push(&[other]);
                    next_state(other)
                }
            };
        }
        reader.consume(consumed);
        if done {
            break;
        }
    }
    Ok(if too_big {
        DataOutcome::TooBig
    } else {
        DataOutcome::Complete(out)
    })
}

fn next_state(b: u8) -> State {
    match b {
        b'\n' => State::LineStart,
        b'\r' => State::Cr,
        _ => State::Middle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    async fn read(input: &[u8], cap: usize) -> (Option<Vec<u8>>, Vec<u8>) {
        // Capacity 1 exercises every split point of the state machine.
        let mut r = BufReader::with_capacity(1, input);
        let got = match read_data(&mut r, 1000).await.unwrap() {
            DataOutcome::Complete(m) => Some(m),
            DataOutcome::TooBig => None,
        };
        let _ = cap;
        let mut rest = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut r, &mut rest)
            .await
            .unwrap();
        (got, rest)
    }

    #[tokio::test]
    async fn unstuffs_and_stops_at_the_dot_line() {
        let (m, rest) = read(b"Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n", 1000).await;
        assert_eq!(m.unwrap(), b"Subject: x\r\n\r\n.dot\r\n");
        assert_eq!(
            rest, b"QUIT\r\n",
            "pipelined commands after DATA are left unread"
        );
        let (m, _) = read(b".\r\n", 1000).await;
        assert_eq!(m.unwrap(), b"");
        let (m, _) = read(b"a.\r\n.b\r\n.\r\n", 1000).await;
        assert_eq!(m.unwrap(), b"a.\r\nb\r\n");
    }

    #[tokio::test]
    async fn too_big_is_read_to_the_end() {
        let mut input = vec![b'x'; 2000];
        input.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
        let (m, rest) = read(&input, 1000).await;
        assert!(m.is_none());
        assert_eq!(rest, b"NOOP\r\n");
    }

    #[tokio::test]
    async fn eof_before_the_end_is_an_error() {
        let mut r = BufReader::new(&b"Subject: x\r\n\r\nbody"[..]);
        assert!(read_data(&mut r, 1000).await.is_err());
    }
}
