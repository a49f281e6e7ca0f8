//! OAuth 2.0 access tokens ("modern authentication") for SASL XOAUTH2 and
//! OAUTHBEARER (RFC 7628): JWTs (RFC 7519) signed with RS256 or ES256 (RFC 7518
//! §3.3, §3.4), checked against the issuer's keys (a JWKS, RFC 7517), for issuer,
//! audience, expiry and a scope per protocol — casella's equivalents of
//! IMAP.AccessAsUser.All, POP.AccessAsUser.All and SMTP.Send.

use std::sync::RwLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

use crate::Protocol;

/// What a token must say (casella.toml `[oauth]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    /// The `iss` claim.
    pub issuer: String,
    /// One of the `aud` values.
    pub audience: String,
    pub scope_imap: String,
    pub scope_pop: String,
    pub scope_submission: String,
    /// Claims that name the user, tried in order.
    pub user_claims: Vec<String>,
    /// Clock skew allowed for `exp` and `nbf`, in seconds.
    pub leeway: i64,
}

impl OAuthConfig {
    pub fn scope_for(&self, protocol: Protocol) -> &str {
        match protocol {
            Protocol::Imap => &self.scope_imap,
            Protocol::Pop3 => &self.scope_pop,
            Protocol::Submission => &self.scope_submission,
            Protocol::Web => "",
        }
    }
}

/// Why a token was refused; `Display` is for logs (never the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a JWT")]
    Malformed,
    #[error("the token's algorithm {0} is not RS256 or ES256")]
    Algorithm(String),
    #[error("no key of the issuer matches the token")]
    UnknownKey,
    #[error("the signature does not verify")]
    Signature,
    #[error("the token was issued by {0}, not the configured issuer")]
    Issuer(String),
    #[error("the token is not for this audience")]
    Audience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token lacks the scope {0}")]
    Scope(String),
    #[error("the token names no user")]
    NoUser,
}

impl TokenError {
    /// The RFC 7628 §3.2.2 error `status`: `invalid_token` (RFC 6750 §3.1), or
    /// `insufficient_scope` for a missing scope.
    pub fn status(&self) -> &'static str {
        match self {
            TokenError::Scope(_) => "insufficient_scope",
            _ => "invalid_token",
        }
    }
}

#[derive(Debug, Clone)]
enum Key {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed P-256 point (0x04 || x || y).
    P256(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Jwk {
    kid: Option<String>,
    key: Key,
}

/// Checks tokens against the issuer's current keys.
pub struct TokenValidator {
    config: OAuthConfig,
    keys: RwLock<Vec<Jwk>>,
}

fn b64(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// The keys of a JWKS document that casella can use (RSA, and EC P-256).
fn parse_jwks(text: &str) -> Result<Vec<Jwk>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let keys = doc["keys"].as_array().ok_or("JWKS has no \"keys\" array")?;
    let mut out = Vec::new();
    for k in keys {
        let kid = k["kid"].as_str().map(str::to_string);
        let field = |name: &str| k[name].as_str().and_then(b64);
        let key = match k["kty"].as_str() {
            Some("RSA") => match (field("n"), field("e")) {
                (Some(n), Some(e)) => Key::Rsa { n, e },
                _ => continue,
            },
            Some("EC") if k["crv"].as_str() == Some("P-256") => match (field("x"), field("y")) {
                (Some(x), Some(y)) if x.len() == 32 && y.len() == 32 => {
                    let mut p = vec![4u8];
                    p.extend_from_slice(&x);
                    p.extend_from_slice(&y);
                    Key::P256(p)
                }
                _ => continue,
            },
            _ => continue,
        };
        out.push(Jwk { kid, key });
    }
    if out.is_empty() {
        return Err("JWKS has no RSA or P-256 key".into());
    }
    Ok(out)
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
fn audience_matches(aud: &Value, wanted: &str) -> bool {
    match aud {
        Value::String(s) => s == wanted,
        Value::Array(a) => a.iter().any(|v| v.as_str() == Some(wanted)),
        _ => false,
    }
}

/// Scopes from `scp` or `scope` (space-separated, or an array) and `roles`.
fn has_scope(claims: &Value, wanted: &str) -> bool {
    if wanted.is_empty() {
        return true;
    }
    ["scp", "scope", "roles"]
        .iter()
        .any(|name| match &claims[*name] {
            Value::String(s) => s.split_whitespace().any(|x| x == wanted),
            Value::Array(a) => a.iter().any(|v| v.as_str() == Some(wanted)),
            _ => false,
        })
}

impl TokenValidator {
    /// A validator with the keys of `jwks` (a JWKS document).
    pub fn new(config: OAuthConfig, jwks: &str) -> Result<TokenValidator, String> {
        Ok(TokenValidator {
            config,
            keys: RwLock::new(parse_jwks(jwks)?),
        })
    }

    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// Replaces the keys (the issuer rotated them); a bad document keeps the old ones.
    pub fn set_keys(&self, jwks: &str) -> Result<(), String> {
        let keys = parse_jwks(jwks)?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(())
    }

    /// Checks `token` for `protocol` at time `now` (Unix seconds); returns the
    /// user it names (lower-case).
    pub fn validate(
        &self,
        token: &str,
        protocol: Protocol,
        now: i64,
    ) -> Result<String, TokenError> {
        let mut parts = token.trim().split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Value = b64(h)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        let claims: Value = b64(p)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        let sig = b64(s).ok_or(TokenError::Malformed)?;
        let alg = header["alg"].as_str().unwrap_or("").to_string();
        let kid = header["kid"].as_str();
        let signed = &token.trim().as_bytes()[..h.len() + 1 + p.len()];
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        let candidates: Vec<&Jwk> = keys
            .iter()
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .filter(|k| {
                matches!(
                    (&k.key, alg.as_str()),
                    (Key::Rsa { .. }, "RS256") | (Key::P256(_), "ES256")
                )
            })
            .collect();
        if alg != "RS256" && alg != "ES256" {
            return Err(TokenError::Algorithm(alg));
        }
        if candidates.is_empty() {
            return Err(TokenError::UnknownKey);
        }
        let verified = candidates.iter().any(|k| match &k.key {
            Key::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, &sig)
                .is_ok(),
            Key::P256(point) => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, &sig)
                .is_ok(),
        });
        if !verified {
            return Err(TokenError::Signature);
        }
        let c = &self.config;
        let iss = claims["iss"].as_str().unwrap_or("");
        if iss != c.issuer {
            return Err(TokenError::Issuer(iss.chars().take(100).collect()));
        }
        if !audience_matches(&claims["aud"], &c.audience) {
            return Err(TokenError::Audience);
        }
        match claims["exp"].as_i64() {
            Some(exp) if exp + c.leeway > now => {}
            _ => return Err(TokenError::Expired),
        }
        if let Some(nbf) = claims["nbf"].as_i64()
            && nbf - c.leeway > now
        {
            return Err(TokenError::NotYetValid);
        }
        let scope = c.scope_for(protocol);
        if !has_scope(&claims, scope) {
            return Err(TokenError::Scope(scope.to_string()));
        }
        c.user_claims
            .iter()
            .find_map(|name| claims[name.as_str()].as_str())
            .map(|u| u.trim().to_ascii_lowercase())
            .filter(|u| !u.is_empty())
            .ok_or(TokenError::NoUser)
    }
}

/// The RFC 7628 §3.2.2 error the server sends as a challenge before failing.
pub fn error_json(status: &str, scope: &str) -> String {
    serde_json::json!({
        "status": status,
        "schemes": "bearer",
        "scope": scope,
    })
    .to_string()
}

/// A client's first message: XOAUTH2 (`user=U^Aauth=Bearer T^A^A`) or
/// OAUTHBEARER (RFC 7628 §3.1: `n,a=U,^Ahost=…^Aport=…^Aauth=Bearer T^A^A`).
/// Returns (user named by the client, token).
pub fn parse_client_message(mechanism: &str, msg: &[u8]) -> Option<(Option<String>, String)> {
    let text = std::str::from_utf8(msg).ok()?;
    let (user, rest) = if mechanism.eq_ignore_ascii_case("OAUTHBEARER") {
        // gs2-header: cbind flag, authzid, then ^A.
        let (gs2, rest) = text.split_once('\x01')?;
        let mut fields = gs2.split(',');
        let flag = fields.next()?;
        if !matches!(flag, "n" | "y") {
            return None;
        }
        let authzid = fields
            .next()
            .and_then(|a| a.strip_prefix("a="))
            .map(|a| a.replace("=2C", ",").replace("=3D", "="));
        (authzid, rest)
    } else {
        (None, text)
    };
    let mut user = user;
    let mut token = None;
    for kv in rest.split('\x01') {
        if let Some(u) = kv.strip_prefix("user=") {
            user = Some(u.to_string());
        } else if let Some(a) = kv.strip_prefix("auth=") {
            let (scheme, t) = a.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return None;
            }
            token = Some(t.trim().to_string());
        }
    }
    Some((user.filter(|u| !u.is_empty()), token?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    fn config() -> OAuthConfig {
        OAuthConfig {
            issuer: "https://login.example.org".into(),
            audience: "casella".into(),
            scope_imap: "IMAP.AccessAsUser.All".into(),
            scope_pop: "POP.AccessAsUser.All".into(),
            scope_submission: "SMTP.Send".into(),
            user_claims: vec!["email".into(), "upn".into(), "sub".into()],
            leeway: 60,
        }
    }

    fn es256() -> (EcdsaKeyPair, String) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let pk = pair.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1",
            "x": URL_SAFE_NO_PAD.encode(&pk[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&pk[33..65]),
        }]});
        (pair, jwks.to_string())
    }

    fn sign(pair: &EcdsaKeyPair, claims: Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#);
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        let msg = format!("{h}.{p}");
        let sig = pair.sign(&SystemRandom::new(), msg.as_bytes()).unwrap();
        format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    #[test]
    fn tokens_are_checked_claim_by_claim() {
        let (pair, jwks) = es256();
        let v = TokenValidator::new(config(), &jwks).unwrap();
        let now = 1_800_000_000;
        let good = serde_json::json!({
            "iss": "https://login.example.org", "aud": ["other", "casella"],
            "exp": now + 600, "nbf": now - 10, "scp": "IMAP.AccessAsUser.All SMTP.Send",
            "email": "Alice@Example.org",
        });
        let t = sign(&pair, good.clone());
        assert_eq!(
            v.validate(&t, Protocol::Imap, now).unwrap(),
            "alice@example.org"
        );
        assert_eq!(
            v.validate(&t, Protocol::Submission, now).unwrap(),
            "alice@example.org"
        );
        assert_eq!(
            v.validate(&t, Protocol::Pop3, now),
            Err(TokenError::Scope("POP.AccessAsUser.All".into()))
        );
        assert_eq!(
            v.validate(&t, Protocol::Imap, now + 700),
            Err(TokenError::Expired)
        );
        let mut bad = good.clone();
        bad["aud"] = "someone-else".into();
        assert_eq!(
            v.validate(&sign(&pair, bad), Protocol::Imap, now),
            Err(TokenError::Audience)
        );
        let mut bad = good.clone();
        bad["iss"] = "https://evil.example".into();
        assert!(matches!(
            v.validate(&sign(&pair, bad), Protocol::Imap, now),
            Err(TokenError::Issuer(_))
        ));
        // A token signed by another key.
        let (other, _) = es256();
        assert_eq!(
            v.validate(&sign(&other, good.clone()), Protocol::Imap, now),
            Err(TokenError::Signature)
        );
        // Tampered claims.
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        let mut forged = good.clone();
        forged["email"] = "boss@example.org".into();
        parts[1] = URL_SAFE_NO_PAD.encode(forged.to_string());
        assert_eq!(
            v.validate(&parts.join("."), Protocol::Imap, now),
            Err(TokenError::Signature)
        );
        assert_eq!(
            v.validate("not a jwt", Protocol::Imap, now),
            Err(TokenError::Malformed)
        );
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            parts[1]
        );
        assert!(matches!(
            v.validate(&none, Protocol::Imap, now),
            Err(TokenError::Algorithm(_)) | Err(TokenError::Malformed)
        ));
    }

    #[test]
    fn client_messages() {
        let x = b"user=alice@example.org\x01auth=Bearer abc.def.ghi\x01\x01";
        assert_eq!(
            parse_client_message("XOAUTH2", x),
            Some((Some("alice@example.org".into()), "abc.def.ghi".into()))
        );
        let o = b"n,a=alice@example.org,\x01host=mail\x01port=993\x01auth=Bearer tok\x01\x01";
        assert_eq!(
            parse_client_message("OAUTHBEARER", o),
            Some((Some("alice@example.org".into()), "tok".into()))
        );
        assert_eq!(
            parse_client_message("OAUTHBEARER", b"n,,\x01auth=Bearer t\x01\x01"),
            Some((None, "t".into()))
        );
        assert_eq!(
            parse_client_message("XOAUTH2", b"user=a\x01auth=Basic x\x01\x01"),
            None
        );
        assert_eq!(
            parse_client_message("OAUTHBEARER", b"p=tls-unique,,\x01auth=Bearer t\x01\x01"),
            None
        );
    }
}
