//! Escaping for HTML and XML, and the page frame every user page shares.

/// Escapes text for HTML/XML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The outcome of a form: a status paragraph (`Ok`, with id `ok_id`) or an
/// alert (`Err`, with id `err_id`); nothing for none.
pub fn outcome(message: Option<Result<&str, &str>>, ok_id: &str, err_id: &str) -> String {
    match message {
        Some(Ok(m)) => format!(
            "<p class=\"ok\" role=\"status\" id=\"{ok_id}\">{}</p>",
            esc(m)
        ),
        Some(Err(m)) => format!(
            "<p class=\"err\" role=\"alert\" id=\"{err_id}\">{}</p>",
            esc(m)
        ),
        None => String::new(),
    }
}

const STYLE: &str = r#"
:root { color-scheme: light dark; --accent: #1a5fb4; }
body { font: 16px/1.5 system-ui, sans-serif; margin: 0; }
header { background: var(--accent); color: #fff; padding: .75rem 1rem; display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; }
header a { color: #fff; }
header .who { margin-left: auto; }
main { max-width: 52rem; margin: 0 auto; padding: 1rem; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1.5rem; }
th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid #8884; vertical-align: top; }
code { font-size: 1rem; }
button, input[type=submit] { font: inherit; padding: .35rem .8rem; }
input[type=text], input[type=password], input[type=email] { font: inherit; padding: .35rem; width: min(100%, 22rem); }
.note { background: #8881; padding: .75rem 1rem; border-radius: .4rem; }
.ok { color: #26a269; } .err { color: #c01c28; }
label { display: block; margin: .4rem 0; }
@media (max-width: 40rem) { th, td { display: block; border: 0; padding: .2rem 0; } tr { display: block; border-bottom: 1px solid #8884; padding: .4rem 0; } }
"#;

/// A whole page: `title`, the signed-in user (for the header), and the body.
pub fn page(title: &str, user: Option<&str>, body: &str) -> String {
    let who = match user {
        Some(u) => format!(
            "<span class=\"who\">{} · <form method=\"post\" action=\"/logout\" style=\"display:inline\"><button type=\"submit\" id=\"logout\">Sign out</button></form></span>",
            esc(u)
        ),
        None => String::new(),
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{} · casella</title><style>{STYLE}</style></head><body><header><strong>casella</strong>{who}</header><main>{body}</main></body></html>\n",
        esc(title)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes() {
        assert_eq!(
            super::esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
