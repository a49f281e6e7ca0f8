//! DKIM signing (issue 24): the relay signs any message (Ed25519 key of the
//! relay's tests) without a panic; the DKIM-Signature field it prepends is one
//! header field that parses (RFC 6376 §3.5) with our domain, selector and
//! relaxed/relaxed and names the fields it signs, and — for a message whose header mail-auth
//! reads — verifies against the key's published record.
#![no_main]

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use casella_relay::DkimKey;
use casella_relay::dkim::{Signers, dns_record};
use libfuzzer_sys::fuzz_target;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dkim::{Canonicalization, Signature};
use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};
use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
};

fn key_file() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/relay/testdata/dkim-ed25519.pem")
}

fn signers() -> &'static Signers {
    static S: OnceLock<Signers> = OnceLock::new();
    S.get_or_init(|| {
        let s = Signers::load(&[DkimKey {
            domain: "example.org".into(),
            selector: "sel".into(),
            key_file: key_file(),
        }]);
        assert!(!s.is_empty(), "the test key loads");
        s
    })
}

/// A TXT cache holding the key's record: the verifier never asks a server.
struct TxtCache(Mutex<HashMap<Box<str>, Txt>>);

impl ResolverCache<Box<str>, Txt> for TxtCache {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().get(name).cloned()
    }
    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().remove(name)
    }
    fn insert(&self, key: Box<str>, value: Txt, _valid_until: std::time::Instant) {
        self.0.lock().unwrap().insert(key, value);
    }
}

struct Verifier {
    runtime: tokio::runtime::Runtime,
    auth: MessageAuthenticator,
    cache: TxtCache,
}

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let record = dns_record(&key_file()).expect("record");
        let cache = TxtCache(Mutex::new(HashMap::new()));
        cache.insert(
            "sel._domainkey.example.org.".into(),
            Txt::from(DomainKey::parse(record.as_bytes()).expect("record parses")),
            std::time::Instant::now() + std::time::Duration::from_secs(1 << 30),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let auth = runtime.block_on(async {
            MessageAuthenticator::new(
                ResolverConfig::from_parts(None, vec![], vec![]),
                ResolverOpts::default(),
            )
            .expect("authenticator")
        });
        Verifier {
            runtime,
            auth,
            cache,
        }
    })
}

/// A header mail-auth and we read alike: CRLF lines, each a field with a
/// name or a continuation, ASCII, then a blank line.
fn plain_header(message: &[u8]) -> bool {
    let Some(end) = message.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let header = &message[..end + 2];
    header.is_ascii()
        && !header.starts_with(b" ")
        && !header.starts_with(b"\t")
        && header.split(|&b| b == b'\n').all(|l| {
            l.is_empty()
                || l.ends_with(b"\r")
                    && !l[..l.len() - 1].contains(&b'\r')
                    && (l.starts_with(b" ")
                        || l.starts_with(b"\t")
                        || l.iter()
                            .position(|&b| b == b':')
                            .is_some_and(|c| c > 0 && l[..c].iter().all(|b| b.is_ascii_graphic())))
        })
}

fuzz_target!(|data: &[u8]| {
    let Some(signed) = signers().sign(data, "sender@example.org") else {
        // Signing failed (logged); the message goes out unsigned.
        return;
    };
    assert!(signed.ends_with(data), "the message follows the signature");
    let field = &signed[..signed.len() - data.len()];
    let text = std::str::from_utf8(field).expect("the field is text");
    let value = text
        .strip_prefix("DKIM-Signature:")
        .expect("one DKIM-Signature field");
    assert!(text.ends_with("\r\n"));
    // One field: every line after the first is a continuation.
    for line in text.trim_end_matches("\r\n").split("\r\n").skip(1) {
        assert!(line.starts_with([' ', '\t']), "{text:?}");
    }
    let signature = Signature::parse(value.as_bytes()).expect("the signature parses");
    assert_eq!(signature.d, "example.org");
    assert_eq!(signature.s, "sel");
    assert_eq!(signature.ch, Canonicalization::Relaxed);
    assert_eq!(signature.cb, Canonicalization::Relaxed);
    assert!(!signature.h.is_empty(), "{text:?}");

    if plain_header(data) {
        let v = verifier();
        let Some(message) = AuthenticatedMessage::parse(&signed) else {
            return;
        };
        // One result per signature: ours is the one with our `b=`. (Not the
        // first: mail-auth lists the message's malformed DKIM-Signature
        // fields before the signatures it checked.)
        let (ours, results): (Vec<DkimResult>, Vec<DkimResult>) = v.runtime.block_on(async {
            let outputs = v
                .auth
                .verify_dkim(Parameters::new(&message).with_txt_cache(&v.cache))
                .await;
            let ours = outputs
                .iter()
                .filter(|o| o.signature().is_some_and(|s| s.b == signature.b))
                .map(|o| o.result().clone())
                .collect();
            (ours, outputs.iter().map(|o| o.result().clone()).collect())
        });
        assert!(
            ours == [DkimResult::Pass],
            "{results:?} for {:?}",
            String::from_utf8_lossy(&signed)
        );
    }
});
