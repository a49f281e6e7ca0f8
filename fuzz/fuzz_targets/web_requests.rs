//! What the web server reads from requests (issue 24): form bodies (as axum
//! decodes them for every form handler), the autodiscover request's address,
//! the session cookie, and the escaping of what is written back.
//!
//! - A form decodes to fields or is refused, never a panic; fields written
//!   back with casella's URL encoding decode to the same fields; `field`
//!   finds the first value of a name;
//! - a POX autodiscover body gives an address of at most 254 characters
//!   without `<`, trimmed, or none; escaped, it holds no markup;
//! - a form with the session's CSRF token and no foreign Origin is let
//!   through, one with any other token is refused;
//! - the session id read from a Cookie header is one the header holds, and
//!   the cookie written for an id reads back as that id.
#![no_main]

use std::sync::OnceLock;

use casella_web::fuzzing::{
    HeaderMap, component, cookie, decode_form, esc, field, from_cookie_header, pox_email,
    refuse_form, same_token,
};
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

fn no_markup(s: &str) -> bool {
    !s.contains(['<', '>', '"', '\''])
        && s.split('&').skip(1).all(|e| {
            ["amp;", "lt;", "gt;", "quot;", "#39;"]
                .iter()
                .any(|x| e.starts_with(x))
        })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    // Forms.
    if let Some(form) = runtime().block_on(decode_form(data)) {
        let written: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{}={}", component(k), component(v)))
            .collect();
        let again = runtime()
            .block_on(decode_form(written.join("&").as_bytes()))
            .expect("a form written out decodes");
        assert_eq!(again, form);
        if let Some((name, value)) = form.first() {
            assert_eq!(field(&form, name), Some(value.as_str()));
        }
    }

    // Autodiscover (POX).
    if let Some(email) = pox_email(&text) {
        assert!(!email.is_empty() && email.len() <= 254 && !email.contains('<'));
        assert_eq!(email.trim(), email);
        assert!(no_markup(&esc(&email)), "{email:?}");
    }
    assert!(no_markup(&esc(&text)));

    // CSRF and cookies.
    let (token, rest) = text.split_at(text.char_indices().nth(16).map_or(text.len(), |(i, _)| i));
    let headers = HeaderMap::new();
    assert!(refuse_form(&headers, Some(token), Some(token)).is_none());
    assert_eq!(same_token(token, rest), token == rest);
    if token != rest {
        assert!(refuse_form(&headers, Some(token), Some(rest)).is_some());
    }
    if let Some(id) = from_cookie_header(&text) {
        assert!(!id.is_empty() && text.contains(id));
    }
    let id: String = token.chars().filter(char::is_ascii_alphanumeric).collect();
    let set = cookie(&id, true);
    let pair = set.split(';').next().expect("name=value");
    assert_eq!(
        from_cookie_header(pair),
        (!id.is_empty()).then_some(id.as_str())
    );
});
