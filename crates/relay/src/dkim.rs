//! DKIM signing — RFC 6376, with mail-auth (ring). rsa-sha256 (RFC 6376 §3.3.1)
//! from a PKCS#1 or PKCS#8 PEM key, ed25519-sha256 (RFC 8463) from a PKCS#8 PEM key;
//! relaxed/relaxed canonicalization (§3.4.2, §3.4.4).
//!
//! A message is signed with the key of its author's domain: the From: header's
//! domain, else the envelope sender's. Keys are loaded once; a key that cannot be
//! loaded is logged and its domain goes out unsigned (never an outage).

use std::path::Path;

use base64::Engine;
use mail_auth::common::crypto::{DkimKey as KeyPair, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use crate::config::DkimKey;

/// The header fields signed when present — RFC 6376 §5.4.1's recommendations.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Reply-To",
    "In-Reply-To",
    "References",
];

struct Loaded {
    domain: String,
    signer: DkimSigner<KeyPair, Done>,
}

/// The signing keys, by domain.
pub struct Signers {
    keys: Vec<Loaded>,
}

impl Signers {
    /// Loads every configured key; failures are logged and skipped.
    pub fn load(keys: &[DkimKey]) -> Signers {
        let mut loaded = Vec::new();
        for k in keys {
            match load_key(&k.key_file) {
                Ok(pair) => {
                    let domain = k.domain.trim_end_matches('.').to_ascii_lowercase();
                    let signer = DkimSigner::from_key(pair)
                        .domain(domain.clone())
                        .selector(k.selector.clone())
                        .headers(SIGNED_HEADERS.iter().copied())
                        .header_canonicalization(Canonicalization::Relaxed)
                        .body_canonicalization(Canonicalization::Relaxed);
                    loaded.push(Loaded { domain, signer });
                }
                Err(e) => tracing::error!(
                    domain = %k.domain, file = %k.key_file.display(), error = %e,
                    "DKIM key not loaded; mail from this domain goes out unsigned"
                ),
            }
        }
        Signers { keys: loaded }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The message with a DKIM-Signature header prepended, or `None` when no key
    /// fits (or signing failed, which is logged).
    pub fn sign(&self, message: &[u8], envelope_sender: &str) -> Option<Vec<u8>> {
        if self.keys.is_empty() {
            return None;
        }
        let candidates = [author_domain(message), domain_of(envelope_sender)];
        let key = candidates
            .iter()
            .flatten()
            .find_map(|d| self.keys.iter().find(|k| &k.domain == d))?;
        match key.signer.sign(message) {
            Ok(signature) => {
                let header = signature.to_header();
                let mut out = Vec::with_capacity(header.len() + message.len());
                out.extend_from_slice(header.as_bytes());
                out.extend_from_slice(message);
                Some(out)
            }
            Err(e) => {
                tracing::error!(domain = %key.domain, error = %e, "DKIM signing failed; sending unsigned");
                None
            }
        }
    }
}

/// Reads a PEM private key: RSA as PKCS#1 or PKCS#8, Ed25519 as PKCS#8.
pub fn load_key(path: &Path) -> Result<KeyPair, String> {
    let pem = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("{}: no PEM private key: {e}", path.display()))?;
    match der {
        PrivateKeyDer::Pkcs1(_) => RsaKey::<Sha256>::from_key_der(der)
            .map(KeyPair::Rsa)
            .map_err(|e| format!("{}: {e}", path.display())),
        PrivateKeyDer::Pkcs8(p8) => {
            let bytes = p8.secret_pkcs8_der().to_vec();
            match RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(p8)) {
                Ok(k) => Ok(KeyPair::Rsa(k)),
                // OpenSSL writes Ed25519 keys as PKCS#8 v1 (no public key inside).
                Err(_) => Ed25519Key::from_pkcs8_maybe_unchecked_der(&bytes)
                    .map(KeyPair::Ed25519)
                    .map_err(|e| format!("{}: neither RSA nor Ed25519: {e}", path.display())),
            }
        }
        _ => Err(format!(
            "{}: unsupported key type (use RSA or Ed25519)",
            path.display()
        )),
    }
}

/// The TXT record to publish at `selector._domainkey.domain` (RFC 6376 §3.6.1) for
/// the key in `path`.
pub fn dns_record(path: &Path) -> Result<String, String> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    Ok(match load_key(path)? {
        KeyPair::Rsa(k) => format!("v=DKIM1; k=rsa; p={}", b64(&rsa_spki(&k.public_key()))),
        KeyPair::Ed25519(k) => format!("v=DKIM1; k=ed25519; p={}", b64(&k.public_key())),
    })
}

/// Wraps a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo (RFC 5280 §4.1; what
/// `openssl rsa -pubout` prints and what DKIM verifiers expect in `p=`).
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    fn der(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = body.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|&b| b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(body);
        out
    }
    // SEQUENCE { OID 1.2.840.113549.1.1.1 (rsaEncryption), NULL }
    const ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0u8];
    bits.extend_from_slice(pkcs1);
    let mut body = ALGORITHM.to_vec();
    body.extend(der(0x03, &bits));
    der(0x30, &body)
}

/// The lower-case domain of the first From: address.
fn author_domain(message: &[u8]) -> Option<String> {
    let value = header_value(message, "From")?;
    casella_mime::parse_address_list(&value)
        .into_iter()
        .find_map(|a| a.host)
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
        .filter(|h| !h.is_empty() && h != "missing_domain")
}

fn domain_of(address: &str) -> Option<String> {
    let (_, d) = address.rsplit_once('@')?;
    let d = d.trim_end_matches('.').to_ascii_lowercase();
    (!d.is_empty()).then_some(d)
}

/// The unfolded value of the first header field called `name`.
fn header_value(message: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let mut found: Option<String> = None;
    for line in text.split("\r\n") {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(v) = found.as_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if found.is_some() {
            break;
        }
        if let Some((field, value)) = line.split_once(':')
            && field.trim_end().eq_ignore_ascii_case(name)
        {
            found = Some(value.trim().to_string());
        }
    }
    found
}

#[cfg(test)]
pub(crate) mod tests {
    use std::borrow::Borrow;
    use std::collections::HashMap;
    use std::hash::Hash;
    use std::path::PathBuf;
    use std::sync::Mutex;

    use mail_auth::common::parse::TxtRecordParser;
    use mail_auth::common::verify::DomainKey;
    use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};
    use mail_auth::{
        AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
    };

    use super::*;

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name)
    }

    /// A TXT cache filled by the test: the verifier never reaches the network.
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

    const MESSAGE: &[u8] = b"From: Alice <alice@Example.ORG>\r\n\
        To: bob@remote.example\r\n\
        Subject: signed\r\n\
        Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
        Message-ID: <1@example.org>\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        \r\n\
        Hello  there.\r\n\
        .dot line\r\n\r\n\r\n";

    /// Verifies `signed` against `record` published for sel._domainkey.example.org.
    pub(crate) async fn verify(signed: &[u8], record: &str) -> Vec<DkimResult> {
        let cache = TxtCache(Mutex::new(HashMap::new()));
        cache.insert(
            "sel._domainkey.example.org.".into(),
            Txt::from(DomainKey::parse(record.as_bytes()).unwrap()),
            std::time::Instant::now() + std::time::Duration::from_secs(60),
        );
        // No name servers: every answer must come from the cache.
        let auth = MessageAuthenticator::new(
            ResolverConfig::from_parts(None, vec![], vec![]),
            ResolverOpts::default(),
        )
        .unwrap();
        let msg = AuthenticatedMessage::parse(signed).unwrap();
        auth.verify_dkim(Parameters::new(&msg).with_txt_cache(&cache))
            .await
            .iter()
            .map(|o| o.result().clone())
            .collect()
    }

    fn signers(file: &str) -> Signers {
        let s = Signers::load(&[DkimKey {
            domain: "example.org".into(),
            selector: "sel".into(),
            key_file: testdata(file),
        }]);
        assert!(!s.is_empty(), "{file} did not load");
        s
    }

    #[tokio::test]
    async fn rsa_signatures_verify() {
        for file in ["dkim-rsa-pkcs1.pem", "dkim-rsa-pkcs8.pem"] {
            let signed = signers(file).sign(MESSAGE, "bounce@other.example").unwrap();
            let head =
                String::from_utf8_lossy(&signed[..signed.len() - MESSAGE.len()]).into_owned();
            assert!(
                head.starts_with(
                    "DKIM-Signature: v=1; a=rsa-sha256; s=sel; d=example.org; c=relaxed/relaxed;"
                ),
                "{head}"
            );
            assert!(signed.ends_with(MESSAGE));
            let record = dns_record(&testdata(file)).unwrap();
            assert_eq!(verify(&signed, &record).await, [DkimResult::Pass], "{file}");

            // A changed body (mail-auth: neutral, body hash mismatch) or a changed
            // signed header no longer passes.
            let mut tampered = signed.clone();
            let at = tampered.len() - 8;
            tampered[at] = b'X';
            let r = verify(&tampered, &record).await;
            assert!(
                matches!(r[..], [DkimResult::Neutral(_) | DkimResult::Fail(_)]),
                "{r:?}"
            );
            let tampered = String::from_utf8(signed.clone())
                .unwrap()
                .replace("Subject: signed", "Subject: signeD");
            let r = verify(tampered.as_bytes(), &record).await;
            assert!(matches!(r[..], [DkimResult::Fail(_)]), "{r:?}");
        }
    }

    #[tokio::test]
    async fn ed25519_signatures_verify() {
        let signed = signers("dkim-ed25519.pem").sign(MESSAGE, "").unwrap();
        assert!(signed.starts_with(b"DKIM-Signature: v=1; a=ed25519-sha256;"));
        let record = dns_record(&testdata("dkim-ed25519.pem")).unwrap();
        assert!(record.starts_with("v=DKIM1; k=ed25519; p="));
        assert_eq!(verify(&signed, &record).await, [DkimResult::Pass]);
    }

    #[test]
    fn key_choice_by_author_then_envelope() {
        let s = signers("dkim-rsa-pkcs1.pem");
        // From: is another domain, the envelope sender ours: signed as ours.
        let other = b"From: x@elsewhere.example\r\nSubject: s\r\n\r\nbody\r\n";
        assert!(s.sign(other, "alice@example.org").is_some());
        // Neither is ours: unsigned.
        assert!(s.sign(other, "x@elsewhere.example").is_none());
        assert!(s.sign(b"Subject: no from\r\n\r\nb\r\n", "").is_none());
    }

    #[test]
    fn bad_keys_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a key").unwrap();
        let s = Signers::load(&[
            DkimKey {
                domain: "a.example".into(),
                selector: "s".into(),
                key_file: junk.clone(),
            },
            DkimKey {
                domain: "b.example".into(),
                selector: "s".into(),
                key_file: dir.path().join("missing.pem"),
            },
        ]);
        assert!(s.is_empty());
        assert!(load_key(&junk).is_err());
    }

    #[test]
    fn headers_unfold() {
        let m =
            b"Subject: a\r\nFrom: \"Long\r\n Name\" <l@d.example>\r\nX: y\r\n\r\nFrom: body@x\r\n";
        assert_eq!(
            header_value(m, "from").as_deref(),
            Some("\"Long Name\" <l@d.example>")
        );
        assert_eq!(author_domain(m).as_deref(), Some("d.example"));
        assert_eq!(header_value(m, "To"), None);
    }
}
