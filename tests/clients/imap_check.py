#!/usr/bin/env python3
"""Drives an IMAP server with Python's imaplib, an IMAP4rev1 client (standard library only).

Used by crates/casella/tests/imap_clients.rs. Every check that fails raises with a
message naming what was expected and what came back; the exit status is 0 only when
every check passed. Progress goes to stdout as "ok: ..." lines, and "PASS" at the end.

Subcommands (all take --host, --port, --user, --password, --timeout, and
--mode stls|ssl|plain with --cert CAFILE for the TLS modes):

  session --expect FILE [--expect FILE ...]
      A whole session on a fresh account whose INBOX holds exactly the given
      messages (the exact bytes delivered, in order; at least 3, the third larger
      than 1000 bytes): CAPABILITY before and after STARTTLS and login, LIST with
      special-use attributes, SELECT, FETCH of every kind, \\Seen by BODY[] and not by
      BODY.PEEK[], UID SEARCH, STORE, COPY (COPYUID), MOVE, EXPUNGE, APPEND
      (APPENDUID), STATUS, CREATE/RENAME/DELETE, SUBSCRIBE/LSUB, CLOSE and UNSELECT,
      IDLE (woken by an APPEND and an EXPUNGE from a second connection), another
      session's changes reported on NOOP (applied in order, they must give the view
      FETCH 1:* shows), LOGOUT.
  mime
      APPENDs a multipart/mixed message (text, base64 attachment, message/rfc822)
      and checks BODYSTRUCTURE, BODY, part sections, partial and BINARY fetches,
      and SEARCH CHARSET UTF-8 with a literal.
  utf8
      INBOX holds a message with a raw UTF-8 Subject: (Message-ID <utf8@remote.test>):
      ENVELOPE and SEARCH CHARSET UTF-8 with and without ENABLE UTF8=ACCEPT, and
      mailbox names in UTF-8 vs modified UTF-7.
  cleartext-refused
      (--mode plain) CAPABILITY offers STARTTLS and LOGINDISABLED and no AUTH=;
      LOGIN and AUTHENTICATE PLAIN are refused with NO [PRIVACYREQUIRED]; after
      STARTTLS on the same connection, LOGIN works.
  refused --code CODE [--text TEXT]
      LOGIN must fail with "NO [CODE] ..." (and the text must contain TEXT), and so
      must AUTHENTICATE PLAIN on a new connection; prints "refused: REPLY".
  authenticate
      AUTHENTICATE PLAIN (imaplib's authenticate()), then SELECT INBOX and print
      "exists: N".
  dump
      Logs in and, for every mailbox, prints "mailbox: NAME count=N" and one line
      "msg NAME|UID|FLAGS|MESSAGE-ID" per message (flags sorted, without \\Recent).
  fetch-uid --mailbox NAME --uid UID --out FILE
      Writes BODY.PEEK[] of that message to FILE and prints its "flags: ...".
  default-folders
      DELETE of INBOX and of every folder an account is made with (Drafts, Sent
      Items, Deleted Items, Junk Email, Archive) is refused with NO [CANNOT], and
      RENAME of them too; they are all still listed with their special-use
      attributes; a folder the client made itself is deleted as usual.
  modify --flag MSGID --answer MSGID --delete MSGID
      In INBOX: +FLAGS \\Flagged, +FLAGS \\Answered, and \\Deleted + EXPUNGE for the
      messages with those Message-IDs.
"""

import argparse
import imaplib
import re
import socket
import ssl
import sys
import time


def fail(msg):
    raise SystemExit(f"FAIL: {msg}")


def check(cond, msg):
    if not cond:
        fail(msg)


# ---------------------------------------------------------------------------
# A small parser for IMAP response data, as imaplib hands it over: a list of
# byte strings and (text, literal) tuples.
# ---------------------------------------------------------------------------


class Lit(bytes):
    """A literal or quoted string, as opposed to an atom."""


NIL = None


def tokenize(segments):
    """Tokens of the segments: "(", ")", atoms (bytes), strings (Lit), NIL (None)."""
    tokens = []
    for seg in segments:
        if isinstance(seg, Lit):
            tokens.append(seg)
            continue
        i = 0
        s = seg
        while i < len(s):
            c = s[i : i + 1]
            if c in (b" ", b"\r", b"\n"):
                i += 1
            elif c in (b"(", b")"):
                tokens.append(c.decode())
                i += 1
            elif c == b'"':
                i += 1
                out = bytearray()
                while s[i : i + 1] != b'"':
                    if s[i : i + 1] == b"\\":
                        i += 1
                    check(i < len(s), f"unterminated quoted string in {s!r}")
                    out += s[i : i + 1]
                    i += 1
                i += 1
                tokens.append(Lit(bytes(out)))
            elif c == b"{" or s[i : i + 2] == b"~{":
                # A literal (or literal8) marker: its bytes are the next segment.
                j = s.index(b"}", i)
                i = j + 1
            else:
                j = i
                depth = 0
                while j < len(s):
                    d = s[j : j + 1]
                    if d == b"[":
                        depth += 1
                    elif d == b"]":
                        depth -= 1
                    elif depth == 0 and d in (b" ", b"(", b")", b"\r", b"\n"):
                        break
                    j += 1
                atom = s[i:j]
                tokens.append(NIL if atom.upper() == b"NIL" else atom)
                i = j
    return tokens


def parse_tokens(tokens):
    """Nested lists from tokens."""
    stack = [[]]
    for t in tokens:
        if t == "(":
            stack.append([])
        elif t == ")":
            check(len(stack) > 1, f"unbalanced ')' in {tokens!r}")
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(t)
    check(len(stack) == 1, f"unbalanced '(' in {tokens!r}")
    return stack[0]


def segments_of(data):
    segs = []
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):
            segs.append(item[0])
            segs.append(Lit(item[1]))
        else:
            segs.append(item)
    return segs


def parse_fetch(data):
    """{seq: {ITEM: value}} from the data of a FETCH (or UID FETCH, STORE) reply."""
    items = parse_tokens(tokenize(segments_of(data)))
    result = {}
    i = 0
    while i < len(items):
        seq = items[i]
        check(isinstance(seq, bytes) and seq.isdigit(), f"FETCH data: expected a number, got {seq!r} in {data!r}")
        check(i + 1 < len(items) and isinstance(items[i + 1], list), f"FETCH data after {seq!r}: {data!r}")
        attrs = items[i + 1]
        check(len(attrs) % 2 == 0, f"FETCH attributes not in pairs: {attrs!r}")
        d = result.setdefault(int(seq), {})
        for k in range(0, len(attrs), 2):
            d[attrs[k].decode().upper()] = attrs[k + 1]
        i += 2
    return result


def parse_list(data):
    """[(attributes, delimiter, name)] from LIST or LSUB data."""
    out = []
    for item in data:
        if item is None:
            continue
        toks = parse_tokens(tokenize(segments_of([item])))
        check(len(toks) == 3 and isinstance(toks[0], list), f"LIST line: {item!r}")
        attrs = [a.decode() for a in toks[0]]
        delim = toks[1].decode() if toks[1] is not None else None
        out.append((attrs, delim, bytes(toks[2]).decode()))
    return out


def flags_of(value):
    return sorted(f.decode() for f in value if f.decode().lower() != "\\recent")


def err_text(e):
    """The server's text in an imaplib error, bytes or not."""
    arg = e.args[0] if e.args else ""
    if isinstance(arg, bytes):
        return arg.decode(errors="replace")
    text = str(arg)
    m = re.search(r"b'(.*)'", text) or re.search(r'b"(.*)"', text)
    return m.group(1) if m else text


def quote(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ok(what, typ_dat):
    typ, dat = typ_dat
    check(typ == "OK", f"{what}: {typ} {dat!r}")
    return dat


def response_code(m, name):
    """The last value of a response code (e.g. COPYUID) imaplib collected."""
    _, vals = m.response(name)
    check(vals and vals[-1] is not None, f"no [{name}] response code")
    return vals[-1].decode()


def uids_of(dat):
    return [int(x) for x in b" ".join(d for d in dat if d).split()]


# ---------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------


def context(args):
    return ssl.create_default_context(cafile=args.cert)


def connect(args):
    """A connected client in the not-authenticated state, with TLS when asked."""
    if args.mode == "ssl":
        m = imaplib.IMAP4_SSL(args.host, args.port, ssl_context=context(args), timeout=args.timeout)
        check(isinstance(m.sock, ssl.SSLSocket), "IMAP4_SSL socket is not TLS")
    else:
        m = imaplib.IMAP4(args.host, args.port, timeout=args.timeout)
        if args.mode == "stls":
            caps = m.capabilities
            check("STARTTLS" in caps, f"no STARTTLS before TLS: {caps!r}")
            ok("STARTTLS", m.starttls(ssl_context=context(args)))
            check(isinstance(m.sock, ssl.SSLSocket), "socket is not TLS after STARTTLS")
    check(m.welcome.startswith(b"* OK"), f"greeting: {m.welcome!r}")
    return m


def login(args):
    m = connect(args)
    ok("LOGIN", m.login(args.user, args.password))
    check(m.state == "AUTH", f"state after LOGIN: {m.state}")
    return m


def caps_now(m):
    dat = ok("CAPABILITY", m.capability())
    return set(dat[-1].decode().upper().split())


# ---------------------------------------------------------------------------
# session
# ---------------------------------------------------------------------------


def split_message(msg):
    head, sep, body = msg.partition(b"\r\n\r\n")
    check(sep, "a test message has no header/body separator")
    return head + b"\r\n\r\n", body


def header_value(msg, name):
    head, _ = split_message(msg)
    for line in head.split(b"\r\n"):
        if line.lower().startswith(name.lower().encode() + b":"):
            return line.split(b":", 1)[1].strip().decode()
    fail(f"no {name} in test message")


def cmd_session(args):
    expected = []
    for path in args.expect:
        with open(path, "rb") as f:
            expected.append(f.read())
    n = len(expected)
    check(n >= 3, "session needs at least 3 messages")
    check(len(expected[2]) > 1000 and all(len(e) < 1000 for e in expected[:2]), "message sizes")

    # --- Before authentication -------------------------------------------------
    if args.mode == "stls":
        m = imaplib.IMAP4(args.host, args.port, timeout=args.timeout)
        check(m.welcome.startswith(b"* OK"), f"greeting: {m.welcome!r}")
        caps = set(m.capabilities)
        check({"IMAP4REV1", "STARTTLS", "LOGINDISABLED"} <= caps, f"cleartext CAPABILITY: {caps!r}")
        check(not any(c.startswith("AUTH=") for c in caps), f"AUTH= offered before STARTTLS: {caps!r}")
        try:
            m.login(args.user, args.password)
        except imaplib.IMAP4.error as e:
            text = err_text(e)
            check("PRIVACYREQUIRED" in text, f"LOGIN before STARTTLS: {text}")
            print(f"ok: login refused before STARTTLS: {text}")
        else:
            fail("LOGIN accepted before STARTTLS")
        check(m.state == "NONAUTH", f"state after refused LOGIN: {m.state}")
        ok("STARTTLS", m.starttls(ssl_context=context(args)))
        check(isinstance(m.sock, ssl.SSLSocket), "socket is not TLS after STARTTLS")
        caps = set(m.capabilities)
        check("AUTH=PLAIN" in caps, f"no AUTH=PLAIN after STARTTLS: {caps!r}")
        check("LOGINDISABLED" not in caps and "STARTTLS" not in caps, f"CAPABILITY after STARTTLS: {caps!r}")
        print(f"ok: starttls ({m.sock.version()}), capabilities {' '.join(sorted(caps))}")
    else:
        m = connect(args)
        caps = set(m.capabilities)
        check("IMAP4REV1" in caps and "AUTH=PLAIN" in caps, f"CAPABILITY: {caps!r}")
        check("LOGINDISABLED" not in caps, f"LOGINDISABLED offered: {caps!r}")
        if args.mode == "plain":
            check("STARTTLS" in caps, f"no STARTTLS on cleartext: {caps!r}")
        if args.mode == "ssl":
            check("STARTTLS" not in caps, f"STARTTLS offered under TLS: {caps!r}")
            print(f"ok: implicit tls ({m.sock.version()})")
        print(f"ok: capabilities {' '.join(sorted(caps))}")

    typ, dat = m.login(args.user, args.password)
    check(typ == "OK", f"LOGIN: {typ} {dat!r}")
    caps = caps_now(m)
    for c in ("IMAP4REV1", "IDLE", "UIDPLUS", "MOVE", "SPECIAL-USE", "NAMESPACE", "UNSELECT"):
        check(c in caps, f"{c} missing from CAPABILITY after login: {caps!r}")
    print("ok: login")

    # --- LIST ---------------------------------------------------------------
    boxes = parse_list(ok("LIST", m.list('""', "*")))
    by_name = {name: attrs for attrs, _, name in boxes}
    check(all(d == "/" for _, d, _ in boxes), f"hierarchy separator: {boxes!r}")
    want = {
        "INBOX": None,
        "Drafts": "\\Drafts",
        "Sent Items": "\\Sent",
        "Deleted Items": "\\Trash",
        "Junk Email": "\\Junk",
        "Archive": "\\Archive",
    }
    for name, use in want.items():
        check(name in by_name, f"LIST lacks {name!r}: {boxes!r}")
        if use:
            check(use in by_name[name], f"{name!r} lacks {use}: {by_name[name]!r}")
    check(len(boxes) == len(want), f"LIST: unexpected mailboxes {boxes!r}")
    print("ok: list with special-use")

    # --- SELECT ---------------------------------------------------------------
    dat = ok("SELECT", m.select("INBOX"))
    check(dat == [str(n).encode()], f"SELECT EXISTS: {dat!r}")
    uidvalidity = int(m.untagged_responses["UIDVALIDITY"][-1])
    uidnext = int(m.untagged_responses["UIDNEXT"][-1])
    check(uidvalidity > 0, "UIDVALIDITY 0")
    check("READ-WRITE" in m.untagged_responses, "SELECT is not READ-WRITE")
    fl = m.untagged_responses["FLAGS"][-1]
    for f in (b"\\Seen", b"\\Deleted", b"\\Flagged", b"\\Answered", b"\\Draft"):
        check(f in fl, f"FLAGS lacks {f!r}: {fl!r}")
    uids = uids_of(ok("UID SEARCH ALL", m.uid("SEARCH", None, "ALL")))
    check(len(uids) == n and uids == sorted(uids), f"UIDs: {uids!r}")
    check(uidnext > uids[-1], f"UIDNEXT {uidnext} not above UIDs {uids!r}")
    print(f"ok: select INBOX exists={n} uidvalidity={uidvalidity} uidnext={uidnext}")

    # --- FETCH ------------------------------------------------------------------
    items = "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER])"
    got = parse_fetch(ok("FETCH", m.fetch(f"1:{n}", items)))
    check(sorted(got) == list(range(1, n + 1)), f"FETCH 1:{n} answered for {sorted(got)!r}")
    for i, msg in enumerate(expected, 1):
        a = got[i]
        check(int(a["UID"]) == uids[i - 1], f"UID of {i}: {a['UID']!r}")
        check("\\Seen" not in flags_of(a["FLAGS"]), f"new message {i} is \\Seen: {a['FLAGS']!r}")
        check(int(a["RFC822.SIZE"]) == len(msg), f"RFC822.SIZE of {i}: {a['RFC822.SIZE']!r} != {len(msg)}")
        t = imaplib.Internaldate2tuple(b'INTERNALDATE "' + a["INTERNALDATE"] + b'"')
        check(t is not None, f"INTERNALDATE of {i}: {a['INTERNALDATE']!r}")
        check(abs(time.mktime(t) - time.time()) < 3600, f"INTERNALDATE of {i} is not now: {a['INTERNALDATE']!r}")
        head, body = split_message(msg)
        check(a["BODY[HEADER]"] == head, f"BODY[HEADER] of {i}: {a['BODY[HEADER]']!r}")
        env = a["ENVELOPE"]
        check(len(env) == 10, f"ENVELOPE of {i} has {len(env)} fields: {env!r}")
        check(env[0] == header_value(msg, "Date").encode(), f"ENVELOPE date of {i}: {env[0]!r}")
        check(env[1] == header_value(msg, "Subject").encode(), f"ENVELOPE subject of {i}: {env[1]!r}")
        check(env[9] == header_value(msg, "Message-ID").encode(), f"ENVELOPE message-id of {i}: {env[9]!r}")
        frm = env[2][0]
        addr = header_value(msg, "From")
        check(
            f"{frm[2].decode()}@{frm[3].decode()}" in addr and frm[0].decode() in addr,
            f"ENVELOPE from of {i}: {frm!r} vs {addr!r}",
        )
        check(env[3] == env[2] and env[4] == env[2], f"ENVELOPE sender/reply-to default to from: {env!r}")
        to = env[5][0]
        check((to[2], to[3]) == (b"u", b"example.org"), f"ENVELOPE to of {i}: {to!r}")
        bs = a["BODYSTRUCTURE"]
        check([x.lower() for x in bs[:2]] == [b"text", b"plain"], f"BODYSTRUCTURE type of {i}: {bs!r}")
        check(int(bs[6]) == len(body), f"BODYSTRUCTURE size of {i}: {bs[6]!r} != {len(body)}")
        check(int(bs[7]) == body.count(b"\r\n"), f"BODYSTRUCTURE lines of {i}: {bs[7]!r}")
    print("ok: fetch flags internaldate rfc822.size envelope bodystructure body.peek[header]")

    # \Seen: BODY[TEXT] sets it, BODY.PEEK[] does not, RFC822 does.
    got = parse_fetch(ok("FETCH BODY[TEXT]", m.fetch("1", "(BODY[TEXT])")))
    check(got[1]["BODY[TEXT]"] == split_message(expected[0])[1], f"BODY[TEXT] of 1: {got!r}")
    got = parse_fetch(ok("FETCH FLAGS", m.fetch("1", "(FLAGS)")))
    check("\\Seen" in flags_of(got[1]["FLAGS"]), f"BODY[TEXT] did not set \\Seen: {got!r}")
    got = parse_fetch(ok("FETCH BODY.PEEK[]", m.fetch("2", "(BODY.PEEK[])")))
    check(got[2]["BODY[]"] == expected[1], f"BODY.PEEK[] of 2: {got!r}")
    got = parse_fetch(ok("FETCH FLAGS", m.fetch("2", "(FLAGS)")))
    check("\\Seen" not in flags_of(got[2]["FLAGS"]), f"BODY.PEEK[] set \\Seen: {got!r}")
    got = parse_fetch(ok("FETCH RFC822", m.fetch("3", "(RFC822)")))
    check(got[3]["RFC822"] == expected[2], "RFC822 of 3 differs")
    got = parse_fetch(ok("FETCH FLAGS", m.fetch("3", "(FLAGS)")))
    check("\\Seen" in flags_of(got[3]["FLAGS"]), f"RFC822 did not set \\Seen: {got!r}")
    got = parse_fetch(ok("FETCH BODY[HEADER.FIELDS]", m.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")))
    field = next(v for k, v in got[2].items() if k.startswith("BODY[HEADER.FIELDS"))
    check(field == b"Subject: " + header_value(expected[1], "Subject").encode() + b"\r\n\r\n", f"HEADER.FIELDS: {field!r}")
    print("ok: \\Seen set by BODY[] and RFC822, not by BODY.PEEK[]")

    # --- UID SEARCH ---------------------------------------------------------------
    def search(*criteria):
        return uids_of(ok(f"UID SEARCH {criteria}", m.uid("SEARCH", None, *criteria)))

    u1, u2, u3 = uids[0], uids[1], uids[2]
    check(search("ALL") == uids, "SEARCH ALL")
    check(search("FROM", '"bob"') == [u2], f"SEARCH FROM bob: {search('FROM', 'bob')!r}")
    check(search("SUBJECT", '"third"') == [u3], "SEARCH SUBJECT third")
    check(search("UNSEEN") == [u2], f"SEARCH UNSEEN: {search('UNSEEN')!r}")
    check(search("SEEN") == [u1, u3], "SEARCH SEEN")
    check(search("SINCE", "1-Jan-2000") == uids, "SEARCH SINCE 1-Jan-2000")
    check(search("SINCE", "1-Jan-2100") == [], "SEARCH SINCE 1-Jan-2100")
    check(search("BEFORE", "1-Jan-2000") == [], "SEARCH BEFORE 1-Jan-2000")
    check(search("SENTSINCE", "2-Jun-2025") == [u2, u3], f"SEARCH SENTSINCE: {search('SENTSINCE', '2-Jun-2025')!r}")
    check(search("SENTBEFORE", "2-Jun-2025") == [u1], "SEARCH SENTBEFORE")
    check(search("LARGER", "1000") == [u3], "SEARCH LARGER 1000")
    check(search("SMALLER", "1000") == [u1, u2], "SEARCH SMALLER 1000")
    check(search("OR", "FROM", "alice", "FROM", "carol") == [u1, u3], "SEARCH OR")
    check(search("NOT", "FROM", "alice") == [u2, u3], "SEARCH NOT")
    check(search("BODY", '"third body"') == [u3], "SEARCH BODY")
    check(search("HEADER", "Message-ID", '"second@remote.test"') == [u2], "SEARCH HEADER")
    check(search("UID", f"{u2}:*") == [u2, u3], "SEARCH UID range")
    seq = [int(x) for x in b" ".join(ok("SEARCH", m.search(None, "UNSEEN"))).split()]
    check(seq == [2], f"SEARCH UNSEEN (sequence numbers): {seq!r}")
    print("ok: uid search all/from/subject/unseen/since/larger/...")

    got = parse_fetch(ok("FETCH BODY[]", m.fetch("2", "(BODY[])")))
    check(got[2]["BODY[]"] == expected[1], "BODY[] of 2")
    check(search("UNSEEN") == [], "BODY[] did not set \\Seen on 2")

    # --- STORE ------------------------------------------------------------------------
    got = parse_fetch(ok("STORE +FLAGS", m.store("1", "+FLAGS", "(\\Flagged)")))
    check(flags_of(got[1]["FLAGS"]) == ["\\Flagged", "\\Seen"], f"+FLAGS: {got!r}")
    got = parse_fetch(ok("STORE -FLAGS", m.store("1", "-FLAGS", "(\\Seen)")))
    check(flags_of(got[1]["FLAGS"]) == ["\\Flagged"], f"-FLAGS: {got!r}")
    dat = ok("STORE FLAGS.SILENT", m.store("2", "FLAGS.SILENT", "(\\Answered $Label1)"))
    check(dat == [None], f"FLAGS.SILENT answered with FETCH data: {dat!r}")
    got = parse_fetch(ok("FETCH FLAGS", m.fetch("1:3", "(FLAGS)")))
    check(flags_of(got[2]["FLAGS"]) == ["$Label1", "\\Answered"], f"after FLAGS.SILENT: {got!r}")
    check(flags_of(got[3]["FLAGS"]) == ["\\Seen"], f"3 changed: {got!r}")
    got = parse_fetch(ok("UID STORE", m.uid("STORE", str(u3), "+FLAGS", "(\\Draft)")))
    check(flags_of(got[3]["FLAGS"]) == ["\\Draft", "\\Seen"], f"UID STORE: {got!r}")
    check(search("FLAGGED") == [u1] and search("KEYWORD", "$Label1") == [u2], "SEARCH FLAGGED/KEYWORD")
    check(search("ANSWERED") == [u2] and search("DRAFT") == [u3], "SEARCH ANSWERED/DRAFT")
    print("ok: store +flags -flags flags.silent, uid store")

    # --- COPY with COPYUID --------------------------------------------------------------
    m.response("COPYUID")  # forget earlier values
    ok("UID COPY", m.uid("COPY", f"{u1}:{u2}", "Archive"))
    cu = response_code(m, "COPYUID").split()
    check(len(cu) == 3, f"COPYUID: {cu!r}")
    st = ok("STATUS Archive", m.status("Archive", "(MESSAGES UIDVALIDITY UIDNEXT)"))
    st = parse_tokens(tokenize(segments_of(st)))[1]
    st = dict(zip([x.decode() for x in st[::2]], [int(x) for x in st[1::2]]))
    check(st["MESSAGES"] == 2, f"Archive after COPY: {st!r}")
    check(int(cu[0]) == st["UIDVALIDITY"], f"COPYUID validity {cu[0]} vs STATUS {st!r}")
    check(cu[1] in (f"{u1}:{u2}", f"{u1},{u2}"), f"COPYUID source set: {cu!r}")
    dst = cu[2].split(":") if ":" in cu[2] else cu[2].split(",")
    check(int(dst[-1]) < st["UIDNEXT"], f"COPYUID destination {cu!r} vs {st!r}")
    print(f"ok: copy to Archive, COPYUID {' '.join(cu)}")

    # Copies keep flags and bytes: look from a second connection.
    m2 = login(args)
    ok("EXAMINE Archive", m2.select("Archive", readonly=True))
    check("READ-ONLY" in m2.untagged_responses, "EXAMINE is not READ-ONLY")
    got = parse_fetch(ok("FETCH", m2.fetch("1:2", "(FLAGS BODY.PEEK[])")))
    check(got[1]["BODY[]"] == expected[0] and got[2]["BODY[]"] == expected[1], "copied bytes differ")
    check(flags_of(got[1]["FLAGS"]) == ["\\Flagged"], f"copied flags: {got!r}")
    check(flags_of(got[2]["FLAGS"]) == ["$Label1", "\\Answered"], f"copied flags: {got!r}")
    m2.logout()
    print("ok: copies keep bytes and flags")

    # --- MOVE ------------------------------------------------------------------------------
    m.response("COPYUID")
    m.response("EXPUNGE")
    ok("UID MOVE", m.uid("MOVE", str(u2), quote("Junk Email")))
    cu = response_code(m, "COPYUID").split()
    check(cu[1] == str(u2), f"MOVE COPYUID: {cu!r}")
    _, exp = m.response("EXPUNGE")
    check(exp == [b"2"], f"MOVE: expected * 2 EXPUNGE, got {exp!r}")
    check(search("ALL") == [u1, u3], f"after MOVE: {search('ALL')!r}")
    st = ok("STATUS", m.status(quote("Junk Email"), "(MESSAGES)"))
    check(b"MESSAGES 1" in st[0], f"Junk Email after MOVE: {st!r}")
    print("ok: uid move to Junk Email")

    # --- EXPUNGE -------------------------------------------------------------------------------
    ok("STORE \\Deleted", m.store("1", "+FLAGS.SILENT", "(\\Deleted)"))
    dat = ok("EXPUNGE", m.expunge())
    check(dat == [b"1"], f"EXPUNGE reply: {dat!r}")
    check(search("ALL") == [u3], "after EXPUNGE")
    print("ok: expunge")

    # --- APPEND with flags and date, APPENDUID ---------------------------------------------------
    new = (
        b"From: Dora <d@remote.test>\r\nTo: u@example.org\r\nSubject: appended\r\n"
        b"Message-ID: <appended@remote.test>\r\nDate: Wed, 04 Jun 2025 09:00:00 +0000\r\n\r\n"
        b"Appended by imaplib.\r\n"
    )
    when = imaplib.Time2Internaldate(1717200000)  # 2024-06-01 00:00:00 UTC
    m.response("APPENDUID")
    ok("APPEND", m.append("INBOX", "(\\Flagged $Important)", when, new))
    au = response_code(m, "APPENDUID").split()
    check(int(au[0]) == uidvalidity, f"APPENDUID validity {au!r} vs {uidvalidity}")
    new_uid = int(au[1])
    check(new_uid > u3, f"APPENDUID uid {au!r}")
    ok("NOOP", m.noop())
    got = parse_fetch(ok("UID FETCH", m.uid("FETCH", str(new_uid), "(FLAGS INTERNALDATE BODY.PEEK[])")))
    a = next(iter(got.values()))
    check(a["BODY[]"] == new, f"appended bytes: {a['BODY[]']!r}")
    check(flags_of(a["FLAGS"]) == ["$Important", "\\Flagged"], f"appended flags: {a['FLAGS']!r}")
    t = imaplib.Internaldate2tuple(b'INTERNALDATE "' + a["INTERNALDATE"] + b'"')
    check(t is not None and int(time.mktime(t)) == 1717200000, f"appended INTERNALDATE: {a['INTERNALDATE']!r}")
    check(search("BEFORE", "2-Jun-2024") == [new_uid], "SEARCH BEFORE on the appended date")
    print(f"ok: append with flags and date, APPENDUID {' '.join(au)}")

    # --- STATUS ---------------------------------------------------------------------------------
    st = ok("STATUS", m.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)"))
    st = parse_tokens(tokenize(segments_of(st)))
    check(bytes(st[0]) == b"INBOX", f"STATUS name: {st!r}")
    st = dict(zip([x.decode() for x in st[1][::2]], [int(x) for x in st[1][1::2]]))
    check(st == {"MESSAGES": 2, "UIDNEXT": new_uid + 1, "UIDVALIDITY": uidvalidity, "UNSEEN": 1}, f"STATUS INBOX: {st!r}")
    print("ok: status")

    # --- CREATE / RENAME / DELETE, SUBSCRIBE / LSUB ---------------------------------------------
    ok("CREATE", m.create("Projects/2025"))
    boxes = {name: attrs for attrs, _, name in parse_list(ok("LIST", m.list('""', "Projects*")))}
    check(set(boxes) == {"Projects", "Projects/2025"}, f"LIST after CREATE: {boxes!r}")
    check("\\HasChildren" in boxes["Projects"], f"Projects: {boxes!r}")
    ok("RENAME", m.rename("Projects/2025", "Projects/2026"))
    boxes = {name for _, _, name in parse_list(ok("LIST", m.list('""', "Projects/%")))}
    check(boxes == {"Projects/2026"}, f"LIST after RENAME: {boxes!r}")
    ok("SUBSCRIBE", m.subscribe("Projects/2026"))
    subs = {name for _, _, name in parse_list(ok("LSUB", m.lsub('""', "*")))}
    check("Projects/2026" in subs and "INBOX" in subs, f"LSUB: {subs!r}")
    ok("UNSUBSCRIBE", m.unsubscribe("Projects/2026"))
    subs = {name for _, _, name in parse_list(ok("LSUB", m.lsub('""', "*")))}
    check("Projects/2026" not in subs, f"LSUB after UNSUBSCRIBE: {subs!r}")
    ok("DELETE", m.delete("Projects/2026"))
    ok("DELETE", m.delete("Projects"))
    boxes = parse_list(ok("LIST", m.list('""', "Projects*")))
    check(boxes == [], f"LIST after DELETE: {boxes!r}")
    ok("CREATE", m.create("R&AOk-sum&AOk-"))  # modified UTF-7 for "Résumé"
    boxes = [name for _, _, name in parse_list(ok("LIST", m.list('""', "R*")))]
    check(boxes == ["R&AOk-sum&AOk-"], f"LIST modified UTF-7: {boxes!r}")
    typ, dat = m.create("INBOX")
    check(typ == "NO", f"CREATE INBOX: {typ} {dat!r}")
    typ, dat = m.select(quote("No such mailbox"))
    check(typ == "NO", f"SELECT of a missing mailbox: {typ} {dat!r}")
    check(m.state == "AUTH", f"state after a failed SELECT: {m.state}")
    print("ok: create rename delete subscribe lsub")

    # --- CLOSE expunges silently, UNSELECT does not -----------------------------------------------
    ok("SELECT", m.select("Archive"))
    m.response("EXPUNGE")
    ok("STORE", m.store("2", "+FLAGS.SILENT", "(\\Deleted)"))
    ok("CLOSE", m.close())
    _, exp = m.response("EXPUNGE")
    check(exp == [None], f"CLOSE sent EXPUNGE responses: {exp!r}")
    st = ok("STATUS", m.status("Archive", "(MESSAGES)"))
    check(b"MESSAGES 1" in st[0], f"Archive after CLOSE: {st!r}")
    ok("SELECT", m.select(quote("Junk Email")))
    ok("STORE", m.store("1", "+FLAGS.SILENT", "(\\Deleted)"))
    ok("UNSELECT", m.unselect())
    check(m.state == "AUTH", f"state after UNSELECT: {m.state}")
    st = ok("STATUS", m.status(quote("Junk Email"), "(MESSAGES)"))
    check(b"MESSAGES 1" in st[0], f"Junk Email after UNSELECT: {st!r}")
    print("ok: close expunges, unselect does not")

    # --- IDLE: woken by an APPEND, then an EXPUNGE, from another connection --------------------------
    ok("SELECT", m.select("INBOX"))
    check(search("ALL") == [u3, new_uid], f"INBOX before IDLE: {search('ALL')!r}")
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    line = m.readline()
    check(line.startswith(b"+"), f"IDLE continuation: {line!r}")
    m.sock.settimeout(10)

    def wait_for(pattern):
        seen = []
        while True:
            try:
                line = m.readline()
            except (socket.timeout, TimeoutError):
                fail(f"no {pattern!r} during IDLE within 10 s; got {seen!r}")
            check(line, f"connection closed during IDLE; got {seen!r}")
            seen.append(line)
            if re.fullmatch(pattern, line):
                return

    m2 = login(args)
    ok("APPEND", m2.append("INBOX", None, None, expected[0]))
    wait_for(rb"\* 3 EXISTS\r\n")
    ok("SELECT", m2.select("INBOX"))
    ok("UID STORE", m2.uid("STORE", str(u3), "+FLAGS.SILENT", "(\\Deleted)"))
    ok("EXPUNGE", m2.expunge())
    m2.logout()
    wait_for(rb"\* 1 EXPUNGE\r\n")
    m.send(b"DONE\r\n")
    while True:
        line = m.readline()
        check(line, "connection closed after DONE")
        if line.startswith(tag + b" "):
            check(line.startswith(tag + b" OK"), f"IDLE end: {line!r}")
            break
    m.sock.settimeout(args.timeout)
    after = search("ALL")
    check(len(after) == 2 and after[0] == new_uid and after[1] > new_uid, f"INBOX after IDLE: {after!r}")
    print("ok: idle saw * 3 EXISTS and * 1 EXPUNGE")

    # --- Changes by another session, reported on NOOP ---------------------------------------------
    # Another session flags the first message, appends one and expunges the second; the
    # untagged replies to NOOP, applied in order, must leave the same view (sequence
    # number -> UID) that FETCH 1:* then reports.
    m2 = login(args)
    ok("SELECT", m2.select("INBOX"))
    ok("UID STORE", m2.uid("STORE", str(after[0]), "+FLAGS.SILENT", "(\\Seen)"))
    m2.response("APPENDUID")
    ok("APPEND", m2.append("INBOX", None, None, expected[1]))
    added = int(response_code(m2, "APPENDUID").split()[1])
    ok("UID STORE", m2.uid("STORE", str(after[1]), "+FLAGS.SILENT", "(\\Deleted)"))
    ok("EXPUNGE", m2.expunge())
    m2.logout()
    tag = m._new_tag()
    m.send(tag + b" NOOP\r\n")
    lines = []
    while True:
        line = m.readline()
        check(line, f"connection closed during NOOP; got {lines!r}")
        if line.startswith(tag + b" "):
            check(line.startswith(tag + b" OK"), f"NOOP: {line!r}")
            break
        lines.append(line)
    view = list(after)
    flag_updates = {}
    for line in lines:
        if mt := re.fullmatch(rb"\* (\d+) EXISTS\r\n", line):
            n = int(mt.group(1))
            check(n >= len(view), f"EXISTS {n} shrinks the view {view!r}: {lines!r}")
            view += [None] * (n - len(view))
        elif mt := re.fullmatch(rb"\* (\d+) EXPUNGE\r\n", line):
            n = int(mt.group(1))
            check(1 <= n <= len(view), f"EXPUNGE {n} outside the view {view!r}: {lines!r}")
            del view[n - 1]
        elif mt := re.fullmatch(rb"\* (\d+) FETCH (.*)\r\n", line):
            n = int(mt.group(1))
            check(1 <= n <= len(view), f"FETCH {n} outside the view {view!r}: {lines!r}")
            got = parse_fetch([mt.group(1) + b" " + mt.group(2)])[n]
            if "FLAGS" in got:
                flag_updates[view[n - 1]] = flags_of(got["FLAGS"])
    check(flag_updates.get(after[0]) == ["$Important", "\\Flagged", "\\Seen"], f"no FETCH FLAGS for the flag change: {lines!r}")
    got = parse_fetch(ok("FETCH", m.fetch("1:*", "(UID)")))
    now = [int(got[i]["UID"]) for i in sorted(got)]
    check(sorted(got) == list(range(1, len(now) + 1)), f"FETCH 1:* sequence numbers: {sorted(got)!r}")
    check(now == [after[0], added], f"INBOX after the other session: {now!r}")
    check(len(view) == len(now) and all(v in (None, u) for v, u in zip(view, now)), f"the NOOP replies {lines!r} give {view!r}, FETCH gives {now!r}")
    print(f"ok: another session's changes on NOOP: {b' '.join(l.strip() for l in lines).decode()}")

    ok("CLOSE", m.close())
    typ, dat = m.logout()
    check(typ == "BYE", f"LOGOUT: {typ} {dat!r}")
    print("ok: logout")


# ---------------------------------------------------------------------------
# The other subcommands
# ---------------------------------------------------------------------------


MULTIPART = (
    b"From: Frank <f@remote.test>\r\n"
    b"To: u@example.org\r\n"
    b"Subject: =?UTF-8?Q?caf=C3=A9?= with attachments\r\n"
    b"Message-ID: <multipart@remote.test>\r\n"
    b"Date: Thu, 05 Jun 2025 14:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XX"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--XX\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Caf\xc3\xa9 au lait.\r\n"
    b"--XX\r\n"
    b'Content-Type: application/octet-stream; name="a.bin"\r\n'
    b'Content-Disposition: attachment; filename="a.bin"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAwQFBgcICQ==\r\n"
    b"--XX\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: Gina <g@remote.test>\r\n"
    b"Subject: inner\r\n"
    b"Message-ID: <inner@remote.test>\r\n"
    b"\r\n"
    b"Inner body.\r\n"
    b"Second line.\r\n"
    b"--XX--\r\n"
    b"epilogue\r\n"
)


def cmd_mime(args):
    """A multipart message: BODYSTRUCTURE, BODY, sections, partial and BINARY
    fetches, and SEARCH with a UTF-8 literal."""
    m = login(args)
    ok("SELECT", m.select("INBOX"))
    m.response("APPENDUID")
    ok("APPEND", m.append("INBOX", None, None, MULTIPART))
    uid = response_code(m, "APPENDUID").split()[1]

    got = parse_fetch(ok("UID FETCH", m.uid("FETCH", uid, "(BODYSTRUCTURE BODY RFC822.SIZE)")))
    a = next(iter(got.values()))
    check(int(a["RFC822.SIZE"]) == len(MULTIPART), f"RFC822.SIZE: {a['RFC822.SIZE']!r}")
    bs = a["BODYSTRUCTURE"]
    # (part1 part2 part3 "mixed" ("boundary" "XX") dsp lang loc)
    check(len(bs) >= 5 and all(isinstance(p, list) for p in bs[:3]), f"BODYSTRUCTURE: {bs!r}")
    check(bs[3].lower() == b"mixed", f"multipart subtype: {bs!r}")
    check([x.lower() for x in bs[4]] == [b"boundary", b"xx"], f"multipart parameters: {bs[4]!r}")
    p1, p2, p3 = bs[:3]
    check([x.lower() for x in p1[:2]] == [b"text", b"plain"], f"part 1: {p1!r}")
    check([x.lower() for x in p1[2]] == [b"charset", b"utf-8"], f"part 1 parameters: {p1!r}")
    check(p1[5].upper() == b"8BIT" and int(p1[6]) == 14 and int(p1[7]) == 1, f"part 1 fields: {p1!r}")
    check([x.lower() for x in p2[:2]] == [b"application", b"octet-stream"], f"part 2: {p2!r}")
    check(p2[5].upper() == b"BASE64" and int(p2[6]) == 16, f"part 2 fields: {p2!r}")
    check(p2[8][0].lower() == b"attachment" and [x.lower() for x in p2[8][1]] == [b"filename", b"a.bin"], f"part 2 disposition: {p2!r}")
    check([x.lower() for x in p3[:2]] == [b"message", b"rfc822"], f"part 3: {p3!r}")
    inner_size = len(b"From: Gina <g@remote.test>\r\nSubject: inner\r\nMessage-ID: <inner@remote.test>\r\n\r\nInner body.\r\nSecond line.")
    check(int(p3[6]) == inner_size, f"part 3 size: {p3!r}")
    env = p3[7]
    check(env[1] == b"inner" and env[9] == b"<inner@remote.test>", f"part 3 envelope: {env!r}")
    check(env[2][0][2:] == [b"g", b"remote.test"], f"part 3 envelope from: {env!r}")
    check([x.lower() for x in p3[8][:2]] == [b"text", b"plain"], f"part 3 body: {p3[8]!r}")
    body = a["BODY"]
    check(body[3].lower() == b"mixed" and len(body) == 4, f"BODY (no extension data): {body!r}")
    check(len(body[0]) == 8 and len(body[1]) == 7, f"BODY parts without extension data: {body!r}")
    print("ok: bodystructure and body of a multipart message")

    items = (
        "(BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2] BODY.PEEK[2.MIME] BINARY.PEEK[2] BINARY.SIZE[2] "
        "BODY.PEEK[3.HEADER] BODY.PEEK[3.TEXT] BODY.PEEK[]<0.10> BODY.PEEK[TEXT]<0.8> "
        "BODY.PEEK[HEADER.FIELDS.NOT (FROM TO DATE SUBJECT MIME-VERSION CONTENT-TYPE)])"
    )
    got = parse_fetch(ok("UID FETCH", m.uid("FETCH", uid, items)))
    a = next(iter(got.values()))
    want = {
        "BODY[1]": b"Caf\xc3\xa9 au lait.",
        "BODY[1.MIME]": b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        "BODY[2]": b"AAECAwQFBgcICQ==",
        "BINARY[2]": bytes(range(10)),
        "BINARY.SIZE[2]": b"10",
        "BODY[3.HEADER]": b"From: Gina <g@remote.test>\r\nSubject: inner\r\nMessage-ID: <inner@remote.test>\r\n\r\n",
        "BODY[3.TEXT]": b"Inner body.\r\nSecond line.",
        "BODY[]<0>": b"From: Fran",
        "BODY[TEXT]<0>": b"preamble",
        "BODY[HEADER.FIELDS.NOT (FROM TO DATE SUBJECT MIME-VERSION CONTENT-TYPE)]": b"Message-ID: <multipart@remote.test>\r\n\r\n",
    }
    for k, v in want.items():
        check(k in a, f"no {k} in FETCH reply: {sorted(a)!r}")
        check(a[k] == v, f"{k}: expected {v!r}, got {a[k]!r}")
    check(a["BODY[2.MIME]"].startswith(b"Content-Type: application/octet-stream"), f"BODY[2.MIME]: {a['BODY[2.MIME]']!r}")
    print("ok: body sections, partial fetch, binary")

    # SEARCH with CHARSET UTF-8 and a literal (imaplib waits for the continuation).
    m.literal = "café".encode()
    check(uids_of(ok("SEARCH", m.uid("SEARCH", "CHARSET", "UTF-8", "SUBJECT"))) == [int(uid)], "SEARCH SUBJECT café")
    m.literal = "Café au".encode()
    check(uids_of(ok("SEARCH", m.uid("SEARCH", "CHARSET", "UTF-8", "BODY"))) == [int(uid)], "SEARCH BODY Café")
    m.literal = "thé".encode()
    check(uids_of(ok("SEARCH", m.uid("SEARCH", "CHARSET", "UTF-8", "TEXT"))) == [], "SEARCH TEXT thé")
    print("ok: search with a UTF-8 literal")
    m.logout()


def cmd_utf8(args):
    """Internationalized headers and mailbox names, with and without UTF8=ACCEPT
    (RFC 6855). INBOX must hold one message whose Subject: is raw UTF-8
    ("Grüße aus Köln") and whose Message-ID is <utf8@remote.test>."""
    subject = "Grüße aus Köln".encode()

    def envelope_subject(m):
        ok("SELECT", m.select("INBOX"))
        uids = uids_of(ok("SEARCH", m.uid("SEARCH", None, "HEADER", "Message-ID", '"<utf8@remote.test>"')))
        check(len(uids) == 1, f"the UTF-8 message: {uids!r}")
        m.literal = "Köln".encode()
        found = uids_of(ok("SEARCH", m.uid("SEARCH", "CHARSET", "UTF-8", "SUBJECT")))
        check(found == uids, f"SEARCH CHARSET UTF-8 SUBJECT Köln: {found!r}")
        got = parse_fetch(ok("FETCH", m.uid("FETCH", str(uids[0]), "(ENVELOPE)")))
        env = next(iter(got.values()))["ENVELOPE"]
        m.close()
        return env

    # A plain IMAP4rev1 client: 8-bit strings come as literals (RFC 3501 quoted
    # strings are 7-bit), mailbox names in modified UTF-7.
    m = login(args)
    env = envelope_subject(m)
    check(env[1] == subject, f"ENVELOPE subject: {env[1]!r}")
    check(env[2][0][0] == "Jürgen".encode(), f"ENVELOPE from: {env[2]!r}")
    print("ok: 8-bit header fields without UTF8=ACCEPT")

    # UTF8=ACCEPT: imaplib then sends and expects UTF-8 mailbox names.
    u = login(args)
    typ, dat = u.enable("UTF8=ACCEPT")
    check(typ == "OK" and u.utf8_enabled, f"ENABLE UTF8=ACCEPT: {typ} {dat!r}")
    env = envelope_subject(u)
    check(env[1] == subject, f"ENVELOPE subject with UTF8=ACCEPT: {env[1]!r}")
    ok("CREATE", u.create(quote("Résumé")))
    names = [name for _, _, name in parse_list(ok("LIST", u.list('""', "R*")))]
    check(names == ["Résumé"], f"LIST with UTF8=ACCEPT: {names!r}")
    ok("SELECT", u.select(quote("Résumé")))
    ok("CLOSE", u.close())
    names = [name for _, _, name in parse_list(ok("LIST", m.list('""', "R*")))]
    check(names == ["R&AOk-sum&AOk-"], f"LIST without UTF8=ACCEPT: {names!r}")
    ok("SELECT", m.select("R&AOk-sum&AOk-"))
    ok("CLOSE", m.close())
    ok("DELETE", u.delete(quote("Résumé")))
    names = [name for _, _, name in parse_list(ok("LIST", m.list('""', "R*")))]
    check(names == [], f"LIST after DELETE: {names!r}")
    print("ok: UTF8=ACCEPT mailbox names")
    u.logout()
    m.logout()


def cmd_cleartext_refused(args):
    check(args.mode == "plain", "cleartext-refused is for --mode plain")
    m = connect(args)
    caps = set(m.capabilities)
    check({"STARTTLS", "LOGINDISABLED"} <= caps, f"CAPABILITY: {caps!r}")
    check(not any(c.startswith("AUTH=") for c in caps), f"AUTH= on cleartext: {caps!r}")
    print(f"ok: capabilities {' '.join(sorted(caps))}")
    try:
        m.login(args.user, args.password)
    except imaplib.IMAP4.error as e:
        check("PRIVACYREQUIRED" in err_text(e), f"LOGIN refusal: {e}")
        print(f"ok: login refused: {err_text(e)}")
    else:
        fail("LOGIN accepted on cleartext")
    try:
        m.authenticate("PLAIN", lambda _: f"\0{args.user}\0{args.password}".encode())
    except imaplib.IMAP4.error as e:
        check("PRIVACYREQUIRED" in err_text(e), f"AUTHENTICATE refusal: {e}")
        print(f"ok: authenticate refused: {err_text(e)}")
    else:
        fail("AUTHENTICATE PLAIN accepted on cleartext")
    # SELECT is illegal before login: imaplib refuses to send it, so send it raw.
    tag = m._new_tag()
    m.send(tag + b" SELECT INBOX\r\n")
    line = m.readline()
    check(line.startswith(tag + b" BAD") or line.startswith(tag + b" NO"), f"SELECT before login: {line!r}")
    print(f"ok: select before login: {line.strip().decode()}")
    ok("STARTTLS", m.starttls(ssl_context=ssl.create_default_context(cafile=args.cert)))
    ok("LOGIN", m.login(args.user, args.password))
    print("ok: login after starttls")
    m.logout()


def cmd_refused(args):
    m = connect(args)
    try:
        typ, dat = m.login(args.user, args.password)
    except imaplib.IMAP4.error as e:
        text = err_text(e)
    else:
        fail(f"LOGIN accepted: {typ} {dat!r}")
    check(f"[{args.code}]" in text, f"LOGIN refusal lacks [{args.code}]: {text}")
    if args.text:
        check(args.text in text, f"LOGIN refusal lacks {args.text!r}: {text}")
    print(f"refused: NO {text}")
    check(m.state == "NONAUTH", f"state: {m.state}")
    m.logout()
    m = connect(args)
    try:
        typ, dat = m.authenticate("PLAIN", lambda _: f"\0{args.user}\0{args.password}".encode())
    except imaplib.IMAP4.error as e:
        text = err_text(e)
    else:
        fail(f"AUTHENTICATE accepted: {typ} {dat!r}")
    check(f"[{args.code}]" in text, f"AUTHENTICATE refusal lacks [{args.code}]: {text}")
    print(f"authenticate refused: NO {text}")
    m.logout()


def cmd_authenticate(args):
    m = connect(args)
    typ, dat = m.authenticate("PLAIN", lambda _: f"\0{args.user}\0{args.password}".encode())
    check(typ == "OK" and m.state == "AUTH", f"AUTHENTICATE PLAIN: {typ} {dat!r}")
    print("ok: authenticate plain")
    dat = ok("SELECT", m.select("INBOX"))
    print(f"exists: {int(dat[0])}")
    m.logout()


def mailboxes(m):
    return sorted(name for _, _, name in parse_list(ok("LIST", m.list('""', "*"))))


def cmd_dump(args):
    m = login(args)
    for name in mailboxes(m):
        dat = ok(f"EXAMINE {name}", m.select(quote(name), readonly=True))
        count = int(dat[0])
        print(f"mailbox: {name} count={count}")
        if count == 0:
            continue
        got = parse_fetch(ok("FETCH", m.fetch("1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")))
        check(sorted(got) == list(range(1, count + 1)), f"FETCH 1:* in {name}: {sorted(got)!r}")
        for seq in sorted(got):
            a = got[seq]
            hdr = next(v for k, v in a.items() if k.startswith("BODY[HEADER.FIELDS"))
            mid = hdr.decode().partition(":")[2].strip()
            print(f"msg {name}|{int(a['UID'])}|{' '.join(flags_of(a['FLAGS']))}|{mid}")
    m.logout()


def cmd_fetch_uid(args):
    m = login(args)
    ok("EXAMINE", m.select(quote(args.mailbox), readonly=True))
    got = parse_fetch(ok("UID FETCH", m.uid("FETCH", str(args.uid), "(FLAGS BODY.PEEK[])")))
    check(len(got) == 1, f"UID FETCH {args.uid}: {got!r}")
    a = next(iter(got.values()))
    with open(args.out, "wb") as f:
        f.write(a["BODY[]"])
    print(f"flags: {' '.join(flags_of(a['FLAGS']))}")
    m.logout()


def cmd_modify(args):
    m = login(args)
    ok("SELECT", m.select("INBOX"))

    def uid_of(mid):
        uids = uids_of(ok("UID SEARCH", m.uid("SEARCH", None, "HEADER", "Message-ID", quote(mid))))
        check(len(uids) == 1, f"Message-ID {mid}: UIDs {uids!r}")
        return str(uids[0])

    for mid in args.flag:
        ok("UID STORE", m.uid("STORE", uid_of(mid), "+FLAGS", "(\\Flagged)"))
        print(f"ok: flagged {mid}")
    for mid in args.answer:
        ok("UID STORE", m.uid("STORE", uid_of(mid), "+FLAGS", "(\\Answered)"))
        print(f"ok: answered {mid}")
    for mid in args.delete:
        ok("UID STORE", m.uid("STORE", uid_of(mid), "+FLAGS", "(\\Deleted)"))
        print(f"ok: deleted {mid}")
    if args.delete:
        ok("EXPUNGE", m.expunge())
    m.logout()


def cmd_default_folders(args):
    m = login(args)
    defaults = {"Drafts": "\\Drafts", "Sent Items": "\\Sent", "Deleted Items": "\\Trash",
                "Junk Email": "\\Junk", "Archive": "\\Archive"}
    for name in ["INBOX", *defaults]:
        try:
            typ, dat = m.delete(quote(name))
        except imaplib.IMAP4.error as e:
            text = err_text(e)
        else:
            check(typ == "NO", f"DELETE {name}: {typ} {dat!r}")
            text = dat[0].decode()
        check("[CANNOT]" in text, f"DELETE {name} refusal lacks [CANNOT]: {text}")
        print(f"ok: delete {name} refused: {text}")
    for name in defaults:
        typ, dat = m.rename(quote(name), quote(name + " renamed"))
        check(typ == "NO" and b"[CANNOT]" in dat[0], f"RENAME {name}: {typ} {dat!r}")
        print(f"ok: rename {name} refused")
    listed = {name: flags for flags, _, name in parse_list(ok("LIST", m.list('""', "*")))}
    for name, attr in defaults.items():
        check(name in listed and attr in listed[name], f"{name} {attr} after: {listed!r}")
        check(name + " renamed" not in listed, f"{name} renamed after all: {listed!r}")
    ok("CREATE", m.create("Projects"))
    ok("DELETE", m.delete("Projects"))
    check("Projects" not in mailboxes(m), "Projects still listed")
    print("ok: a folder of the client's own is deleted")
    m.logout()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "command",
        choices=["session", "mime", "utf8", "cleartext-refused", "refused", "authenticate", "dump", "fetch-uid", "modify",
                 "default-folders"],
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["stls", "ssl", "plain"], required=True)
    p.add_argument("--cert")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--expect", action="append", default=[])
    p.add_argument("--code")
    p.add_argument("--text")
    p.add_argument("--mailbox", default="INBOX")
    p.add_argument("--uid", type=int)
    p.add_argument("--out")
    p.add_argument("--flag", action="append", default=[])
    p.add_argument("--answer", action="append", default=[])
    p.add_argument("--delete", action="append", default=[])
    args = p.parse_args()
    if args.mode != "plain" and not args.cert:
        p.error("--cert is needed for TLS")
    {
        "session": cmd_session,
        "mime": cmd_mime,
        "utf8": cmd_utf8,
        "cleartext-refused": cmd_cleartext_refused,
        "refused": cmd_refused,
        "authenticate": cmd_authenticate,
        "dump": cmd_dump,
        "fetch-uid": cmd_fetch_uid,
        "modify": cmd_modify,
        "default-folders": cmd_default_folders,
    }[args.command](args)
    print("PASS")


if __name__ == "__main__":
    try:
        main()
    except (imaplib.IMAP4.error, OSError, ssl.SSLError, EOFError) as e:
        print(f"FAIL: {type(e).__name__}: {e!r}", file=sys.stderr)
        sys.exit(1)
