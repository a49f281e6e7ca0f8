//! Submission's checks (issue 24): what the server reads in a submitted
//! message's header and in MAIL/RCPT parameters.
//!
//! - The first line over 998 octets is the one a plain count finds;
//! - Date: and Message-ID: are added when missing, before the message, which
//!   follows unchanged, and a completed message needs nothing more; From:
//!   addresses all have a local part and a domain;
//! - MAIL and RCPT lines: a path and parameters read from any line are written
//!   back and read again the same; accepted parameters are of the allowed
//!   forms (RET FULL/HDRS, NOTIFY NEVER or a list of SUCCESS/FAILURE/DELAY),
//!   refusals are 5xx replies; BDAT's size and LAST read back.
#![no_main]

use casella_smtp::fuzzing::{
    MAX_LINE, complete_for_submission, first_long_line, from_addresses, mail_params, rcpt_params,
};
use casella_smtp::{Command, Mode, parse_command};
use libfuzzer_sys::fuzz_target;

fn write_params(params: &[(String, Option<String>)]) -> String {
    params
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!(" {k}={v}"),
            None => format!(" {k}"),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => {
            let expected = rest
                .split(|&b| b == b'\n')
                .position(|l| l.strip_suffix(b"\r").unwrap_or(l).len() > MAX_LINE)
                .map(|i| i + 1);
            assert_eq!(first_long_line(rest), expected);
            if let Some(froms) = from_addresses(rest) {
                // Mailbox and host are never empty (MISSING_MAILBOX/DOMAIN).
                for a in froms {
                    let mut inner = a.chars();
                    inner.next();
                    inner.next_back();
                    assert!(inner.as_str().contains('@'), "{a:?}");
                }
            }
        }
        1 => {
            let completed = complete_for_submission(rest.to_vec(), "mx.example.org");
            assert!(completed.ends_with(rest));
            let added = &completed[..completed.len() - rest.len()];
            for line in added.split_inclusive(|&b| b == b'\n') {
                assert!(line.ends_with(b"\r\n"));
                assert!(line.starts_with(b"Date: ") || line.starts_with(b"Message-ID: <"));
            }
            let again = complete_for_submission(completed.clone(), "mx.example.org");
            assert_eq!(again, completed, "completed once is complete");
        }
        _ => {
            let Ok(command) = parse_command(rest) else {
                return;
            };
            let mode = [Mode::Smtp, Mode::Lmtp, Mode::Submission][usize::from(rest.len() % 3)];
            match &command {
                Command::Mail { from, params } => {
                    let line = format!("MAIL FROM:<{from}>{}", write_params(params));
                    assert_eq!(
                        parse_command(line.as_bytes()).as_ref(),
                        Ok(&command),
                        "{line:?}"
                    );
                    match mail_params(params, mode, rest.len() % 2 == 0, 1000) {
                        Ok(p) => {
                            assert!(p.ret.as_deref().is_none_or(|r| r == "FULL" || r == "HDRS"));
                            if mode != Mode::Submission {
                                assert!(p.ret.is_none() && p.envid.is_none());
                            }
                        }
                        Err(reply) => assert!(reply.starts_with('5'), "{reply}"),
                    }
                }
                Command::Rcpt { to, params } => {
                    let line = format!("RCPT TO:<{to}>{}", write_params(params));
                    assert_eq!(
                        parse_command(line.as_bytes()).as_ref(),
                        Ok(&command),
                        "{line:?}"
                    );
                    match rcpt_params(params, mode) {
                        Ok(p) => {
                            assert!(mode == Mode::Submission || p == Default::default());
                            if let Some(n) = p.notify {
                                assert!(
                                    n == "NEVER"
                                        || n.split(',')
                                            .all(|k| matches!(k, "SUCCESS" | "FAILURE" | "DELAY")),
                                    "{n}"
                                );
                            }
                        }
                        Err(reply) => assert!(reply.starts_with('5'), "{reply}"),
                    }
                }
                Command::Bdat { size, last } => {
                    let line = format!("BDAT {size}{}", if *last { " LAST" } else { "" });
                    assert_eq!(parse_command(line.as_bytes()).as_ref(), Ok(&command));
                }
                _ => {}
            }
        }
    }
});
