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
    #[error("acting as another user is not allowed")]
    OtherIdentity,
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

/// What a password exchange wants next.
#[derive(Debug)]
pub enum Step {
    /// Send this challenge (the protocol encodes it) and pass the client's
    /// decoded answer to [`PasswordExchange::respond`].
    Challenge(Vec<u8>),
    /// The exchange is over: the login and password, or why not.
    Done(Result<(String, Secret<String>), SaslError>),
}

/// The exchange of a password mechanism — PLAIN (RFC 4616) or LOGIN — as every
/// protocol runs it, without I/O: the session sends each challenge and feeds the
/// answer back. `initial` is the client's initial response (SASL-IR). An
/// authorization identity other than the login is refused.
pub struct PasswordExchange {
    plain: bool,
    user: Option<String>,
}

impl PasswordExchange {
    pub fn start(mechanism: &str, initial: Option<Vec<u8>>) -> (PasswordExchange, Step) {
        let mut ex = PasswordExchange {
            plain: mechanism.eq_ignore_ascii_case("PLAIN"),
            user: None,
        };
        let step = match (initial, ex.plain) {
            (Some(i), _) => ex.respond(Ok(i)),
            (None, true) => Step::Challenge(Vec::new()),
            (None, false) => Step::Challenge(b"Username:".to_vec()),
        };
        (ex, step)
    }

    /// The client's (decoded) answer to the last challenge, or to the initial one.
    pub fn respond(&mut self, answer: Result<Vec<u8>, SaslError>) -> Step {
        let answer = match answer {
            Ok(a) => a,
            Err(e) => return Step::Done(Err(e)),
        };
        if self.plain {
            let done = decode_plain(&answer).and_then(|c| match c.authzid.as_deref() {
                Some(z) if !z.eq_ignore_ascii_case(&c.authcid) => Err(SaslError::OtherIdentity),
                _ => Ok((c.authcid, c.password)),
            });
            return Step::Done(done);
        }
        match self.user.take() {
            None => match decode_login_step(&answer) {
                Ok(user) => {
                    self.user = Some(user);
                    Step::Challenge(b"Password:".to_vec())
                }
                Err(e) => Step::Done(Err(e)),
            },
            Some(user) => Step::Done(decode_login_step(&answer).map(|p| (user, Secret::new(p)))),
        }
    }
}

#[cfg(test)]
mod exchange_tests {
    use super::*;

    /// Runs an exchange against scripted answers, returning the challenges too.
    fn run(
        mechanism: &str,
        initial: Option<&str>,
        answers: &[&[u8]],
    ) -> (Vec<String>, Result<(String, String), SaslError>) {
        let initial = match initial.map(decode_response).transpose() {
            Ok(i) => i,
            Err(e) => return (Vec::new(), Err(e)),
        };
        let (mut ex, mut step) = PasswordExchange::start(mechanism, initial);
        let mut asked = Vec::new();
        let mut answers = answers.iter();
        loop {
            match step {
                Step::Challenge(c) => {
                    asked.push(encode_challenge(&c));
                    step = ex.respond(
                        answers
                            .next()
                            .map(|a| a.to_vec())
                            .ok_or(SaslError::Cancelled),
                    );
                }
                Step::Done(r) => return (asked, r.map(|(u, p)| (u, p.expose().clone()))),
            }
        }
    }

    #[test]
    fn plain_and_login_exchanges() {
        let (asked, r) = run("PLAIN", Some("AHRpbQB0YW5zdGFhZg=="), &[]);
        assert!(asked.is_empty());
        assert_eq!(r.unwrap(), ("tim".to_string(), "tanstaaf".to_string()));
        let (asked, r) = run("plain", None, &[b"\0tim\0pw"]);
        assert_eq!(asked, vec![""]);
        assert_eq!(r.unwrap().1, "pw");
        let (asked, r) = run("LOGIN", None, &[b"tim", b"pw"]);
        assert_eq!(asked, vec!["VXNlcm5hbWU6", "UGFzc3dvcmQ6"]);
        assert_eq!(r.unwrap(), ("tim".to_string(), "pw".to_string()));
        let (asked, r) = run("LOGIN", Some("dGlt"), &[b"pw"]);
        assert_eq!(asked, vec!["UGFzc3dvcmQ6"]);
        assert_eq!(r.unwrap().0, "tim");
        assert_eq!(
            run("PLAIN", Some("YQB0aW0AcHc="), &[]).1.unwrap_err(),
            SaslError::OtherIdentity
        );
        assert_eq!(run("PLAIN", None, &[]).1.unwrap_err(), SaslError::Cancelled);
        assert_eq!(
            run("PLAIN", Some("!!"), &[]).1.unwrap_err(),
            SaslError::Base64
        );
    }
}
