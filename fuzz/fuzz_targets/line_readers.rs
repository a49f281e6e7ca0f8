//! The line and DATA readers (issue 24), fed through buffers of every size:
//!
//! - casella-net's command line reader (with a memory budget asked before the
//!   line grows) gives exactly the lines, over-long lines and refusals of a
//!   plain split of the input, and never takes more than the budget allows;
//! - SMTP's DATA reader undoes dot-stuffing: a message stuffed and ended with
//!   "." comes back as it was (line ends as sent), or as too big, and the bytes
//!   after the end stay unread (pipelined commands); any input gives a message,
//!   too big, or an error, never a panic.
#![no_main]

use std::sync::OnceLock;

use casella_net::LineError;
use casella_net::fuzzing::read_line_admitted;
use casella_smtp::fuzzing::{DataOutcome, read_data};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, BufReader};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Line {
    Whole(Vec<u8>),
    /// Over the limit: its first `max` bytes.
    TooLong(Vec<u8>),
    /// Refused by the budget (its first bytes are kept; not compared).
    Refused,
    /// The reference's answer for a line over the limit and the budget:
    /// refused or too long.
    Either,
    Closed,
}

/// The lines of `input` as the reader must give them, each with a budget of
/// `budget` bytes.
fn reference_lines(input: &[u8], max: usize, budget: usize) -> Vec<Line> {
    let mut out = Vec::new();
    let mut rest = input;
    loop {
        let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
            out.push(Line::Closed);
            return out;
        };
        let raw = &rest[..=lf];
        rest = &rest[lf + 1..];
        if raw.len() > max {
            // The budget is asked only for what fits the limit; when it runs
            // out first, which refusal comes depends on the buffer size
            out.push(if budget < max {
                Line::Either
            } else {
                Line::TooLong(raw[..max].to_vec())
            });
        } else if raw.len() > budget {
            out.push(Line::Refused);
        } else {
            let line = &raw[..raw.len() - 1];
            out.push(Line::Whole(
                line.strip_suffix(b"\r").unwrap_or(line).to_vec(),
            ));
        }
    }
}

async fn lines(input: &[u8], capacity: usize, max: usize, budget: usize) -> Vec<Line> {
    let mut reader = BufReader::with_capacity(capacity, input);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    loop {
        let mut left = budget;
        let mut refused = false;
        let mut admit = |n: usize| {
            if n > left {
                refused = true;
                return false;
            }
            left -= n;
            true
        };
        let got = read_line_admitted(&mut reader, &mut buf, max, &mut admit).await;
        assert!(buf.len() <= max);
        match got {
            Ok(()) => out.push(Line::Whole(buf.clone())),
            Err(LineError::TooLong) if refused => out.push(Line::Refused),
            Err(LineError::TooLong) => out.push(Line::TooLong(buf.clone())),
            Err(LineError::Closed) => {
                out.push(Line::Closed);
                return out;
            }
            Err(LineError::Io(e)) => panic!("{e}"),
        }
    }
}

/// RFC 5321 §4.5.2: a dot at the start of a line is doubled; the data ends
/// with CRLF "." CRLF.
fn stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 8);
    let mut line_start = true;
    for &b in message {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [a, b, c, mode, input @ ..] = data else {
        return;
    };
    let capacity = 1 + usize::from(*a % 16);
    runtime().block_on(async {
        if mode % 2 == 0 {
            let max = 1 + usize::from(*b);
            let budget = usize::from(*c) * 8;
            let got = lines(input, capacity, max, budget).await;
            let expected = reference_lines(input, max, budget);
            assert_eq!(got.len(), expected.len(), "{got:?}\n{expected:?}");
            for (g, x) in got.iter().zip(&expected) {
                match x {
                    Line::Either => {
                        assert!(matches!(g, Line::Refused | Line::TooLong(_)), "{g:?}")
                    }
                    x => assert_eq!(g, x),
                }
            }
            return;
        }
        let max = usize::from(*b) * 16;
        // Any bytes.
        let mut reader = BufReader::with_capacity(capacity, input);
        if let Ok(DataOutcome::Complete(m)) = read_data(&mut reader, max).await {
            assert!(m.len() <= max);
        }
        // A message stuffed and ended.
        let mut wire = stuff(input);
        let mut expected = input.to_vec();
        if !input.is_empty() && !input.ends_with(b"\n") {
            wire.extend_from_slice(b"\r\n");
            expected.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b".\r\nQUIT\r\n");
        let mut reader = BufReader::with_capacity(capacity, wire.as_slice());
        match read_data(&mut reader, max).await.expect("ended") {
            DataOutcome::Complete(m) => assert_eq!(m, expected),
            DataOutcome::TooBig => assert!(expected.len() > max),
        }
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.expect("in memory");
        assert_eq!(rest, b"QUIT\r\n", "what follows the data stays unread");
    });
});
