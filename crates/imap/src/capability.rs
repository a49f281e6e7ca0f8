//! The CAPABILITY list — RFC 9051 §7.2.2 — which depends on the session's state.

/// Extensions offered once logged in; all are implemented in full.
const AUTHENTICATED: &[&str] = &[
    "IMAP4rev1",
    "IMAP4rev2",
    "LITERAL+",
    "SASL-IR",
    "ID",
    "ENABLE",
    "IDLE",
    "NAMESPACE",
    "UNSELECT",
    "UIDPLUS",
    "MOVE",
    "CHILDREN",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "STATUS=SIZE",
    "ESEARCH",
    "SEARCHRES",
    "MULTIAPPEND",
    "CATENATE",
    "BINARY",
    "UTF8=ACCEPT",
    "CONDSTORE",
    "QRESYNC",
    "NOTIFY",
    // RFC 5256, RFC 5957, RFC 5267 §3, RFC 5032.
    "SORT",
    "SORT=DISPLAY",
    "THREAD=ORDEREDSUBJECT",
    "THREAD=REFERENCES",
    "ESORT",
    "WITHIN",
    // RFC 8514.
    "SAVEDATE",
    // RFC 9208 (no QUOTASET: the administrator sets quotas).
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "QUOTA=RES-MESSAGE",
    // RFC 5267 §4, RFC 9394.
    "CONTEXT=SEARCH",
    "CONTEXT=SORT",
    "PARTIAL",
];

/// The capability words, space-separated, without the leading "CAPABILITY".
pub fn capabilities(
    authenticated: bool,
    tls_active: bool,
    starttls_available: bool,
    passwords_allowed: bool,
    mechanisms: &[&str],
    append_limit: u32,
) -> String {
    let mut caps: Vec<String> = Vec::new();
    if authenticated {
        caps.extend(AUTHENTICATED.iter().map(|s| s.to_string()));
        caps.push(format!("APPENDLIMIT={append_limit}"));
    } else {
        caps.extend(
            [
                "IMAP4rev1",
                "IMAP4rev2",
                "LITERAL+",
                "SASL-IR",
                "ID",
                "ENABLE",
                "IDLE",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        if !tls_active && starttls_available {
            caps.push("STARTTLS".into());
        }
        caps.extend(mechanisms.iter().map(|m| format!("AUTH={m}")));
        if !passwords_allowed {
            // RFC 9051 §6.2.3: LOGIN is refused until TLS is active.
            caps.push("LOGINDISABLED".into());
        }
    }
    caps.join(" ")
}
