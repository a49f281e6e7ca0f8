//! The internal channel's lines (issue 24): `XCASELLA-CHALLENGE` as a front
//! end reads it and `XCASELLA-PROXY` as a back end checks it.
//!
//! Any line gives a nonce, a hand-over or an error, never a panic; a proof
//! made for any identity is accepted and gives that identity back (its
//! address and EHLO name without spaces or controls); the same proof with one
//! byte changed, or checked against another nonce or protocol, is refused
//! unless the change left its meaning intact.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use casella_proxy::fuzzing::parse_challenge;
use casella_proxy::{ClusterSecret, Handover, challenge_line, proof_line, verify_proof};
use libfuzzer_sys::fuzz_target;

const NONCE: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn secret() -> &'static ClusterSecret {
    static S: OnceLock<ClusterSecret> = OnceLock::new();
    S.get_or_init(|| {
        ClusterSecret::from_bytes(b"fuzzing secret, 32 bytes or more!!").expect("secret")
    })
}

fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let protocol = ["imap", "pop3", "submission"][data.first().map_or(0, |b| usize::from(b % 3))];

    // Any line, either way.
    if let Ok(nonce) = parse_challenge(&text, protocol) {
        assert_eq!(nonce.len(), 64);
        assert_eq!(
            parse_challenge(&challenge_line(protocol, &nonce), protocol),
            Ok(nonce)
        );
    }
    let _ = verify_proof(secret(), protocol, NONCE, &text);

    // A proof for an identity taken from the input.
    let mut fields = text.split('\n');
    let address = fields.next().unwrap_or("").to_string();
    let helo = fields.next().map(str::to_string);
    let port = data.len() as u16;
    let client = match data.get(1).map(|b| b % 3) {
        Some(0) => SocketAddr::from(([192, 0, 2, 7], port)),
        Some(1) => SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], port)),
        _ => SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    let who = Handover {
        address,
        client,
        tls: data.len() % 2 == 0,
        helo,
        esmtp: data.len() % 3 == 0,
    };
    let line = proof_line(secret(), protocol, NONCE, &who);
    let checked = verify_proof(secret(), protocol, NONCE, &line);
    let address = clean(&who.address);
    if address.is_empty() {
        assert!(checked.is_err(), "{line:?}");
        return;
    }
    let helo = who.helo.as_deref().map(clean).filter(|h| !h.is_empty());
    let expected = Handover {
        address,
        client,
        tls: who.tls,
        esmtp: who.esmtp && helo.is_some(),
        helo,
    };
    assert_eq!(checked.as_ref(), Ok(&expected), "{line:?}");
    assert!(verify_proof(secret(), protocol, &NONCE.replace('0', "1"), &line).is_err());
    let other = if protocol == "imap" { "pop3" } else { "imap" };
    assert!(verify_proof(secret(), other, NONCE, &line).is_err());

    // One byte changed.
    let mut bytes = line.clone().into_bytes();
    let at = usize::from(data.get(2).copied().unwrap_or(0)) * bytes.len() / 256;
    bytes[at] ^= data.get(3).copied().unwrap_or(1).max(1);
    let changed = String::from_utf8_lossy(&bytes);
    if let Ok(who) = verify_proof(secret(), protocol, NONCE, &changed) {
        // Only a change that keeps the signed text (hex digits' case).
        assert!(
            changed.eq_ignore_ascii_case(&line),
            "{line:?} -> {changed:?}"
        );
        assert_eq!(who, expected);
    }
});
