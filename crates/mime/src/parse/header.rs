//! Header blocks (RFC 5322 §2.2) and MIME boundary lines (RFC 2046 §5.1.1), both
//! read straight from the raw bytes so every offset is exact.
//!
//! Boundary rules follow Dovecot's message parser: a boundary line starts with
//! "--" at the start of a line and the rest of the line only has to *begin* with
//! the boundary; when several active boundaries match, the longest wins (the
//! innermost on a tie); the line break before a boundary line belongs to the
//! boundary, not to the part before it.

/// One header field as it appears in the raw message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'a> {
    /// The field name, trailing whitespace removed.
    pub name: &'a [u8],
    /// Everything after the colon up to the end of the field's last line (line
    /// breaks of folded lines included, final line break excluded).
    pub value: &'a [u8],
}

impl Field<'_> {
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

/// A boundary line found in the raw message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Boundary {
    /// Index of the matching boundary in the active stack (0 = outermost).
    pub idx: usize,
    /// It is a close delimiter ("--boundary--").
    pub close: bool,
    /// Where the part that was being read ends: before the line break that
    /// precedes the boundary line (or at the line itself when there is none).
    pub end: usize,
    /// First byte after the boundary line (after its LF, or the end of input).
    pub next: usize,
}

/// The header block of one part.
#[derive(Debug)]
pub(crate) struct HeaderBlock<'a> {
    pub fields: Vec<Field<'a>>,
    /// First byte of the body: after the empty line ending the header, or where
    /// the header was cut short (end of input, boundary line).
    pub body_start: usize,
    /// Set when a boundary line cut the header short; the part then has no body.
    pub cut_by: Option<Boundary>,
}

/// Reads the header block that starts at `start` (which is at the start of a line).
pub(crate) fn scan_header<'a>(raw: &'a [u8], start: usize, stack: &[Vec<u8>]) -> HeaderBlock<'a> {
    let mut fields = Vec::new();
    // The field being read: name, value start, value end.
    let mut current: Option<(&'a [u8], usize, usize)> = None;
    let mut pos = start;
    let finish = |current: &mut Option<(&'a [u8], usize, usize)>, fields: &mut Vec<Field<'a>>| {
        if let Some((name, from, to)) = current.take() {
            fields.push(Field {
                name,
                value: &raw[from..to],
            });
        }
    };
    while pos < raw.len() {
        if let Some((idx, close)) = match_boundary(raw, pos, stack) {
            finish(&mut current, &mut fields);
            let end = end_before(raw, pos, start);
            return HeaderBlock {
                fields,
                body_start: end,
                cut_by: Some(Boundary {
                    idx,
                    close,
                    end,
                    next: next_line(raw, pos),
                }),
            };
        }
        let next = next_line(raw, pos);
        let content_end = line_content_end(raw, pos, next);
        let line = &raw[pos..content_end];
        if line.is_empty() {
            finish(&mut current, &mut fields);
            return HeaderBlock {
                fields,
                body_start: next,
                cut_by: None,
            };
        }
        if matches!(line[0], b' ' | b'\t') {
            // Folded continuation of the current field (ignored after a broken line).
            if let Some((_, _, to)) = current.as_mut() {
                *to = content_end;
            }
        } else {
            finish(&mut current, &mut fields);
            // A line without a colon is not a field; it is skipped, like Dovecot
            // and mail-parser do, and the header goes on.
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                current = Some((trim_end(&line[..colon]), pos + colon + 1, content_end));
            }
        }
        pos = next;
    }
    finish(&mut current, &mut fields);
    HeaderBlock {
        fields,
        body_start: raw.len(),
        cut_by: None,
    }
}

/// Finds the first boundary line at or after `from` (which is at the start of a
/// line). `None` when there is none before the end of input.
pub(crate) fn find_boundary(raw: &[u8], from: usize, stack: &[Vec<u8>]) -> Option<Boundary> {
    if stack.is_empty() {
        return None;
    }
    let mut pos = from;
    while pos < raw.len() {
        if let Some((idx, close)) = match_boundary(raw, pos, stack) {
            return Some(Boundary {
                idx,
                close,
                end: end_before(raw, pos, from),
                next: next_line(raw, pos),
            });
        }
        pos = next_line(raw, pos);
    }
    None
}

/// Does the line at `pos` start with "--" and one of the active boundaries?
/// Returns the index of the longest match (innermost on a tie) and whether it is
/// a close delimiter.
fn match_boundary(raw: &[u8], pos: usize, stack: &[Vec<u8>]) -> Option<(usize, bool)> {
    let rest = raw.get(pos..)?.strip_prefix(b"--")?;
    let mut best: Option<(usize, usize)> = None;
    for (i, b) in stack.iter().enumerate().rev() {
        if rest.starts_with(b) && best.is_none_or(|(_, len)| b.len() > len) {
            best = Some((i, b.len()));
        }
    }
    let (idx, len) = best?;
    Some((idx, rest[len..].starts_with(b"--")))
}

/// Where a part that began at `from` ends when the line at `line` is a boundary:
/// the [CR]LF before the boundary line belongs to the boundary (RFC 2046 §5.1.1).
fn end_before(raw: &[u8], line: usize, from: usize) -> usize {
    if line <= from {
        return from;
    }
    // raw[line - 1] is the LF that ended the previous line.
    let mut end = line - 1;
    if end > from && raw[end - 1] == b'\r' {
        end -= 1;
    }
    end
}

/// Start of the line after the one at `pos` (or the end of input).
pub(crate) fn next_line(raw: &[u8], pos: usize) -> usize {
    raw.get(pos..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
        .map_or(raw.len(), |i| pos + i + 1)
}

/// End of the line's content, before its CRLF or LF.
fn line_content_end(raw: &[u8], pos: usize, next: usize) -> usize {
    let mut end = next;
    if end > pos && raw[end - 1] == b'\n' {
        end -= 1;
        if end > pos && raw[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A header value unfolded (RFC 5322 §2.2.3: the CRLFs of folding removed, the
/// whitespace after them kept) and trimmed of leading and trailing whitespace.
pub(crate) fn unfold(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'\n' => {}
            b'\r' if value.get(i + 1) == Some(&b'\n') => {}
            b => out.push(b),
        }
        i += 1;
    }
    let start = out
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(out.len());
    let end = out
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    out.truncate(end);
    out.drain(..start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names<'a>(h: &HeaderBlock<'a>) -> Vec<(&'a [u8], &'a [u8])> {
        h.fields.iter().map(|f| (f.name, f.value)).collect()
    }

    #[test]
    fn header_fields_and_folding() {
        let raw =
            b"Subject: hello\r\n world\r\nFrom : a@b\r\nbroken line\r\n\tcont\r\nX:\r\n\r\nbody";
        let h = scan_header(raw, 0, &[]);
        assert_eq!(
            names(&h),
            vec![
                (&b"Subject"[..], &b" hello\r\n world"[..]),
                (b"From", b" a@b"),
                (b"X", b""),
            ]
        );
        assert_eq!(&raw[h.body_start..], b"body");
        assert_eq!(h.cut_by, None);
    }

    #[test]
    fn header_without_body_separator() {
        let raw = b"Subject: x\nFrom: y";
        let h = scan_header(raw, 0, &[]);
        assert_eq!(h.fields.len(), 2);
        assert_eq!(h.body_start, raw.len());
        let h = scan_header(b"", 0, &[]);
        assert!(h.fields.is_empty());
        assert_eq!(h.body_start, 0);
    }

    #[test]
    fn empty_header() {
        let h = scan_header(b"\r\nbody", 0, &[]);
        assert!(h.fields.is_empty());
        assert_eq!(h.body_start, 2);
        let h = scan_header(b"\nbody", 0, &[]);
        assert_eq!(h.body_start, 1);
    }

    #[test]
    fn header_cut_by_boundary() {
        let raw = b"A: 1\r\n--b\r\nrest";
        let stack = vec![b"b".to_vec()];
        let h = scan_header(raw, 0, &stack);
        assert_eq!(h.fields.len(), 1);
        assert_eq!(h.body_start, 4);
        assert_eq!(
            h.cut_by,
            Some(Boundary {
                idx: 0,
                close: false,
                end: 4,
                next: 11
            })
        );
        // Boundary right at the start: nothing to give back.
        let h = scan_header(b"--b--\r\n", 0, &stack);
        assert_eq!(h.body_start, 0);
        assert!(h.cut_by.unwrap().close);
    }

    #[test]
    fn boundary_matching() {
        let stack = vec![b"outer".to_vec(), b"out".to_vec()];
        // Longest match wins.
        assert_eq!(match_boundary(b"--outer", 0, &stack), Some((0, false)));
        assert_eq!(match_boundary(b"--out--", 0, &stack), Some((1, true)));
        assert_eq!(match_boundary(b"--outerx", 0, &stack), Some((0, false)));
        assert_eq!(match_boundary(b"-outer", 0, &stack), None);
        assert_eq!(match_boundary(b" --outer", 0, &stack), None);
        // Same boundary twice: innermost.
        let stack = vec![b"b".to_vec(), b"b".to_vec()];
        assert_eq!(match_boundary(b"--b", 0, &stack), Some((1, false)));
    }

    #[test]
    fn boundary_search_gives_back_line_break() {
        let stack = vec![b"b".to_vec()];
        let raw = b"text\r\n--b\r\n";
        let f = find_boundary(raw, 0, &stack).unwrap();
        assert_eq!(&raw[..f.end], b"text");
        assert_eq!(f.next, raw.len());
        let raw = b"text\n\n--b--";
        let f = find_boundary(raw, 0, &stack).unwrap();
        assert_eq!(&raw[..f.end], b"text\n");
        assert!(f.close);
        let raw = b"--b\r\n";
        assert_eq!(find_boundary(raw, 0, &stack).unwrap().end, 0);
        // Not at the start of a line.
        assert_eq!(find_boundary(b"x --b\n", 0, &stack), None);
        assert_eq!(find_boundary(b"abc", 0, &[]), None);
    }

    #[test]
    fn unfolding() {
        assert_eq!(unfold(b" a\r\n b\n\tc  "), b"a b\tc");
        assert_eq!(unfold(b"\r\n "), b"");
        assert_eq!(unfold(b"x\ry"), b"x\ry");
    }
}
