//! Known-answer tests for `parse`, offsets checked by slicing the raw message,
//! and a never-panics sweep over prefixes and random bytes.

use super::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Renders a body part the way IMAP BODYSTRUCTURE does (Dovecot's layout: the
/// root without surrounding parentheses), so known answers stay readable.
fn bs(p: &BodyPart) -> String {
    render(p, false)
}

fn render(p: &BodyPart, wrap: bool) -> String {
    let mut s = String::new();
    if p.media_type == "multipart" {
        for c in &p.parts {
            s.push_str(&render(c, true));
        }
        s.push_str(&format!(
            " {} {} {} {} {}",
            q(&p.media_subtype),
            plist(&p.params),
            dsp(&p.disposition),
            lang(&p.language),
            nq(&p.location)
        ));
    } else {
        s.push_str(&format!(
            "{} {} {} {} {} {} {}",
            q(&p.media_type),
            q(&p.media_subtype),
            plist(&p.params),
            nq(&p.id),
            nq(&p.description),
            q(&p.encoding),
            p.size
        ));
        if p.media_type == "text" {
            s.push_str(&format!(" {}", p.lines));
        }
        if let Some(m) = &p.message {
            s.push_str(&format!(
                " {} {} {}",
                env(&m.0),
                render(&m.1, true),
                p.lines
            ));
        }
        s.push_str(&format!(
            " {} {} {} {}",
            nq(&p.md5),
            dsp(&p.disposition),
            lang(&p.language),
            nq(&p.location)
        ));
    }
    if wrap { format!("({s})") } else { s }
}

fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn nq(s: &Option<String>) -> String {
    s.as_deref().map_or("NIL".to_string(), q)
}

fn plist(p: &[(String, String)]) -> String {
    if p.is_empty() {
        return "NIL".into();
    }
    let items: Vec<String> = p
        .iter()
        .map(|(k, v)| format!("{} {}", q(k), q(v)))
        .collect();
    format!("({})", items.join(" "))
}

fn dsp(d: &Option<Disposition>) -> String {
    d.as_ref().map_or("NIL".into(), |d| {
        format!("({} {})", q(&d.kind), plist(&d.params))
    })
}

fn lang(l: &[String]) -> String {
    if l.is_empty() {
        return "NIL".into();
    }
    let items: Vec<String> = l.iter().map(|s| q(s)).collect();
    format!("({})", items.join(" "))
}

fn addrs(list: &[Address]) -> String {
    if list.is_empty() {
        return "NIL".into();
    }
    let items: String = list
        .iter()
        .map(|a| {
            format!(
                "({} {} {} {})",
                nq(&a.name),
                nq(&a.adl),
                nq(&a.mailbox),
                nq(&a.host)
            )
        })
        .collect();
    format!("({items})")
}

fn env(e: &Envelope) -> String {
    format!(
        "({} {} {} {} {} {} {} {} {} {})",
        nq(&e.date),
        nq(&e.subject),
        addrs(&e.from),
        addrs(&e.sender),
        addrs(&e.reply_to),
        addrs(&e.to),
        addrs(&e.cc),
        addrs(&e.bcc),
        nq(&e.in_reply_to),
        nq(&e.message_id)
    )
}

fn header_of<'r>(raw: &'r [u8], p: &BodyPart) -> &'r str {
    std::str::from_utf8(&raw[p.offsets.header_start as usize..p.offsets.body_start as usize])
        .unwrap()
}

fn body_of<'r>(raw: &'r [u8], p: &BodyPart) -> &'r str {
    std::str::from_utf8(&raw[p.offsets.body_start as usize..p.offsets.body_end as usize]).unwrap()
}

fn crlf(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}

fn addr(name: Option<&str>, mailbox: &str, host: &str) -> Address {
    Address {
        name: name.map(str::to_string),
        adl: None,
        mailbox: Some(mailbox.into()),
        host: Some(host.into()),
    }
}

/// Structural invariants every parse result must satisfy.
fn check_invariants(raw: &[u8], m: &ParsedMessage) {
    fn walk(raw: &[u8], p: &BodyPart, lo: u32, hi: u32) {
        let o = p.offsets;
        assert!(lo <= o.header_start, "{o:?} not within {lo}..{hi}");
        assert!(o.header_start <= o.body_start, "{o:?}");
        assert!(o.body_start <= o.body_end, "{o:?}");
        assert!(o.body_end <= hi, "{o:?} not within {lo}..{hi}");
        assert!(hi as usize <= raw.len());
        assert_eq!(p.size, o.body_end - o.body_start);
        assert!(!p.media_type.is_empty() && !p.media_subtype.is_empty());
        assert_eq!(p.media_type, p.media_type.to_ascii_lowercase());
        if p.media_type == "multipart" {
            assert!(!p.parts.is_empty(), "multipart without children");
            let mut prev = o.body_start;
            for c in &p.parts {
                assert!(c.offsets.header_start >= prev, "children out of order");
                walk(raw, c, o.body_start, o.body_end);
                prev = c.offsets.body_end;
            }
        } else {
            assert!(p.parts.is_empty());
        }
        if let Some(m) = &p.message {
            assert_eq!(m.1.offsets.header_start, o.body_start);
            assert_eq!(m.1.offsets.body_end, o.body_end);
            walk(raw, &m.1, o.body_start, o.body_end);
        }
    }
    assert_eq!(m.body.offsets.header_start, 0);
    assert_eq!(m.body.offsets.body_end as usize, raw.len());
    walk(raw, &m.body, 0, raw.len() as u32);
    assert!(m.search.body_text.len() <= TEXT_CAP);
    assert!(m.search.header_text.len() <= TEXT_CAP);
}

// ---------------------------------------------------------------------------
// Sample messages
// ---------------------------------------------------------------------------

const PLAIN: &str = "Return-Path: <alice@example.org>\r\n\
Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n\
From: Fred Foobar <foobar@Blurdybloop.example>\r\n\
Subject: afternoon meeting\r\n\
To: mooch@owatagu.siam.edu.example\r\n\
Message-Id: <B27397-0100000@Blurdybloop.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\
\r\n\
Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n";

const ALTERNATIVE: &str = "From: a@example.com\r\n\
To: b@example.com\r\n\
Subject: alt\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"=_alt\"\r\n\
\r\n\
This is a multi-part message in MIME format.\r\n\
--=_alt\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Caf=C3=A9 at noon?\r\n\
--=_alt\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>Caf&eacute; at <b>noon</b>?</p>\r\n\
--=_alt--\r\n\
epilogue\r\n";

const MIXED: &str = "From: \"Doe, Jane\" <jane@example.com>\r\n\
To: team@example.com\r\n\
Subject: report\r\n\
Date: Tue, 1 Aug 2023 10:00:00 +0200\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed;\r\n\
\x20boundary=\"XyZ\"\r\n\
\r\n\
--XyZ\r\n\
Content-Type: text/plain\r\n\
\r\n\
See attached.\r\n\
\r\n\
--XyZ\r\n\
Content-Type: application/pdf; name=\"report.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"report.pdf\";\r\n\
\x20size=12\r\n\
Content-ID: <part2@example.com>\r\n\
Content-Description: The report\r\n\
\r\n\
JVBERi0xLjQKJeLj\r\n\
z9MK\r\n\
--XyZ--\r\n";

const RFC822_ATTACHED: &str = "From: outer@example.com\r\n\
To: x@example.com\r\n\
Subject: Fwd: inner\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=outer\r\n\
\r\n\
--outer\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
Forwarded message below.\r\n\
--outer\r\n\
Content-Type: message/rfc822\r\n\
Content-Disposition: attachment\r\n\
\r\n\
From: Inner Sender <inner@example.net>\r\n\
To: y@example.net\r\n\
Subject: inner\r\n\
Date: Wed, 2 Aug 2023 08:30:00 -0400\r\n\
Message-ID: <inner@example.net>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=inner\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain\r\n\
\r\n\
Inner text.\r\n\
--inner\r\n\
Content-Type: text/html\r\n\
\r\n\
<div>Inner html.</div>\r\n\
--inner--\r\n\
\r\n\
--outer--\r\n";

/// Dovecot's lib-imap test message (test-imap-bodystructure.c), LF line ends.
const DOVECOT: &str = "From: user@domain.org\n\
Date: Sat, 24 Mar 2007 23:00:00 +0200\n\
Mime-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"foo\n bar\"\n\
\n\
Root MIME prologue\n\
\n\
--foo bar\n\
Content-Type: text/x-myown; charset=us-ascii; foo=\"quoted\\\"string\"\n\
Content-ID: <foo@example.com>\n\
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n\
Content-Disposition: inline; foo=bar\n\
Content-Description: hellodescription\n\
Content-Language: en, fi, se\n\
Content-Location: http://example.com/test.txt\n\
\n\
hello\n\
\n\
--foo bar\n\
Content-Type: message/rfc822\n\
\n\
From: sub@domain.org\n\
To: sub-to1@domain.org, sub-to2@domain.org\n\
Date: Sun, 12 Aug 2012 12:34:56 +0300\n\
Subject: submsg\n\
Content-Type: multipart/alternative; boundary=\"sub1\"\n\
\n\
Sub MIME prologue\n\
--sub1\n\
Content-Type: text/html\n\
Content-Transfer-Encoding: 8bit\n\
\n\
<p>Hello world</p>\n\
\n\
--sub1\n\
Content-Type: text/plain\n\
Content-Transfer-Encoding: ?invalid\n\
\n\
Hello another world\n\
\n\
--sub1--\n\
Sub MIME epilogue\n\
\n\
--foo bar--\n\
Root MIME epilogue\n";

const GROUPS: &str = "From: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>\r\n\
To: A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;\r\n\
Cc: Undisclosed recipients:;\r\n\
Bcc: hidden@example.com\r\n\
Subject: =?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=\r\n\
\x20=?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=\r\n\
Reply-To: replies@example.com\r\n\
Sender: secretary@example.com\r\n\
In-Reply-To: <parent@example.com>\r\n\
\r\n\
body\r\n";

// ---------------------------------------------------------------------------
// Known answers
// ---------------------------------------------------------------------------

#[test]
fn plain_text_message() {
    let raw = PLAIN.as_bytes();
    let m = parse(raw);
    check_invariants(raw, &m);
    assert_eq!(
        env(&m.envelope),
        "(\"Mon, 7 Feb 1994 21:52:25 -0800 (PST)\" \"afternoon meeting\" \
         ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) \
         ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) \
         ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) \
         ((NIL NIL \"mooch\" \"owatagu.siam.edu.example\")) NIL NIL NIL \
         \"<B27397-0100000@Blurdybloop.example>\")"
    );
    assert_eq!(
        bs(&m.body),
        "\"text\" \"plain\" (\"charset\" \"US-ASCII\") NIL NIL \"7BIT\" 55 1 NIL NIL NIL NIL"
    );
    assert_eq!(
        body_of(raw, &m.body),
        "Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
    );
    assert!(header_of(raw, &m.body).ends_with("US-ASCII\r\n\r\n"));
    assert_eq!(m.search.from, "Fred Foobar <foobar@Blurdybloop.example>");
    assert_eq!(m.search.to, "mooch@owatagu.siam.edu.example");
    assert_eq!(m.search.subject, "afternoon meeting");
    assert_eq!(m.search.sent_date, Some(760_686_745));
    assert_eq!(m.search.sent_tz_offset, Some(-8 * 3600));
    assert_eq!(
        m.search.body_text,
        "Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
    );
    assert!(
        m.search
            .header_text
            .starts_with("Return-Path: <alice@example.org>\nDate: Mon, 7 Feb 1994")
    );
    assert!(
        m.search
            .header_text
            .ends_with("Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\n")
    );
    assert_eq!(m.search.header_text.lines().count(), 8);
}

#[test]
fn multipart_alternative() {
    let raw = ALTERNATIVE.as_bytes();
    let m = parse(raw);
    check_invariants(raw, &m);
    assert_eq!(
        bs(&m.body),
        "(\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"QUOTED-PRINTABLE\" 18 1 NIL NIL NIL NIL)\
         (\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 34 1 NIL NIL NIL NIL) \
         \"alternative\" (\"boundary\" \"=_alt\") NIL NIL NIL"
    );
    let [plain, html] = &m.body.parts[..] else {
        panic!("two parts expected")
    };
    assert_eq!(body_of(raw, plain), "Caf=C3=A9 at noon?");
    assert_eq!(
        header_of(raw, plain),
        "Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    );
    assert_eq!(body_of(raw, html), "<p>Caf&eacute; at <b>noon</b>?</p>");
    assert!(body_of(raw, &m.body).starts_with("This is a multi-part"));
    assert!(body_of(raw, &m.body).ends_with("--=_alt--\r\nepilogue\r\n"));
    assert_eq!(m.search.body_text, "Café at noon?\nCafé at noon?\n");
}

#[test]
fn multipart_mixed_with_attachment() {
    let raw = MIXED.as_bytes();
    let m = parse(raw);
    check_invariants(raw, &m);
    assert_eq!(
        bs(&m.body),
        "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 15 1 NIL NIL NIL NIL)\
         (\"application\" \"pdf\" (\"name\" \"report.pdf\") \"<part2@example.com>\" \"The report\" \
         \"BASE64\" 22 NIL (\"attachment\" (\"filename\" \"report.pdf\" \"size\" \"12\")) NIL NIL) \
         \"mixed\" (\"boundary\" \"XyZ\") NIL NIL NIL"
    );
    assert_eq!(body_of(raw, &m.body.parts[0]), "See attached.\r\n");
    assert_eq!(body_of(raw, &m.body.parts[1]), "JVBERi0xLjQKJeLj\r\nz9MK");
    assert!(header_of(raw, &m.body.parts[1]).starts_with("Content-Type: application/pdf"));
    assert_eq!(
        m.envelope.from,
        vec![addr(Some("Doe, Jane"), "jane", "example.com")]
    );
    assert_eq!(m.search.from, "Doe, Jane <jane@example.com>");
    assert_eq!(m.search.sent_date, Some(1_690_876_800));
    assert_eq!(m.search.sent_tz_offset, Some(7200));
    // The attachment is not text.
    assert_eq!(m.search.body_text, "See attached.\r\n");
}

#[test]
fn message_rfc822_attachment() {
    let raw = RFC822_ATTACHED.as_bytes();
    let m = parse(raw);
    check_invariants(raw, &m);
    let fwd = &m.body.parts[1];
    assert_eq!(
        bs(fwd),
        "\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 341 \
         (\"Wed, 2 Aug 2023 08:30:00 -0400\" \"inner\" \
         ((\"Inner Sender\" NIL \"inner\" \"example.net\")) \
         ((\"Inner Sender\" NIL \"inner\" \"example.net\")) \
         ((\"Inner Sender\" NIL \"inner\" \"example.net\")) \
         ((NIL NIL \"y\" \"example.net\")) NIL NIL NIL \"<inner@example.net>\") \
         ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 11 1 NIL NIL NIL NIL)\
         (\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 22 1 NIL NIL NIL NIL) \
         \"alternative\" (\"boundary\" \"inner\") NIL NIL NIL) 17 NIL (\"attachment\" NIL) NIL NIL"
    );
    let (inner_env, inner) = fwd.message.as_deref().unwrap();
    assert_eq!(inner_env.subject.as_deref(), Some("inner"));
    // Offsets of the enclosed message are offsets into the whole message.
    assert_eq!(inner.offsets.header_start, fwd.offsets.body_start);
    assert!(header_of(raw, inner).starts_with("From: Inner Sender"));
    assert_eq!(body_of(raw, &inner.parts[0]), "Inner text.");
    assert_eq!(body_of(raw, &inner.parts[1]), "<div>Inner html.</div>");
    assert!(body_of(raw, fwd).starts_with("From: Inner Sender"));
    assert!(body_of(raw, fwd).ends_with("--inner--\r\n"));
    assert_eq!(body_of(raw, &m.body.parts[0]), "Forwarded message below.");
    // Nested text counts for BODY searches; nested headers are not the message's.
    assert_eq!(
        m.search.body_text,
        "Forwarded message below.\nInner text.\nInner html."
    );
    assert_eq!(m.search.subject, "Fwd: inner");
}

#[test]
fn dovecot_bodystructure_test_message() {
    // Dovecot's expected answer, with its virtual (CRLF) sizes turned into the
    // physical sizes of this LF message, and encodings upper-cased.
    let raw = DOVECOT.as_bytes();
    let m = parse(raw);
    check_invariants(raw, &m);
    assert_eq!(
        bs(&m.body),
        "(\"text\" \"x-myown\" (\"charset\" \"us-ascii\" \"foo\" \"quoted\\\"string\") \
         \"<foo@example.com>\" \"hellodescription\" \"7BIT\" 6 1 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" \
         (\"inline\" (\"foo\" \"bar\")) (\"en\" \"fi\" \"se\") \"http://example.com/test.txt\")\
         (\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 391 \
         (\"Sun, 12 Aug 2012 12:34:56 +0300\" \"submsg\" ((NIL NIL \"sub\" \"domain.org\")) \
         ((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub\" \"domain.org\")) \
         ((NIL NIL \"sub-to1\" \"domain.org\")(NIL NIL \"sub-to2\" \"domain.org\")) NIL NIL NIL NIL) \
         ((\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"8BIT\" 19 1 NIL NIL NIL NIL)\
         (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 20 1 NIL NIL NIL NIL) \
         \"alternative\" (\"boundary\" \"sub1\") NIL NIL NIL) 21 NIL NIL NIL NIL) \
         \"mixed\" (\"boundary\" \"foo bar\") NIL NIL NIL"
    );
    assert_eq!(body_of(raw, &m.body.parts[0]), "hello\n");
    let inner = &m.body.parts[1].message.as_ref().unwrap().1;
    assert_eq!(body_of(raw, &inner.parts[0]), "<p>Hello world</p>\n");
    assert!(body_of(raw, inner).ends_with("--sub1--\nSub MIME epilogue\n"));
}

#[test]
fn groups_and_encoded_words() {
    let raw = GROUPS.as_bytes();
    let m = parse(raw);
    check_invariants(raw, &m);
    let e = &m.envelope;
    assert_eq!(
        e.subject.as_deref(),
        Some(
            "=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?= \
             =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?="
        )
    );
    assert_eq!(
        e.from,
        vec![addr(
            Some("=?ISO-8859-1?Q?Andr=E9?= Pirard"),
            "PIRARD",
            "vm1.ulg.ac.be"
        )]
    );
    assert_eq!(
        addrs(&e.to),
        "((NIL NIL \"A Group\" NIL)(\"Ed Jones\" NIL \"c\" \"a.test\")\
         (NIL NIL \"joe\" \"where.test\")(\"John\" NIL \"jdoe\" \"one.test\")(NIL NIL NIL NIL))"
    );
    assert_eq!(
        addrs(&e.cc),
        "((NIL NIL \"Undisclosed recipients\" NIL)(NIL NIL NIL NIL))"
    );
    assert_eq!(e.bcc, vec![addr(None, "hidden", "example.com")]);
    assert_eq!(e.sender, vec![addr(None, "secretary", "example.com")]);
    assert_eq!(e.reply_to, vec![addr(None, "replies", "example.com")]);
    assert_eq!(e.in_reply_to.as_deref(), Some("<parent@example.com>"));
    assert_eq!(e.message_id, None);
    assert_eq!(e.date, None);

    let s = &m.search;
    assert_eq!(
        s.subject,
        "If you can read this you understand the example."
    );
    assert_eq!(s.from, "André Pirard <PIRARD@vm1.ulg.ac.be>");
    assert_eq!(
        s.to,
        "A Group: Ed Jones <c@a.test>, joe@where.test, John <jdoe@one.test>;"
    );
    assert_eq!(s.cc, "Undisclosed recipients: ;");
    assert_eq!(s.bcc, "hidden@example.com");
    assert_eq!(s.sent_date, None);
    assert!(
        s.header_text
            .contains("Subject: If you can read this you understand the example.\n")
    );
    assert!(
        s.header_text
            .starts_with("From: André Pirard <PIRARD@vm1.ulg.ac.be>\n")
    );
    // The non-MIME message is text/plain us-ascii.
    assert_eq!(
        bs(&m.body),
        "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 6 1 NIL NIL NIL NIL"
    );
}

#[test]
fn crlf_and_lf_give_the_same_structure() {
    for sample in [ALTERNATIVE, MIXED, RFC822_ATTACHED, DOVECOT] {
        let lf = sample.replace("\r\n", "\n");
        let crlf = crlf(sample);
        let a = parse(lf.as_bytes());
        let b = parse(crlf.as_bytes());
        check_invariants(lf.as_bytes(), &a);
        check_invariants(crlf.as_bytes(), &b);
        assert_eq!(a.envelope, b.envelope);
        // Same tree: compare every part's body text with line ends normalised.
        fn bodies(raw: &[u8], p: &BodyPart, out: &mut Vec<String>) {
            out.push(body_of(raw, p).replace("\r\n", "\n"));
            out.push(header_of(raw, p).replace("\r\n", "\n"));
            out.push(format!("{}/{} {}", p.media_type, p.media_subtype, p.lines));
            for c in &p.parts {
                bodies(raw, c, out);
            }
            if let Some(m) = &p.message {
                bodies(raw, &m.1, out);
            }
        }
        let (mut x, mut y) = (Vec::new(), Vec::new());
        bodies(lf.as_bytes(), &a.body, &mut x);
        bodies(crlf.as_bytes(), &b.body, &mut y);
        assert_eq!(x, y);
    }
}

// ---------------------------------------------------------------------------
// Malformed and edge-case messages
// ---------------------------------------------------------------------------

#[test]
fn empty_input() {
    let m = parse(b"");
    check_invariants(b"", &m);
    assert_eq!(m.envelope, Envelope::default());
    assert_eq!(
        bs(&m.body),
        "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL"
    );
    assert_eq!(
        m.search,
        SearchFields {
            sort: Some(crate::SortKeys::default()),
            ..SearchFields::default()
        }
    );
}

#[test]
fn message_without_body() {
    let raw = b"From: a@b\r\nSubject: no body\r\n\r\n";
    let m = parse(raw);
    check_invariants(raw, &m);
    assert_eq!(m.body.offsets.body_start as usize, raw.len());
    assert_eq!((m.body.size, m.body.lines), (0, 0));
    assert_eq!(m.envelope.subject.as_deref(), Some("no body"));
}

#[test]
fn message_without_separator() {
    let raw = b"From: a@b\r\nSubject: only headers";
    let m = parse(raw);
    check_invariants(raw, &m);
    assert_eq!(m.body.offsets.body_start as usize, raw.len());
    assert_eq!(m.envelope.subject.as_deref(), Some("only headers"));
    assert_eq!(m.envelope.from, vec![addr(None, "a", "b")]);

    // A line that is not a field does not end the header.
    let raw = b"Subject: x\nthis is not a header\nFrom: a@b\n\nbody";
    let m = parse(raw);
    assert_eq!(m.envelope.from, vec![addr(None, "a", "b")]);
    assert_eq!(body_of(raw, &m.body), "body");
}

#[test]
fn body_only_message() {
    let raw = b"\r\nJust a body.";
    let m = parse(raw);
    check_invariants(raw, &m);
    assert_eq!(body_of(raw, &m.body), "Just a body.");
    assert_eq!(m.body.lines, 1);
    assert_eq!(m.search.body_text, "Just a body.");
}

#[test]
fn line_counting() {
    assert_eq!(count_lines(b""), 0);
    assert_eq!(count_lines(b"a"), 1);
    assert_eq!(count_lines(b"a\n"), 1);
    assert_eq!(count_lines(b"a\r\nb"), 2);
    assert_eq!(count_lines(b"\n\n"), 2);
}

#[test]
fn folded_and_padded_header_values() {
    let raw =
        b"Subject:   folded\r\n\tsubject  \r\nMessage-ID:\r\n <id@x>\r\nIn-Reply-To:\r\n\r\nb";
    let m = parse(raw);
    assert_eq!(m.envelope.subject.as_deref(), Some("folded\tsubject"));
    assert_eq!(m.envelope.message_id.as_deref(), Some("<id@x>"));
    assert_eq!(m.envelope.in_reply_to.as_deref(), Some(""));
    assert_eq!(m.search.subject, "folded subject");
}

#[test]
fn eight_bit_headers() {
    let raw = b"From: J\xf6rg <j@x.example>\r\nSubject: caf\xe9 \xff\r\nTo: \xc3\xa4@x\r\n\r\nbody";
    let m = parse(raw);
    check_invariants(raw, &m);
    assert_eq!(m.envelope.subject.as_deref(), Some("café ÿ"));
    assert_eq!(m.envelope.from, vec![addr(Some("Jörg"), "j", "x.example")]);
    assert_eq!(m.envelope.to, vec![addr(None, "ä", "x")]);
    assert_eq!(m.search.subject, "café ÿ");
}

#[test]
fn sender_and_reply_to_default_to_from() {
    let raw = b"From: a@b\r\nSender:\r\nReply-To: (nobody)\r\n\r\n";
    let m = parse(raw);
    assert_eq!(m.envelope.sender, m.envelope.from);
    assert_eq!(m.envelope.reply_to, m.envelope.from);
    let m = parse(b"Subject: x\r\n\r\n");
    assert!(m.envelope.from.is_empty() && m.envelope.sender.is_empty());
}

#[test]
fn first_occurrence_wins() {
    let raw = b"Subject: one\r\nSubject: two\r\nContent-Type: text/html\r\n\
Content-Type: text/plain\r\n\r\n";
    let m = parse(raw);
    assert_eq!(m.envelope.subject.as_deref(), Some("one"));
    assert_eq!(m.body.media_subtype, "html");
}

#[test]
fn non_mime_message_ignores_content_fields() {
    // RFC 2045 §4 / Dovecot: without MIME-Version or Content-Type the Content-*
    // fields mean nothing.
    let raw = b"Content-Transfer-Encoding: base64\r\nContent-ID: <x>\r\n\r\nSGk=\r\n";
    let m = parse(raw);
    assert_eq!(m.body.encoding, "7BIT");
    assert_eq!(m.body.id, None);
    let raw = b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\nSGk=\r\n";
    let m = parse(raw);
    assert_eq!(m.body.encoding, "BASE64");
    assert_eq!(m.search.body_text, "Hi");
}

#[test]
fn invalid_content_type_defaults_to_text_plain() {
    for ct in ["garbage", "text", "multipart", "/x", ""] {
        let raw = format!("Content-Type: {ct}\r\n\r\nbody");
        let m = parse(raw.as_bytes());
        assert_eq!(
            (m.body.media_type.as_str(), m.body.media_subtype.as_str()),
            ("text", "plain"),
            "{ct:?}"
        );
        assert_eq!(m.body.params, vec![("charset".into(), "us-ascii".into())]);
    }
}

#[test]
fn multipart_without_boundary() {
    let raw = b"Content-Type: multipart/mixed\r\n\r\n--x\r\nbody\r\n";
    let m = parse(raw);
    check_invariants(raw, &m);
    assert_eq!(
        bs(&m.body),
        "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL) \
         \"mixed\" NIL NIL NIL NIL"
    );
    assert_eq!(body_of(raw, &m.body), "--x\r\nbody\r\n");
}

#[test]
fn multipart_whose_boundary_never_appears() {
    let raw = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nno parts here\r\n";
    let m = parse(raw);
    check_invariants(raw, &m);
    assert_eq!(m.body.parts.len(), 1);
    assert_eq!(m.body.parts[0].size, 0);
    assert_eq!(body_of(raw, &m.body), "no parts here\r\n");
}

#[test]
fn boundary_must_start_a_line() {
    let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\n\r\none --b two\r\n--b--\r\n";
    let m = parse(raw);
    check_invariants(raw, &m);
    assert_eq!(m.body.parts.len(), 1);
    assert_eq!(body_of(raw, &m.body.parts[0]), "one --b two");
}

#[test]
fn nested_multipart_closed_by_parent_boundary() {
    // The inner multipart has no close delimiter; the outer boundary ends it.
    let raw = crlf(
        "Content-Type: multipart/mixed; boundary=outer\n\
\n\
--outer\n\
Content-Type: multipart/alternative; boundary=inner\n\
\n\
--inner\n\
\n\
first\n\
--outer\n\
Content-Type: text/plain\n\
\n\
second\n\
--outer--\n",
    );
    let raw = raw.as_bytes();
    let m = parse(raw);
    check_invariants(raw, &m);
    assert_eq!(m.body.parts.len(), 2);
    let alt = &m.body.parts[0];
    assert_eq!(alt.media_subtype, "alternative");
    assert_eq!(alt.parts.len(), 1);
    assert_eq!(body_of(raw, &alt.parts[0]), "first");
    assert_eq!(body_of(raw, alt), "--inner\r\n\r\nfirst");
    assert_eq!(body_of(raw, &m.body.parts[1]), "second");
}

#[test]
fn same_boundary_nested_and_prefix_boundaries() {
    // The inner boundary has the outer one as a prefix: the longer match wins.
    let raw = crlf(
        "Content-Type: multipart/mixed; boundary=b\n\
\n\
--b\n\
Content-Type: multipart/mixed; boundary=b2\n\
\n\
--b2\n\
\n\
inner\n\
--b2--\n\
--b\n\
\n\
outer\n\
--b--\n",
    );
    let raw = raw.as_bytes();
    let m = parse(raw);
    check_invariants(raw, &m);
    assert_eq!(m.body.parts.len(), 2);
    assert_eq!(body_of(raw, &m.body.parts[0].parts[0]), "inner");
    assert_eq!(
        body_of(raw, &m.body.parts[0]),
        "--b2\r\n\r\ninner\r\n--b2--\r\n"
    );
    assert_eq!(body_of(raw, &m.body.parts[1]), "outer");
}

#[test]
fn boundary_inside_part_header() {
    // A boundary line before the blank line ends the part's header; the part has
    // no body and the line break before the boundary is the boundary's.
    let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n--b\r\n\r\nnext\r\n--b--";
    let m = parse(raw);
    check_invariants(raw, &m);
    assert_eq!(m.body.parts.len(), 2);
    let first = &m.body.parts[0];
    assert_eq!(header_of(raw, first), "Content-Type: text/plain");
    assert_eq!(first.size, 0);
    assert_eq!(body_of(raw, &m.body.parts[1]), "next");
}

#[test]
fn part_without_header() {
    let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nplain\r\n--b--\r\n";
    let m = parse(raw);
    let p = &m.body.parts[0];
    assert_eq!(header_of(raw, p), "\r\n");
    assert_eq!(body_of(raw, p), "plain");
    assert_eq!(
        bs(p),
        "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 5 1 NIL NIL NIL NIL"
    );
}

#[test]
fn multipart_digest_defaults_to_message() {
    let raw = crlf(
        "Content-Type: multipart/digest; boundary=d\n\
\n\
--d\n\
\n\
From: one@example.com\n\
Subject: first\n\
\n\
one\n\
--d\n\
Content-Type: text/plain\n\
\n\
two\n\
--d--\n",
    );
    let raw = raw.as_bytes();
    let m = parse(raw);
    check_invariants(raw, &m);
    let first = &m.body.parts[0];
    assert_eq!(
        (first.media_type.as_str(), first.media_subtype.as_str()),
        ("message", "rfc822")
    );
    assert!(first.params.is_empty());
    let (env, inner) = first.message.as_deref().unwrap();
    assert_eq!(env.subject.as_deref(), Some("first"));
    assert_eq!(body_of(raw, inner), "one");
    assert_eq!(first.lines, 4);
    assert_eq!(m.body.parts[1].media_type, "text");
}

#[test]
fn message_rfc822_at_top_and_empty() {
    let raw = b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nhi";
    let m = parse(raw);
    check_invariants(raw, &m);
    let (env, inner) = m.body.message.as_deref().unwrap();
    assert_eq!(env.subject.as_deref(), Some("inner"));
    assert_eq!(body_of(raw, inner), "hi");
    assert_eq!(m.body.lines, 3);

    let raw = b"Content-Type: message/rfc822\r\n\r\n";
    let m = parse(raw);
    check_invariants(raw, &m);
    let (env, inner) = m.body.message.as_deref().unwrap();
    assert_eq!(*env, Envelope::default());
    assert_eq!(inner.size, 0);
}

#[test]
fn base64_message_rfc822_is_parsed_in_place() {
    // Like Dovecot: the enclosed message is read from the stored bytes, whatever
    // the transfer encoding says, so every offset is an offset into the message.
    let raw = b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n\
U3ViamVjdDogaGkNCg0KYm9keQ==\r\n";
    let m = parse(raw);
    check_invariants(raw, &m);
    assert_eq!(m.body.encoding, "BASE64");
    assert!(m.body.message.is_some());
}

#[test]
fn rfc2231_parameters_in_structure() {
    let raw = b"Content-Type: application/octet-stream;\r\n\
\x20name*0=\"long\"; name*1=\"name.txt\"\r\n\
Content-Disposition: attachment; filename*=utf-8''%C3%A4.txt\r\n\r\ndata";
    let m = parse(raw);
    assert_eq!(m.body.params, vec![("name".into(), "longname.txt".into())]);
    assert_eq!(
        m.body.disposition,
        Some(Disposition {
            kind: "attachment".into(),
            params: vec![("filename*".into(), "utf-8''%C3%A4.txt".into())]
        })
    );
    // Not text: no lines.
    assert_eq!(m.body.lines, 0);
}

#[test]
fn body_text_decoding() {
    let raw = crlf(
        "Content-Type: multipart/mixed; boundary=b\n\
\n\
--b\n\
Content-Type: text/plain; charset=iso-8859-1\n\
Content-Transfer-Encoding: quoted-printable\n\
\n\
Gr=FC=DFe aus K=F6ln=\n\
!\n\
--b\n\
Content-Type: text/html; charset=utf-8\n\
Content-Transfer-Encoding: base64\n\
\n\
PHA+SGVsbG8gJmx0O3dvcmxkJmd0OzwvcD4=\n\
--b\n\
Content-Type: text/calendar\n\
\n\
BEGIN:VCALENDAR\n\
--b\n\
Content-Type: image/png\n\
Content-Transfer-Encoding: base64\n\
\n\
iVBORw0KGgo=\n\
--b--\n",
    );
    let m = parse(raw.as_bytes());
    check_invariants(raw.as_bytes(), &m);
    assert_eq!(
        m.search.body_text,
        "Grüße aus Köln!\nHello <world>\n\nBEGIN:VCALENDAR"
    );
}

#[test]
fn body_text_is_capped() {
    let mut raw = b"Content-Type: text/plain; charset=utf-8\r\n\r\n".to_vec();
    for _ in 0..(TEXT_CAP / 3 + 10) {
        raw.extend_from_slice("é.".as_bytes());
    }
    let m = parse(&raw);
    check_invariants(&raw, &m);
    assert!(m.search.body_text.len() <= TEXT_CAP);
    assert!(m.search.body_text.len() >= TEXT_CAP - 3);
}

#[test]
fn deep_nesting_is_bounded() {
    let depth = 300;
    let mut raw = String::new();
    for i in 0..depth {
        raw.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    raw.push_str("\r\ndeep\r\n");
    for i in (0..depth).rev() {
        raw.push_str(&format!("--b{i}--\r\n"));
    }
    let m = parse(raw.as_bytes());
    check_invariants(raw.as_bytes(), &m);
    let mut levels = 0;
    let mut p = &m.body;
    while let Some(c) = p.parts.first() {
        levels += 1;
        p = c;
    }
    assert!(levels <= MAX_DEPTH + 1, "{levels}");

    assert_json_round_trip(&m);

    // Nested message/rfc822 the same way.
    let mut raw = String::new();
    for _ in 0..depth {
        raw.push_str("Content-Type: message/rfc822\r\n\r\n");
    }
    raw.push_str("\r\nbottom\r\n");
    let m = parse(raw.as_bytes());
    check_invariants(raw.as_bytes(), &m);
    assert_json_round_trip(&m);

    // Both kinds alternating.
    let mut raw = String::new();
    for i in 0..depth {
        raw.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n\
             Content-Type: message/rfc822\r\n\r\n"
        ));
    }
    let m = parse(raw.as_bytes());
    check_invariants(raw.as_bytes(), &m);
    assert_json_round_trip(&m);
}

/// The store keeps the parse result as JSON: the deepest tree must read back
/// (serde_json stops at 128 levels of nesting).
fn assert_json_round_trip(m: &ParsedMessage) {
    let json = serde_json::to_string(m).unwrap();
    let back: ParsedMessage = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, m);
}

#[test]
fn part_count_is_bounded() {
    let mut raw = String::from("Content-Type: multipart/mixed; boundary=b\r\n\r\n");
    for _ in 0..(MAX_PARTS + 500) {
        raw.push_str("--b\r\n\r\nx\r\n");
    }
    raw.push_str("--b--\r\n");
    let m = parse(raw.as_bytes());
    check_invariants(raw.as_bytes(), &m);
    assert!(m.body.parts.len() < MAX_PARTS);
    assert_json_round_trip(&m);
}

// ---------------------------------------------------------------------------
// Never panics
// ---------------------------------------------------------------------------

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[test]
fn never_panics_on_prefixes() {
    let eight_bit: &[u8] =
        b"From: J\xf6rg <j@x>\r\nContent-Type: multipart/mixed; boundary=\"\xff\"\r\n\r\n\
--\xff\r\nContent-Type: text/html; charset=bogus\r\nContent-Transfer-Encoding: base64\r\n\r\n\
PGI+\xfe\xfe\r\n--\xff--";
    let lf_alt = ALTERNATIVE.replace("\r\n", "\n");
    let samples: Vec<&[u8]> = vec![
        PLAIN.as_bytes(),
        ALTERNATIVE.as_bytes(),
        lf_alt.as_bytes(),
        MIXED.as_bytes(),
        RFC822_ATTACHED.as_bytes(),
        DOVECOT.as_bytes(),
        GROUPS.as_bytes(),
        eight_bit,
    ];
    for sample in samples {
        for end in 0..=sample.len() {
            let raw = &sample[..end];
            // parse_message, not parse: a panic must fail the test, not be caught.
            let m = parse_message(raw);
            check_invariants(raw, &m);
        }
    }
}

#[test]
fn never_panics_on_random_bytes() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    // Bytes that matter to the parsers, so random input hits interesting paths.
    const ALPHABET: &[u8] =
        b"\r\n\r\n\n:;=\"\\()<>@,.-- \t-=?QqBb_abcdefxyz0123456789/[]%*&#<>\xff\xc3\x80";
    const FRAGMENTS: &[&str] = &[
        "\r\n",
        "\n\n",
        "--b\r\n",
        "--b--\r\n",
        "--c\n",
        "Content-Type: multipart/mixed; boundary=b\r\n",
        "Content-Type: multipart/digest; boundary=c\n",
        "Content-Type: message/rfc822\r\n",
        "Content-Type: text/html; charset=utf-16\r\n",
        "Content-Transfer-Encoding: quoted-printable\r\n",
        "Content-Transfer-Encoding: base64\r\n",
        "From: =?utf-8?q?a=C3?= <a@b>, g: c@d;\r\n",
        "Subject: =?utf-8?b?w6Q=?= =?x?q?=ZZ?=\r\n",
        "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n",
        "<p>&amp;&#xffffff;&#99999999;<!-- x -->",
        "=\r\n",
        "=F",
    ];
    for round in 0..10_000 {
        let len = (rng.next() % 1000) as usize;
        let mut raw = Vec::with_capacity(len);
        while raw.len() < len {
            let r = rng.next();
            match r % 4 {
                0 => {
                    raw.extend_from_slice(FRAGMENTS[(r >> 8) as usize % FRAGMENTS.len()].as_bytes())
                }
                1 => raw.push((r >> 8) as u8),
                _ => raw.push(ALPHABET[(r >> 8) as usize % ALPHABET.len()]),
            }
        }
        let m = parse_message(&raw);
        check_invariants(&raw, &m);
        // The field parsers on their own, on the same bytes.
        let text = String::from_utf8_lossy(&raw);
        let _ = crate::parse_address_list(&text);
        let _ = crate::parse_rfc5322_date(&text);
        let _ = params::content_type(&text);
        let _ = decode_words(&text);
        let _ = text::decode_body(&raw, "QUOTED-PRINTABLE", Some("utf-16"), true, usize::MAX);
        if round % 1000 == 0 {
            // The public entry point too.
            assert_eq!(parse(&raw), m);
        }
    }
}
