//! Realistic-looking messages, generated deterministically from the seed: the usual
//! headers, plain-text, multipart/alternative and multipart/mixed bodies with
//! attachments, sizes spread over a range (log-uniform), and words whose frequency
//! the search workload knows.

use crate::rng::Rng;

/// Common words, most frequent first (the body draws them with a Zipf law).
const WORDS: &[&str] = &[
    "the",
    "to",
    "and",
    "of",
    "a",
    "in",
    "for",
    "is",
    "on",
    "that",
    "we",
    "with",
    "this",
    "you",
    "it",
    "be",
    "are",
    "as",
    "have",
    "at",
    "will",
    "from",
    "please",
    "can",
    "our",
    "by",
    "not",
    "all",
    "an",
    "if",
    "your",
    "team",
    "meeting",
    "project",
    "next",
    "week",
    "thanks",
    "would",
    "should",
    "about",
    "update",
    "report",
    "time",
    "new",
    "review",
    "some",
    "there",
    "more",
    "also",
    "need",
    "work",
    "make",
    "know",
    "today",
    "client",
    "let",
    "me",
    "data",
    "budget",
    "plan",
    "draft",
    "call",
    "schedule",
    "attached",
    "file",
    "agenda",
    "quarter",
    "results",
    "sales",
    "customer",
    "support",
    "release",
    "version",
    "issue",
    "question",
    "answer",
    "follow",
    "up",
    "office",
    "travel",
    "contract",
    "invoice",
    "payment",
    "order",
    "delivery",
    "shipping",
    "product",
    "service",
    "account",
    "feedback",
    "design",
    "launch",
    "market",
    "strategy",
    "target",
    "growth",
    "revenue",
    "cost",
    "risk",
    "decision",
    "approval",
    "deadline",
    "friday",
    "monday",
    "morning",
    "afternoon",
    "lunch",
    "conference",
    "room",
    "slides",
    "presentation",
    "notes",
    "summary",
    "minutes",
    "action",
    "items",
    "owner",
    "status",
    "progress",
    "blocked",
    "done",
    "pending",
    "priority",
    "quarterly",
    "annual",
    "forecast",
    "numbers",
    "spreadsheet",
    "document",
    "link",
    "website",
    "server",
    "backup",
    "migration",
    "security",
    "password",
    "access",
    "policy",
    "training",
    "onboarding",
    "holiday",
    "vacation",
    "birthday",
    "party",
    "coffee",
    "kitchen",
    "parking",
    "building",
    "floor",
    "desk",
    "printer",
    "laptop",
    "phone",
    "regards",
    "best",
    "cheers",
    "hello",
    "dear",
    "colleagues",
    "everyone",
    "reminder",
    "important",
    "urgent",
    "confidential",
    "internal",
    "external",
    "partner",
    "vendor",
    "supplier",
    "warehouse",
    "inventory",
    "logistics",
    "legal",
    "compliance",
    "audit",
];

/// Rare words: one word in RARE_ONE_IN of the text is one of these (each ends up
/// in about 4% of the messages with the default sizes).
pub const RARE: &[&str] = &[
    "zanzibar", "quokka", "marzipan", "obsidian", "tamarind", "fjord", "kumquat", "nebula",
];
const RARE_ONE_IN: u64 = 6000;

pub const FIRST: &[&str] = &[
    "Alice", "Bruno", "Chiara", "David", "Elena", "Farid", "Giulia", "Hiro", "Ines", "Jonas",
    "Karin", "Luca", "Maria", "Nils", "Olga", "Pavel", "Quentin", "Rosa", "Sanjay", "Tomas",
];
pub const LAST: &[&str] = &[
    "Rossi",
    "Okafor",
    "Schmidt",
    "Tanaka",
    "Moreau",
    "Novak",
    "Silva",
    "Kowalski",
    "Jensen",
    "Haddad",
    "Murphy",
    "Ivanova",
    "Costa",
    "Lindqvist",
    "Nakamura",
    "Dubois",
    "Ferrari",
    "Bianchi",
    "Horvat",
    "Papadopoulos",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "example.net",
    "corp.example",
    "mail.example",
];

/// How one message is shaped.
#[derive(Clone, Debug)]
pub struct Shape {
    pub min_size: usize,
    pub max_size: usize,
    /// When set, the From: address (submission checks it against the login).
    pub from: Option<String>,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            min_size: 2 * 1024,
            max_size: 50 * 1024,
            from: None,
        }
    }
}

/// The message number `index` of stream `stream`, addressed to `to`. CRLF line ends.
pub fn message(seed: u64, stream: u64, index: u64, to: &str, shape: &Shape) -> Vec<u8> {
    let mut r = Rng::derive(seed, stream, index);
    let target = log_uniform(&mut r, shape.min_size, shape.max_size);
    let first = r.pick(FIRST);
    let last = r.pick(LAST);
    let (from_name, from_addr) = match &shape.from {
        Some(a) => (format!("{first} {last}"), a.clone()),
        None => (
            format!("{first} {last}"),
            format!(
                "{}.{}@{}",
                first.to_lowercase(),
                last.to_lowercase(),
                r.pick(DOMAINS)
            ),
        ),
    };
    let subject = {
        let n = r.range(3, 8) as usize;
        let mut s = String::new();
        if r.chance(0.3) {
            s.push_str("Re: ");
        }
        for i in 0..n {
            let w = WORDS[20 + r.zipf(WORDS.len() - 20)];
            if i == 0 {
                let mut c = w.chars();
                if let Some(f) = c.next() {
                    s.extend(f.to_uppercase());
                    s.push_str(c.as_str());
                }
            } else {
                s.push(' ');
                s.push_str(w);
            }
        }
        s
    };
    // One message every ~7 minutes from 2024-01-01, with jitter.
    let when = 1_704_067_200 + index as i64 * 420 + r.below(400) as i64;
    let mut h = String::new();
    h.push_str(&format!("From: \"{from_name}\" <{from_addr}>\r\n"));
    h.push_str(&format!("To: <{to}>\r\n"));
    if r.chance(0.2) {
        h.push_str(&format!(
            "Cc: \"{} {}\" <{}@{}>\r\n",
            r.pick(FIRST),
            r.pick(LAST),
            r.pick(WORDS).to_lowercase(),
            r.pick(DOMAINS)
        ));
    }
    h.push_str(&format!("Subject: {subject}\r\n"));
    h.push_str(&format!("Date: {}\r\n", rfc5322_date(when)));
    h.push_str(&format!(
        "Message-ID: <{seed}.{stream}.{index}.{:x}@bench.example>\r\n",
        r.next_u64() & 0xffff_ffff
    ));
    h.push_str("MIME-Version: 1.0\r\n");
    if r.chance(0.3) {
        h.push_str("X-Mailer: casella-bench\r\n");
    }

    let kind = r.weighted(&[55, 25, 20]);
    let body_budget = target.saturating_sub(h.len() + 200).max(300);
    let mut out = h.into_bytes();
    let boundary = format!("=_bench_{:016x}", r.next_u64());
    match kind {
        0 => {
            out.extend_from_slice(
                b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n",
            );
            out.extend_from_slice(text_body(&mut r, body_budget).as_bytes());
        }
        1 => {
            let text = text_body(&mut r, body_budget / 2);
            out.extend_from_slice(
                format!(
                    "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n\
                     This is a multi-part message in MIME format.\r\n"
                )
                .as_bytes(),
            );
            push_alternative(&mut out, &boundary, &text);
            out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        }
        _ => {
            let text_len = (body_budget / 4).clamp(300, 6000);
            let text = text_body(&mut r, text_len);
            out.extend_from_slice(
                format!(
                    "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
                     This is a multi-part message in MIME format.\r\n"
                )
                .as_bytes(),
            );
            if r.chance(0.5) {
                let inner = format!("{boundary}_alt");
                out.extend_from_slice(
                    format!(
                        "--{boundary}\r\nContent-Type: multipart/alternative; boundary=\"{inner}\"\r\n\r\n"
                    )
                    .as_bytes(),
                );
                push_alternative(&mut out, &inner, &text);
                out.extend_from_slice(format!("--{inner}--\r\n").as_bytes());
            } else {
                out.extend_from_slice(
                    format!(
                        "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\
                         Content-Transfer-Encoding: 7bit\r\n\r\n{text}"
                    )
                    .as_bytes(),
                );
            }
            let (name, ctype) = *r.pick(&[
                ("report.pdf", "application/pdf"),
                ("photo.jpg", "image/jpeg"),
                (
                    "figures.xlsx",
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                ),
                ("notes.zip", "application/zip"),
            ]);
            let raw_len = (target.saturating_sub(out.len() + 300) * 3 / 4).max(64);
            let data: Vec<u8> = (0..raw_len).map(|_| r.next_u64() as u8).collect();
            out.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Type: {ctype}; name=\"{name}\"\r\n\
                     Content-Disposition: attachment; filename=\"{name}\"\r\n\
                     Content-Transfer-Encoding: base64\r\n\r\n"
                )
                .as_bytes(),
            );
            base64_lines(&data, &mut out);
            out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        }
    }
    out
}

fn push_alternative(out: &mut Vec<u8>, boundary: &str, text: &str) {
    out.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 7bit\r\n\r\n{text}"
        )
        .as_bytes(),
    );
    out.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\
             Content-Transfer-Encoding: 7bit\r\n\r\n<html><body>\r\n"
        )
        .as_bytes(),
    );
    for para in text.split("\r\n\r\n") {
        if !para.trim().is_empty() {
            out.extend_from_slice(b"<p>");
            out.extend_from_slice(para.as_bytes());
            out.extend_from_slice(b"</p>\r\n");
        }
    }
    out.extend_from_slice(b"</body></html>\r\n");
}

/// Paragraphs of words wrapped at 72 columns, about `len` bytes, CRLF line ends.
fn text_body(r: &mut Rng, len: usize) -> String {
    let mut s = String::with_capacity(len + 100);
    s.push_str(&format!(
        "{} {},\r\n\r\n",
        r.pick(&["Hi", "Hello", "Dear"]),
        r.pick(FIRST)
    ));
    let mut line = 0usize;
    let mut sentence = 0usize;
    while s.len() < len {
        let w = if r.below(RARE_ONE_IN) == 0 {
            r.pick(RARE)
        } else {
            WORDS[r.zipf(WORDS.len())]
        };
        if line + w.len() + 1 > 72 {
            s.push_str("\r\n");
            line = 0;
        } else if line > 0 {
            s.push(' ');
            line += 1;
        }
        s.push_str(w);
        line += w.len();
        sentence += 1;
        if sentence > 12 && r.chance(0.15) {
            s.push('.');
            line += 1;
            sentence = 0;
            if r.chance(0.2) {
                s.push_str("\r\n\r\n");
                line = 0;
            }
        }
    }
    s.push_str("\r\n\r\n-- \r\n");
    s.push_str(&format!("{} {}\r\n", r.pick(FIRST), r.pick(LAST)));
    s
}

fn log_uniform(r: &mut Rng, lo: usize, hi: usize) -> usize {
    if hi <= lo {
        return lo;
    }
    let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
    (l + (h - l) * r.unit()).exp() as usize
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 without line breaks.
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Base64 in 76-column lines with CRLF.
fn base64_lines(data: &[u8], out: &mut Vec<u8>) {
    for chunk in data.chunks(57) {
        out.extend_from_slice(base64(chunk).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// `Mon, 01 Jan 2024 10:00:00 +0000` for a Unix time.
pub fn rfc5322_date(t: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) — Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_704_067_200),
            "Mon, 01 Jan 2024 00:00:00 +0000"
        );
        assert_eq!(
            rfc5322_date(1_709_210_096),
            "Thu, 29 Feb 2024 12:34:56 +0000"
        );
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn messages_are_deterministic_sized_and_crlf() {
        let shape = Shape::default();
        let mut total = 0;
        let mut rare = 0;
        for i in 0..300 {
            let m = message(1, 0, i, "bench1@bench.test", &shape);
            assert_eq!(m, message(1, 0, i, "bench1@bench.test", &shape));
            assert!(m.len() >= 1500 && m.len() <= 60 * 1024, "{}", m.len());
            let text = String::from_utf8(m.clone()).unwrap();
            assert!(text.starts_with("From: "));
            assert!(!text.replace("\r\n", "").contains('\n'), "bare LF");
            assert!(!text.contains("\r\n.\r\n"));
            if RARE.iter().any(|w| text.contains(w)) {
                rare += 1;
            }
            total += m.len();
        }
        let avg = total / 300;
        assert!((5_000..25_000).contains(&avg), "average {avg}");
        assert!(rare > 3 && rare < 150, "rare words in {rare} of 300");
    }
}
