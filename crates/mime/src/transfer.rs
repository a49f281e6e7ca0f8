//! Content-Transfer-Encoding on the way out (RFC 2045 §6): what the relay
//! and the retrieval formats both encode with.

/// RFC 2045 §6.7: line breaks kept as CRLF; `=`, controls other than a
/// space or tab inside a line, and 8-bit octets as `=XX`; a space or tab
/// before a line break encoded; lines cut with soft breaks at 76 characters.
pub fn encode_quoted_printable(body: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(body.len() * 3 / 2);
    let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    let last = lines.len() - 1;
    for (n, raw) in lines.iter().enumerate() {
        // A CR of a CRLF line break is the break; a lone CR at the very end is
        // content (=0D).
        let line = if n == last {
            raw
        } else {
            raw.strip_suffix(b"\r").unwrap_or(raw)
        };
        let mut width = 0;
        for (i, &b) in line.iter().enumerate() {
            let at_end = i + 1 == line.len();
            let literal =
                (b == b' ' || b == b'\t') && !at_end || (33..=126).contains(&b) && b != b'=';
            let len = if literal { 1 } else { 3 };
            // Room for the soft break's "=" too.
            if width + len > 75 {
                out.extend_from_slice(b"=\r\n");
                width = 0;
            }
            if literal {
                out.push(b);
            } else {
                out.extend_from_slice(&[b'=', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            }
            width += len;
        }
        if n != last {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_known_answers() {
        assert_eq!(encode_quoted_printable(b"plain"), b"plain");
        assert_eq!(
            encode_quoted_printable("Grüße".as_bytes()),
            b"Gr=C3=BC=C3=9Fe"
        );
        assert_eq!(encode_quoted_printable(b"a=b"), b"a=3Db");
        assert_eq!(
            encode_quoted_printable(b"end \r\nx\t\r\n"),
            b"end=20\r\nx=09\r\n"
        );
        let long = encode_quoted_printable(&[b'x'; 200]);
        assert!(
            long.split(|&b| b == b'\n').all(|l| l.len() <= 77),
            "{}",
            String::from_utf8_lossy(&long)
        );
        assert_eq!(
            long.iter().filter(|&&b| b == b'x').count(),
            200,
            "soft breaks only"
        );
    }
}
