//! Text in URLs (addresses in paths and query strings): percent-encoded by the
//! `percent-encoding` crate as RFC 3986 says, never by hand. An address may
//! hold `+`, `#`, `?`, `/`, `%` or `&` in its local part (RFC 5322 §3.4.1
//! `atext`); each must survive the trip through a link and back.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but RFC 3986 §2.3's unreserved characters: safe in a path
/// segment and in a query value alike (`+` too, which a form decoder would
/// otherwise read as a space).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` as one URL path segment or query value.
pub fn component(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        assert_eq!(
            component("mario+test@example.org"),
            "mario%2Btest%40example.org"
        );
        assert_eq!(
            component("a#b?c/d%e&f@example.org"),
            "a%23b%3Fc%2Fd%25e%26f%40example.org"
        );
        assert_eq!(component("üser@example.org"), "%C3%BCser%40example.org");
        for a in [
            "mario+test@example.org",
            "a#b?c/d%e&f@example.org",
            "o'hara@example.org",
        ] {
            let encoded = component(a);
            let back = percent_encoding::percent_decode_str(&encoded)
                .decode_utf8()
                .unwrap();
            assert_eq!(back, a);
        }
    }
}
