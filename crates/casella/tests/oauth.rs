//! OAuth 2.0 ("modern authentication"): SASL XOAUTH2 and OAUTHBEARER on IMAP,
//! POP3 and submission, driven by Python's imaplib, poplib and smtplib
//! (tests/clients/oauth_check.py). Keys are made in the test: an ES256 key with
//! ring and an RS256 key with the openssl command; the issuer's JWKS is a file.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use casella_testkit::TestServer;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "alice@example.org";
const ISSUER: &str = "https://login.example.org/tenant";
const AUDIENCE: &str = "https://mail.example.org";

struct Issuer {
    ec: EcdsaKeyPair,
    rsa_pem: std::path::PathBuf,
}

fn openssl(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl Issuer {
    /// New keys; writes the JWKS to `dir/jwks.json`.
    fn new(dir: &Path) -> Issuer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        openssl(&["genrsa", "-out", "rsa.pem", "2048"], dir);
        let modulus = String::from_utf8(openssl(
            &["rsa", "-in", "rsa.pem", "-noout", "-modulus"],
            dir,
        ))
        .unwrap();
        let n = hex_decode(modulus.trim().trim_start_matches("Modulus="));
        let pk = ec.public_key().as_ref();
        let jwks = json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec1", "use": "sig", "x": B64.encode(&pk[1..33]), "y": B64.encode(&pk[33..65])},
            {"kty": "RSA", "kid": "rsa1", "use": "sig", "alg": "RS256", "n": B64.encode(&n), "e": "AQAB"},
        ]});
        std::fs::write(dir.join("jwks.json"), jwks.to_string()).unwrap();
        Issuer {
            ec,
            rsa_pem: dir.join("rsa.pem"),
        }
    }

    fn es256(&self, claims: &Value) -> String {
        let msg = format!(
            "{}.{}",
            B64.encode(br#"{"alg":"ES256","kid":"ec1","typ":"JWT"}"#),
            B64.encode(claims.to_string())
        );
        let sig = self.ec.sign(&SystemRandom::new(), msg.as_bytes()).unwrap();
        format!("{msg}.{}", B64.encode(sig.as_ref()))
    }

    fn rs256(&self, claims: &Value) -> String {
        let msg = format!(
            "{}.{}",
            B64.encode(br#"{"alg":"RS256","kid":"rsa1","typ":"JWT"}"#),
            B64.encode(claims.to_string())
        );
        let dir = self.rsa_pem.parent().unwrap();
        std::fs::write(dir.join("msg"), &msg).unwrap();
        let sig = openssl(&["dgst", "-sha256", "-sign", "rsa.pem", "msg"], dir);
        format!("{msg}.{}", B64.encode(sig))
    }
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(scope: &str) -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "nbf": now() - 5, "exp": now() + 600,
        "scp": scope, "upn": USER, "name": "Alice",
    })
}

fn server(keys: &Path) -> TestServer {
    let config = format!(
        "hostname = \"mail.test\"\n[pop3]\nauth-failure-delay-ms = 0\n[imap]\nauth-failure-delay-ms = 0\n[submission]\nauth-failure-delay-ms = 0\n\
         [oauth]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks-file = \"{}\"\n",
        keys.join("jwks.json").display()
    );
    let s = TestServer::builder(BIN)
        .protocols(&["imaps", "pop3s", "submission"])
        .config(&config)
        .start();
    s.add_account(USER, "alice-pw");
    // The failures below are on purpose; keep the throttle out of them.
    s.set_settings("security", &["trusted-networks=127.0.0.0/8"]);
    s.wait_for_settings();
    s
}

fn login(s: &TestServer, proto: &str, mech: &str, token: &str) -> Value {
    let out = casella_testkit::clients::sasl_login("oauth_check.py", s, proto, mech, USER, token);
    serde_json::from_slice(&out).expect("oauth_check.py prints JSON")
}

#[test]
fn good_tokens_log_in_on_every_protocol() {
    let keys = tempfile::tempdir().unwrap();
    let issuer = Issuer::new(keys.path());
    let s = server(keys.path());
    let imap = issuer.rs256(&claims("IMAP.AccessAsUser.All"));
    for mech in ["XOAUTH2", "OAUTHBEARER"] {
        let r = login(&s, "imap", mech, &imap);
        assert_eq!(r["ok"], true, "{mech}: {r}");
        assert!(
            r["caps"].to_string().contains(&format!("AUTH={mech}")),
            "{r}"
        );
    }
    let pop = issuer.es256(&claims("POP.AccessAsUser.All"));
    let r = login(&s, "pop", "OAUTHBEARER", &pop);
    assert_eq!(r["ok"], true, "{r}");
    assert!(r["caps"].to_string().contains("SASL"), "{r}");
    let smtp = issuer.es256(&claims("SMTP.Send"));
    let r = login(&s, "smtp", "XOAUTH2", &smtp);
    assert_eq!(r["ok"], true, "{r}");
    assert!(r["reply"].as_str().unwrap().starts_with("235"), "{r}");
    let caps = r["caps"].to_string();
    assert!(
        caps.contains("XOAUTH2") && caps.contains("OAUTHBEARER") && caps.contains("PLAIN"),
        "{caps}"
    );
}

#[test]
fn bad_tokens_fail_with_the_rfc_7628_error() {
    let keys = tempfile::tempdir().unwrap();
    let issuer = Issuer::new(keys.path());
    let s = server(keys.path());
    let mut expired = claims("IMAP.AccessAsUser.All");
    expired["exp"] = json!(now() - 3600);
    let mut audience = claims("IMAP.AccessAsUser.All");
    audience["aud"] = json!("https://someone-else.example");
    let other_keys = tempfile::tempdir().unwrap();
    let forger = Issuer::new(other_keys.path());
    let cases = [
        ("expired", issuer.es256(&expired), "imap", "invalid_token"),
        (
            "wrong audience",
            issuer.rs256(&audience),
            "imap",
            "invalid_token",
        ),
        (
            "wrong scope",
            issuer.es256(&claims("IMAP.AccessAsUser.All")),
            "pop",
            "insufficient_scope",
        ),
        (
            "wrong signature",
            forger.es256(&claims("IMAP.AccessAsUser.All")),
            "imap",
            "invalid_token",
        ),
        (
            "wrong scope for sending",
            issuer.rs256(&claims("POP.AccessAsUser.All")),
            "smtp",
            "insufficient_scope",
        ),
    ];
    for (what, token, proto, status) in cases {
        for mech in ["XOAUTH2", "OAUTHBEARER"] {
            let r = login(&s, proto, mech, &token);
            assert_eq!(r["ok"], false, "{what} {mech}: {r}");
            assert_eq!(r["error"]["status"], status, "{what} {mech}: {r}");
            assert_eq!(r["error"]["schemes"], "bearer", "{r}");
            assert!(r["error"]["scope"].as_str().is_some(), "{r}");
        }
    }
    // A token for a user with no mailbox.
    let mut stranger = claims("IMAP.AccessAsUser.All");
    stranger["upn"] = json!("mallory@example.org");
    let r = login(&s, "imap", "XOAUTH2", &issuer.es256(&stranger));
    assert_eq!(r["ok"], false, "{r}");
}

#[test]
fn with_basic_auth_off_only_oauth_is_offered_and_works() {
    let keys = tempfile::tempdir().unwrap();
    let issuer = Issuer::new(keys.path());
    let s = server(keys.path());
    for proto in ["imap", "pop", "submission"] {
        s.set_settings(proto, &["allow-basic-auth=false"]);
    }
    s.wait_for_settings();
    let r = login(
        &s,
        "imap",
        "OAUTHBEARER",
        &issuer.es256(&claims("IMAP.AccessAsUser.All")),
    );
    assert_eq!(r["ok"], true, "{r}");
    let caps = r["caps"].to_string();
    assert!(
        !caps.contains("AUTH=PLAIN") && caps.contains("LOGINDISABLED"),
        "{caps}"
    );
    let r = login(
        &s,
        "pop",
        "XOAUTH2",
        &issuer.es256(&claims("POP.AccessAsUser.All")),
    );
    assert_eq!(r["ok"], true, "{r}");
    assert!(!r["caps"].to_string().contains("USER"), "{r}");
    let r = login(
        &s,
        "smtp",
        "OAUTHBEARER",
        &issuer.rs256(&claims("SMTP.Send")),
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["caps"], json!(["XOAUTH2", "OAUTHBEARER"]), "{r}");
}
