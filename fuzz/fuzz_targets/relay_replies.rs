//! What the relay reads from next hops (issue 24): SMTP replies line by line
//! (RFC 5321 §4.2, enhanced codes of RFC 3463/2034) and EHLO keywords.
//!
//! Any lines give replies or errors, never a panic; a reply has a code from
//! 100 to 599 (no leading 0), at most the allowed number of lines, and an
//! enhanced code only of its own class; the one-line form the queue keeps
//! reads back as the same reply once written; an enhanced code written out
//! parses back to itself.
#![no_main]

use casella_relay::client::Capabilities;
use casella_relay::reply::{EnhancedCode, MAX_REPLY_LINES, Reply, ReplyParser, parse_one_line};
use libfuzzer_sys::fuzz_target;

fn check(reply: &Reply) {
    assert!((100..1000).contains(&reply.code), "{reply:?}");
    assert!(!reply.lines.is_empty() && reply.lines.len() <= MAX_REPLY_LINES);
    if let Some(e) = reply.enhanced {
        assert_eq!(u16::from(e.class), reply.code / 100, "{reply:?}");
        let written = e.to_string();
        assert_eq!(EnhancedCode::parse_prefix(&written), Some((e, "")));
    }
    // The one-line form: written, read, written again, read again — stable.
    let once = parse_one_line(&reply.to_string()).expect("a reply written out reads back");
    assert_eq!(once.code, reply.code);
    assert_eq!(once.enhanced, reply.enhanced, "{reply:?} -> {once:?}");
    let twice = parse_one_line(&once.to_string()).expect("reads back");
    assert_eq!(once, twice);
    let caps = Capabilities::from_ehlo(reply);
    assert!(caps.esmtp);
    assert!(
        caps.auth
            .iter()
            .all(|m| !m.is_empty() && !m.contains(char::is_whitespace))
    );
}

fuzz_target!(|data: &[u8]| {
    let mut parser = ReplyParser::new();
    for line in data.split(|&b| b == b'\n') {
        match parser.push(line) {
            Ok(Some(reply)) => check(&reply),
            Ok(None) => {}
            // A broken reply ends the session; start again for the fuzzer's sake.
            Err(_) => parser = ReplyParser::new(),
        }
    }
    let text = String::from_utf8_lossy(data);
    if let Some(reply) = parse_one_line(&text) {
        check(&reply);
    }
    if let Some((code, rest)) = EnhancedCode::parse_prefix(&text) {
        assert!(matches!(code.class, 2 | 4 | 5) && code.subject < 1000 && code.detail < 1000);
        assert!(text.ends_with(rest));
    }
});
