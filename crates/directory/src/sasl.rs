//! SASL PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login) decoding. The
//! exchange of challenges is the session's job; this module only turns the client's
//! base64 responses into credentials.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::Secret;

/// Credentials a password mechanism carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordCredentials {
    /// Authorization identity, if the client asked to act as someone else.
    pub authzid: Option<String>,
    pub authcid: String,
    pub password: Secret<String>,
}

/// Why a SASL response could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("invalid base64")]
    Base64,
    #[error("malformed response")]
    Malformed,
    #[error("authentication cancelled")]
    Cancelled,
}

/// The client's "*" line (RFC 4954 §4, RFC 5034 §4, RFC 9051 §6.2.2) cancels.
pub fn decode_response(line: &str) -> Result<Vec<u8>, SaslError> {
    let line = line.trim_end();
    if line == "*" {
        return Err(SaslError::Cancelled);
    }
    // "=" stands for an empty initial response (RFC 4954 §4).
    if line == "=" {
        return Ok(Vec::new());
    }
    STANDARD.decode(line).map_err(|_| SaslError::Base64)
}

/// RFC 4616 §2: `[authzid] NUL authcid NUL passwd`, UTF-8.
pub fn decode_plain(message: &[u8]) -> Result<PasswordCredentials, SaslError> {
    let mut parts = message.split(|&b| b == 0);
    let (Some(authz), Some(authc), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| SaslError::Malformed);
    let authcid = text(authc)?;
    if authcid.is_empty() {
        return Err(SaslError::Malformed);
    }
    let authzid = text(authz)?;
    Ok(PasswordCredentials {
        authzid: (!authzid.is_empty()).then_some(authzid),
        authcid,
        password: Secret::new(text(pass)?),
    })
}

/// Base64 of a challenge text, as sent in LOGIN's "Username:"/"Password:" prompts.
pub fn encode_challenge(text: &[u8]) -> String {
    STANDARD.encode(text)
}

/// Decodes one LOGIN step (user name or password), UTF-8.
pub fn decode_login_step(message: &[u8]) -> Result<String, SaslError> {
    String::from_utf8(message.to_vec()).map_err(|_| SaslError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_known_answers() {
        // RFC 4616 §4 example: "\0tim\0tanstaaftanstaaf"
        let c = decode_plain(b"\0tim\0tanstaaftanstaaf").unwrap();
        assert_eq!(c.authcid, "tim");
        assert_eq!(c.authzid, None);
        assert_eq!(c.password.expose(), "tanstaaftanstaaf");
        let c = decode_plain(b"Ursel\0Kurt\0xipj3plmq").unwrap();
        assert_eq!(c.authzid.as_deref(), Some("Ursel"));
        assert!(decode_plain(b"no-nuls").is_err());
        assert!(decode_plain(b"\0\0pw").is_err());
        assert!(decode_plain(b"a\0b\0c\0d").is_err());
    }

    #[test]
    fn responses() {
        assert_eq!(decode_response("*"), Err(SaslError::Cancelled));
        assert_eq!(decode_response("="), Ok(vec![]));
        assert_eq!(
            decode_response("AHRpbQB0YW5zdGFhZnRhbnN0YWFm").unwrap(),
            b"\0tim\0tanstaaftanstaaf"
        );
        assert_eq!(decode_response("!!"), Err(SaslError::Base64));
        assert_eq!(encode_challenge(b"Username:"), "VXNlcm5hbWU6");
    }
}
