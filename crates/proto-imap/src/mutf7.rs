//! Modified UTF-7 mailbox names — RFC 3501 §5.1.3 (RFC 9051 §5.1 keeps it for
//! clients that have not enabled UTF8=ACCEPT / IMAP4rev2).
//!
//! Printable US-ASCII (0x20-0x7e) stands for itself, except `&`, which is
//! `&-`. Everything else is UTF-16 in modified BASE64 (`,` instead of `/`, no
//! padding) between `&` and `-`. [`encode`] always produces the one minimal
//! form; [`decode`] accepts only that form, so every name has exactly one
//! spelling on the wire.

/// Why a name is not valid modified UTF-7. `at` is the byte offset in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Mutf7Error {
    /// A byte outside printable US-ASCII.
    #[error("byte {at}: not printable US-ASCII")]
    NotAscii { at: usize },
    /// An `&` without the `-` that ends its BASE64 run.
    #[error("byte {at}: '&' without a closing '-'")]
    Unterminated { at: usize },
    /// A character outside modified BASE64, a run whose length cannot hold
    /// whole UTF-16 units, or non-zero padding bits.
    #[error("byte {at}: invalid modified BASE64")]
    BadBase64 { at: usize },
    /// The run decodes to an unpaired surrogate.
    #[error("byte {at}: encoded text is not valid UTF-16")]
    BadUtf16 { at: usize },
    /// Not the minimal form: printable US-ASCII inside a BASE64 run, or two
    /// runs back to back ("-&", a null shift, RFC 3501 §5.1.3).
    #[error("byte {at}: not minimally encoded")]
    NotMinimal { at: usize },
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn is_printable(c: u32) -> bool {
    (0x20..=0x7e).contains(&c)
}

/// Encodes a UTF-8 mailbox name into modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    for ch in name.chars() {
        if is_printable(ch.into()) {
            flush(&mut out, &mut pending);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut out, &mut pending);
    out
}

/// Writes `units` as one `&...-` run and empties it.
fn flush(out: &mut String, units: &mut Vec<u16>) {
    if units.is_empty() {
        return;
    }
    out.push('&');
    let mut acc: u32 = 0;
    let mut bits = 0;
    for byte in units.iter().flat_map(|u| u.to_be_bytes()) {
        acc = (acc << 8) | u32::from(byte);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(ALPHABET[((acc >> bits) & 63) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        // The last digit is padded with zero bits.
        out.push(char::from(ALPHABET[((acc << (6 - bits)) & 63) as usize]));
    }
    out.push('-');
    units.clear();
}

fn digit_value(b: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == b).map(|v| v as u32)
}

/// Decodes a modified UTF-7 mailbox name, strictly: anything [`encode`] would
/// not have produced is an error.
pub fn decode(name: &str) -> Result<String, Mutf7Error> {
    let b = name.as_bytes();
    let mut out = String::with_capacity(b.len());
    // Where the last BASE64 run ended (just after its '-').
    let mut run_end = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !is_printable(c.into()) {
            return Err(Mutf7Error::NotAscii { at: i });
        }
        if c != b'&' {
            out.push(char::from(c));
            i += 1;
            continue;
        }
        if b.get(i + 1) == Some(&b'-') {
            out.push('&');
            i += 2;
            continue;
        }
        if run_end == Some(i) {
            return Err(Mutf7Error::NotMinimal { at: i });
        }
        let start = i + 1;
        let end = b[start..]
            .iter()
            .position(|&x| x == b'-')
            .map(|p| start + p)
            .ok_or(Mutf7Error::Unterminated { at: i })?;
        let units = decode_run(&b[start..end], start)?;
        for r in char::decode_utf16(units) {
            let ch = r.map_err(|_| Mutf7Error::BadUtf16 { at: i })?;
            if is_printable(ch.into()) {
                return Err(Mutf7Error::NotMinimal { at: i });
            }
            out.push(ch);
        }
        i = end + 1;
        run_end = Some(i);
    }
    Ok(out)
}

/// The UTF-16 units of one BASE64 run (between `&` and `-`); `offset` is where
/// the run starts in the name, for errors.
fn decode_run(run: &[u8], offset: usize) -> Result<Vec<u16>, Mutf7Error> {
    let mut units = Vec::with_capacity(run.len() * 6 / 16);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for (k, &c) in run.iter().enumerate() {
        let v = digit_value(c).ok_or(Mutf7Error::BadBase64 { at: offset + k })?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 16 {
            bits -= 16;
            // Truncation intended: the top 16 of the pending bits.
            units.push((acc >> bits) as u16);
            acc &= (1 << bits) - 1;
        }
    }
    // A minimal run leaves fewer than 6 bits over, all zero.
    if bits >= 6 || acc != 0 {
        return Err(Mutf7Error::BadBase64 {
            at: offset + run.len().saturating_sub(1),
        });
    }
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3501_example() {
        // RFC 3501 §5.1.3: "~peter/mail/台北/日本語".
        let wire = "~peter/mail/&U,BTFw-/&ZeVnLIqe-";
        let name = "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}";
        assert_eq!(decode(wire).unwrap(), name);
        assert_eq!(encode(name), wire);
    }

    #[test]
    fn known_answers() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("INBOX", "INBOX"),
            ("&", "&-"),
            ("Tom & Jerry", "Tom &- Jerry"),
            ("&&", "&-&-"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("Gelöschte Elemente", "Gel&APY-schte Elemente"),
            ("Корзина", "&BBoEPgRABDcEOAQ9BDA-"),
            ("日本語", "&ZeVnLIqe-"),
            // Outside the BMP: a surrogate pair.
            ("📧", "&2D3c5w-"),
            // Control characters and DEL are encoded too.
            ("a\tb", "a&AAk-b"),
            ("\u{7f}", "&AH8-"),
            ("ü&", "&APw-&-"),
            ("&ü", "&-&APw-"),
        ];
        for (name, wire) in cases {
            assert_eq!(encode(name), *wire, "encode {name:?}");
            assert_eq!(decode(wire).as_deref(), Ok(*name), "decode {wire:?}");
        }
    }

    #[test]
    fn rejects_invalid_and_non_minimal_forms() {
        use Mutf7Error::*;
        let cases: &[(&str, Mutf7Error)] = &[
            ("&U,BTFw", Unterminated { at: 0 }),
            ("a&", Unterminated { at: 1 }),
            ("Entwürfe", NotAscii { at: 4 }),
            ("a\tb", NotAscii { at: 1 }),
            // 'a' (printable ASCII) must stand for itself.
            ("&AGE-", NotMinimal { at: 0 }),
            // '&' must be "&-", not BASE64.
            ("&ACY-", NotMinimal { at: 0 }),
            // Two runs back to back: a null shift.
            ("&U,BTFw-&ZeVnLIqe-", NotMinimal { at: 8 }),
            // Characters outside modified BASE64 ('/' is ',' here).
            ("&U/BTFw-", BadBase64 { at: 2 }),
            ("&Jjo!-", BadBase64 { at: 4 }),
            // A length that cannot hold whole UTF-16 units.
            ("&U,BTF-", BadBase64 { at: 5 }),
            ("&A-", BadBase64 { at: 1 }),
            // Non-zero padding bits.
            ("&U,BTFx-", BadBase64 { at: 6 }),
            // An unpaired high surrogate.
            ("&2AA-", BadUtf16 { at: 0 }),
            ("x&3AA-", BadUtf16 { at: 1 }),
        ];
        for (wire, err) in cases {
            assert_eq!(decode(wire), Err(*err), "decode {wire:?}");
        }
        // "&-" right after a run is an ampersand, not a null shift.
        assert_eq!(decode("&APw-&-").unwrap(), "ü&");
        // A "-" outside a run is just a hyphen.
        assert_eq!(decode("a-b&APw--").unwrap(), "a-bü-");
    }

    #[test]
    fn round_trips() {
        let names = [
            "INBOX/Sent Items",
            "Drafts & Notes",
            "ünïcödé/ß/€uro",
            "mixed ascii 日本 and 🎉 emoji 🎉",
            "\u{0}\u{1f}\u{80}\u{ffff}\u{10ffff}",
            "a-&-b",
        ];
        for name in names {
            let wire = encode(name);
            assert!(wire.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{wire:?}");
            assert_eq!(decode(&wire).unwrap(), name);
            // A valid wire form decodes and encodes back to itself.
            assert_eq!(encode(&decode(&wire).unwrap()), wire);
        }
        // Every single character from a sample of code points.
        for c in (0u32..0x3000)
            .chain(0xfff0..0x10100)
            .filter_map(char::from_u32)
        {
            let s = c.to_string();
            assert_eq!(decode(&encode(&s)).unwrap(), s);
        }
    }
}
