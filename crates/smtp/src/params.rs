//! MAIL and RCPT parameters (RFC 5321 §4.1.2 esmtp-param): which are taken, in
//! which mode, and the reply that refuses the others. Pure: the session applies
//! what these functions accept.
//!
//! MAIL: SIZE (RFC 1870 §6), BODY (RFC 6152 §3, RFC 3030 §3), SMTPUTF8 (RFC 6531
//! §3.4), and on submission AUTH (RFC 4954 §5), RET and ENVID (RFC 3461 §4.3,
//! §4.4). RCPT, on submission: NOTIFY and ORCPT (RFC 3461 §4.1, §4.2).

use crate::Mode;
use crate::command::Params;

/// What MAIL's parameters ask for, once accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// RET, upper case: `FULL` or `HDRS`.
    pub ret: Option<String>,
    /// ENVID as given (xtext).
    pub envid: Option<String>,
    pub smtputf8: bool,
}

/// What RCPT's parameters ask for, once accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// NOTIFY, upper case: `NEVER`, or a list of SUCCESS, FAILURE and DELAY.
    pub notify: Option<String>,
    /// ORCPT as given (`addr-type;xtext`).
    pub orcpt: Option<String>,
}

/// MAIL's parameters, or the reply refusing them. `esmtp`: the client greeted
/// with EHLO/LHLO (HELO allows none); `max_size`: the SIZE limit.
pub fn mail_params(
    params: &Params,
    mode: Mode,
    esmtp: bool,
    max_size: usize,
) -> Result<MailParams, String> {
    let submission = mode == Mode::Submission;
    let mut out = MailParams::default();
    for (name, value) in params {
        match (name.as_str(), value.as_deref()) {
            // RFC 1870 §6: a declared size over the limit is refused at once.
            ("SIZE", Some(v)) => match v.parse::<u64>() {
                Ok(n) if n > max_size as u64 => {
                    return Err("552 5.3.4 Message size exceeds fixed maximum message size".into());
                }
                Ok(_) => {}
                Err(_) => return Err("501 5.5.4 Invalid SIZE parameter".into()),
            },
            ("BODY", Some(v))
                if v.eq_ignore_ascii_case("8BITMIME")
                    || v.eq_ignore_ascii_case("7BIT")
                    || v.eq_ignore_ascii_case("BINARYMIME") => {}
            ("SMTPUTF8", None) => out.smtputf8 = true,
            // RFC 4954 §5: the AUTH parameter is accepted and not trusted.
            ("AUTH", Some(_)) if submission => {}
            ("RET", Some(v)) if submission => {
                if !v.eq_ignore_ascii_case("FULL") && !v.eq_ignore_ascii_case("HDRS") {
                    return Err("501 5.5.4 RET must be FULL or HDRS".into());
                }
                out.ret = Some(v.to_ascii_uppercase());
            }
            ("ENVID", Some(v)) if submission => out.envid = Some(v.to_string()),
            _ if !esmtp => return Err("555 5.5.4 Parameters need EHLO".into()),
            _ => return Err(format!("555 5.5.4 Unsupported parameter {name}")),
        }
    }
    Ok(out)
}

/// RCPT's parameters, or the reply refusing them.
pub fn rcpt_params(params: &Params, mode: Mode) -> Result<RcptParams, String> {
    let submission = mode == Mode::Submission;
    let mut out = RcptParams::default();
    for (name, value) in params {
        match (name.as_str(), value.as_deref()) {
            // RFC 3461 §4.1 (submission offers DSN).
            ("NOTIFY", Some(v)) if submission => {
                let v = v.to_ascii_uppercase();
                let ok = v == "NEVER"
                    || v.split(',')
                        .all(|p| matches!(p, "SUCCESS" | "FAILURE" | "DELAY"));
                if !ok {
                    return Err("501 5.5.4 Invalid NOTIFY parameter".into());
                }
                out.notify = Some(v);
            }
            ("ORCPT", Some(v)) if submission => out.orcpt = Some(v.to_string()),
            _ => return Err(format!("555 5.5.4 Unsupported parameter {name}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(list: &[(&str, Option<&str>)]) -> Params {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn mail() {
        let ok = mail_params(
            &p(&[
                ("SIZE", Some("10")),
                ("RET", Some("hdrs")),
                ("SMTPUTF8", None),
            ]),
            Mode::Submission,
            true,
            100,
        );
        assert_eq!(
            ok,
            Ok(MailParams {
                ret: Some("HDRS".into()),
                envid: None,
                smtputf8: true
            })
        );
        let size = mail_params(&p(&[("SIZE", Some("101"))]), Mode::Smtp, true, 100);
        assert!(size.unwrap_err().starts_with("552 "));
        let ret = mail_params(&p(&[("RET", Some("FULL"))]), Mode::Smtp, true, 100);
        assert!(
            ret.unwrap_err().starts_with("555 "),
            "no DSN on inbound SMTP"
        );
        let helo = mail_params(&p(&[("X", None)]), Mode::Smtp, false, 100);
        assert_eq!(helo.unwrap_err(), "555 5.5.4 Parameters need EHLO");
    }

    #[test]
    fn rcpt() {
        let ok = rcpt_params(
            &p(&[
                ("NOTIFY", Some("failure,delay")),
                ("ORCPT", Some("rfc822;a+2Bb@c")),
            ]),
            Mode::Submission,
        );
        assert_eq!(ok.unwrap().notify.as_deref(), Some("FAILURE,DELAY"));
        for bad in ["NEVER,SUCCESS", "", "FAILURE,", "SOMETIMES"] {
            assert!(
                rcpt_params(&p(&[("NOTIFY", Some(bad))]), Mode::Submission).is_err(),
                "{bad}"
            );
        }
        assert!(rcpt_params(&p(&[("NOTIFY", Some("NEVER"))]), Mode::Lmtp).is_err());
    }
}
