//! The lines of the internal channel and the proof of the cluster secret.
//!
//! ```text
//! B: XCASELLA-CHALLENGE <protocol> <nonce>
//! F: XCASELLA-PROXY <address> <mac> <params>
//! ```
//!
//! mac = HMAC-SHA256(secret, "casella-proxy-v1" NUL protocol NUL nonce NUL address
//! NUL params), lower-case hex, where params is the exact text after the MAC
//! (`client=IP:PORT tls=yes|no`, for submission also `helo=NAME esmtp=yes|no`).

use std::net::SocketAddr;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::ClusterSecret;

pub const CHALLENGE: &str = "XCASELLA-CHALLENGE";
pub const PROXY: &str = "XCASELLA-PROXY";
pub const REFUSED: &str = "XCASELLA-REFUSED";
/// Binds every MAC to this version of the channel.
const CONTEXT: &[u8] = b"casella-proxy-v1";
/// Random bytes in a nonce.
const NONCE_LEN: usize = 32;

/// Who a front end hands over: the account it authenticated and what the back end
/// needs to serve that client as if it had connected directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The account's address (the login, normalised).
    pub address: String,
    /// The client's address as the front end saw it (for logs and Received:).
    pub client: SocketAddr,
    /// The client's connection to the front end is TLS.
    pub tls: bool,
    /// Submission: the client's EHLO/HELO name, if it sent one.
    pub helo: Option<String>,
    /// Submission: the client greeted with EHLO.
    pub esmtp: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("malformed line: {0}")]
    Malformed(&'static str),
    #[error("the back end speaks {0}, not the protocol asked for")]
    WrongProtocol(String),
    #[error("the MAC does not match (wrong secret, or a replayed or altered proof)")]
    BadMac,
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// A value that can stand in a space-separated line: no spaces or controls.
fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect()
}

impl Handover {
    fn params(&self) -> String {
        let mut p = format!("client={} tls={}", self.client, yes_no(self.tls));
        if let Some(helo) = &self.helo {
            let helo = clean(helo);
            if !helo.is_empty() {
                p.push_str(&format!(" helo={helo} esmtp={}", yes_no(self.esmtp)));
            }
        }
        p
    }
}

/// 32 random bytes, hex: one per internal connection.
pub fn new_nonce() -> String {
    let mut bytes = [0u8; NONCE_LEN];
    // The system's random source does not fail on Linux once booted; an all-zero
    // nonce would still only allow replaying a proof made for it.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        tracing::error!("no random numbers for a proxy nonce");
    }
    hex::encode(bytes)
}

/// The back end's first line.
pub fn challenge_line(protocol: &str, nonce: &str) -> String {
    format!("{CHALLENGE} {protocol} {nonce}")
}

/// Reads the back end's challenge; the nonce, when it is for `protocol`.
pub fn parse_challenge(line: &str, protocol: &str) -> Result<String, ProofError> {
    let mut words = line.split(' ');
    if words.next() != Some(CHALLENGE) {
        return Err(ProofError::Malformed("not a challenge"));
    }
    let (Some(proto), Some(nonce), None) = (words.next(), words.next(), words.next()) else {
        return Err(ProofError::Malformed("challenge"));
    };
    if proto != protocol {
        return Err(ProofError::WrongProtocol(proto.to_string()));
    }
    if nonce.len() != NONCE_LEN * 2 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ProofError::Malformed("nonce"));
    }
    Ok(nonce.to_string())
}

fn message(protocol: &str, nonce: &str, address: &str, params: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + protocol.len() + nonce.len() + 128);
    for part in [
        CONTEXT,
        protocol.as_bytes(),
        nonce.as_bytes(),
        address.as_bytes(),
        params.as_bytes(),
    ] {
        if !m.is_empty() {
            m.push(0);
        }
        m.extend_from_slice(part);
    }
    m
}

/// The front end's answer to a challenge.
pub fn proof_line(secret: &ClusterSecret, protocol: &str, nonce: &str, who: &Handover) -> String {
    let address = clean(&who.address);
    let params = who.params();
    let tag = hmac::sign(secret.key(), &message(protocol, nonce, &address, &params));
    format!("{PROXY} {address} {} {params}", hex::encode(tag.as_ref()))
}

/// Checks a proof against the nonce this connection was given (in constant time)
/// and reads the identity it hands over.
pub fn verify_proof(
    secret: &ClusterSecret,
    protocol: &str,
    nonce: &str,
    line: &str,
) -> Result<Handover, ProofError> {
    let rest = line
        .strip_prefix(PROXY)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(ProofError::Malformed("not XCASELLA-PROXY"))?;
    let (address, rest) = rest
        .split_once(' ')
        .ok_or(ProofError::Malformed("no MAC"))?;
    let (mac, params) = rest.split_once(' ').unwrap_or((rest, ""));
    if address.is_empty() || address.contains(|c: char| c.is_control()) {
        return Err(ProofError::Malformed("address"));
    }
    let mac = hex::decode(mac).map_err(|_| ProofError::Malformed("MAC"))?;
    hmac::verify(
        secret.key(),
        &message(protocol, nonce, address, params),
        &mac,
    )
    .map_err(|_| ProofError::BadMac)?;
    // Authentic from here on; unknown parameters are ignored (a newer front end).
    let mut client = None;
    let mut who = Handover {
        address: address.to_string(),
        client: SocketAddr::from(([0, 0, 0, 0], 0)),
        tls: false,
        helo: None,
        esmtp: false,
    };
    for param in params.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        match key {
            "client" => client = value.parse().ok(),
            "tls" => who.tls = value == "yes",
            "helo" if !value.is_empty() => who.helo = Some(value.to_string()),
            "esmtp" => who.esmtp = value == "yes",
            _ => {}
        }
    }
    who.client = client.ok_or(ProofError::Malformed("client"))?;
    Ok(who)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> ClusterSecret {
        ClusterSecret::from_bytes(s.as_bytes()).unwrap()
    }

    fn alice() -> Handover {
        Handover {
            address: "alice@example.org".into(),
            client: "192.0.2.7:50412".parse().unwrap(),
            tls: true,
            helo: Some("laptop.example".into()),
            esmtp: true,
        }
    }

    #[test]
    fn a_proof_round_trips() {
        let s = secret("the cluster secret, 32 bytes....");
        let nonce = new_nonce();
        assert_eq!(nonce.len(), 64);
        let challenge = challenge_line("submission", &nonce);
        assert_eq!(parse_challenge(&challenge, "submission").unwrap(), nonce);
        let line = proof_line(&s, "submission", &nonce, &alice());
        assert!(
            line.starts_with("XCASELLA-PROXY alice@example.org "),
            "{line}"
        );
        assert!(
            line.ends_with(" client=192.0.2.7:50412 tls=yes helo=laptop.example esmtp=yes"),
            "{line}"
        );
        assert_eq!(verify_proof(&s, "submission", &nonce, &line), Ok(alice()));
        let imap = Handover {
            helo: None,
            esmtp: false,
            client: "[2001:db8::1]:993".parse().unwrap(),
            ..alice()
        };
        let line = proof_line(&s, "imap", &nonce, &imap);
        assert_eq!(verify_proof(&s, "imap", &nonce, &line), Ok(imap));
    }

    #[test]
    fn wrong_secret_replay_and_tampering_fail() {
        let s = secret("the cluster secret, 32 bytes....");
        let nonce = new_nonce();
        let line = proof_line(&s, "imap", &nonce, &alice());
        let other = secret("another secret of 32 bytes......");
        assert_eq!(
            verify_proof(&other, "imap", &nonce, &line),
            Err(ProofError::BadMac)
        );
        // A captured proof on a new connection: another nonce.
        assert_eq!(
            verify_proof(&s, "imap", &new_nonce(), &line),
            Err(ProofError::BadMac)
        );
        // ... on another protocol's listener.
        assert_eq!(
            verify_proof(&s, "pop3", &nonce, &line),
            Err(ProofError::BadMac)
        );
        // ... for another account, or with altered parameters.
        let forged = line.replace("alice@", "mallory@");
        assert_eq!(
            verify_proof(&s, "imap", &nonce, &forged),
            Err(ProofError::BadMac)
        );
        let forged = line.replace("tls=yes", "tls=no");
        assert_eq!(
            verify_proof(&s, "imap", &nonce, &forged),
            Err(ProofError::BadMac)
        );
        for bad in [
            "",
            "XCASELLA-PROXY",
            "XCASELLA-PROXY alice@example.org",
            "XCASELLA-PROXY alice@example.org zz client=1.2.3.4:5",
            "LOGIN alice pw",
        ] {
            assert!(
                matches!(
                    verify_proof(&s, "imap", &nonce, bad),
                    Err(ProofError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn challenges_are_checked() {
        let nonce = new_nonce();
        assert_ne!(nonce, new_nonce());
        assert_eq!(
            parse_challenge(&challenge_line("pop3", &nonce), "imap"),
            Err(ProofError::WrongProtocol("pop3".into()))
        );
        for bad in [
            "* OK IMAP4rev2 ready",
            "XCASELLA-CHALLENGE imap",
            "XCASELLA-CHALLENGE imap 1234",
            "XCASELLA-CHALLENGE imap x y",
        ] {
            assert!(parse_challenge(bad, "imap").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn helo_names_cannot_break_the_line() {
        let s = secret("the cluster secret, 32 bytes....");
        let nonce = new_nonce();
        let who = Handover {
            helo: Some("evil tls=no\r\n".into()),
            ..alice()
        };
        let line = proof_line(&s, "submission", &nonce, &who);
        let got = verify_proof(&s, "submission", &nonce, &line).unwrap();
        assert_eq!(got.helo.as_deref(), Some("eviltls=no"));
        assert!(got.tls);
    }
}
