#!/usr/bin/env python3
"""Drives a POP3 server with Python's poplib (standard library only).

Used by crates/casella/tests/real_clients.rs. Every check that fails raises with a
message naming what was expected and what came back; the exit status is 0 only when
every check passed. Progress goes to stdout as "ok: ..." lines.

Subcommands (all take --host, --port, --user, --password, --timeout, and
--mode stls|ssl|plain with --cert CAFILE for the TLS modes):

  session --expect FILE [--expect FILE ...]
      Logs in; STAT, LIST, UIDL, RETR and TOP every message and compares them with
      the given files (the exact bytes that were delivered, in order); DELE 1 and
      QUIT; then a second session must see the first message gone.
  wrong-password
      PASS with a wrong password must fail with a "-ERR [AUTH]" reply.
  cleartext-refused
      Without STLS, USER must be refused with a reply that names STLS.
  count
      Logs in and prints "count: N".
  find --header NAME: --header NAME: ...
      Logs in, prints "count: N", and for every message prints the header fields
      (unfolded) that start with one of the given names, as "msg I: FIELD".
"""

import argparse
import poplib
import ssl
import sys


def fail(msg):
    raise SystemExit(f"FAIL: {msg}")


def check(cond, msg):
    if not cond:
        fail(msg)


def connect(args):
    if args.mode == "ssl":
        ctx = ssl.create_default_context(cafile=args.cert)
        conn = poplib.POP3_SSL(args.host, args.port, timeout=args.timeout, context=ctx)
    else:
        conn = poplib.POP3(args.host, args.port, timeout=args.timeout)
        if args.mode == "stls":
            ctx = ssl.create_default_context(cafile=args.cert)
            resp = conn.stls(context=ctx)
            check(resp.startswith(b"+OK"), f"STLS reply: {resp!r}")
            check(isinstance(conn.sock, ssl.SSLSocket), "socket is not TLS after STLS")
    greeting = conn.getwelcome()
    check(greeting.startswith(b"+OK"), f"greeting: {greeting!r}")
    return conn


def login(args):
    conn = connect(args)
    resp = conn.user(args.user)
    check(resp.startswith(b"+OK"), f"USER reply: {resp!r}")
    resp = conn.pass_(args.password)
    check(resp.startswith(b"+OK"), f"PASS reply: {resp!r}")
    return conn


def cmd_session(args):
    expected = []
    for path in args.expect:
        with open(path, "rb") as f:
            expected.append(f.read())
    n = len(expected)

    conn = login(args)
    print("ok: logged in")
    count, size = conn.stat()
    check(count == n, f"STAT count: expected {n}, got {count}")
    total = sum(len(m) for m in expected)
    check(size == total, f"STAT size: expected {total}, got {size}")
    print(f"ok: stat {count} {size}")

    resp, listing, _ = conn.list()
    check(resp.startswith(b"+OK"), f"LIST reply: {resp!r}")
    want = [f"{i + 1} {len(m)}".encode() for i, m in enumerate(expected)]
    check(listing == want, f"LIST: expected {want!r}, got {listing!r}")
    print("ok: list")

    resp, uidls, _ = conn.uidl()
    check(resp.startswith(b"+OK"), f"UIDL reply: {resp!r}")
    check(len(uidls) == n, f"UIDL: expected {n} lines, got {uidls!r}")
    uids = []
    for i, line in enumerate(uidls):
        num, uid = line.split(b" ", 1)
        check(num == str(i + 1).encode(), f"UIDL numbering: {uidls!r}")
        check(0 < len(uid) <= 70 and all(0x21 <= c <= 0x7E for c in uid), f"UIDL uid: {uid!r}")
        uids.append(uid)
    check(len(set(uids)) == n, f"UIDL not unique: {uids!r}")
    one = conn.uidl(1)
    check(one == b"+OK 1 " + uids[0], f"UIDL 1: {one!r}")
    print("ok: uidl")

    for i, msg in enumerate(expected):
        resp, lines, octets = conn.retr(i + 1)
        check(resp.startswith(b"+OK"), f"RETR {i + 1} reply: {resp!r}")
        # poplib strips CRLF and undoes dot-stuffing; put the line ends back.
        got = b"".join(line + b"\r\n" for line in lines)
        check(got == msg, f"RETR {i + 1} bytes differ:\n expected {msg!r}\n got      {got!r}")
        print(f"ok: retr {i + 1} ({len(got)} bytes)")

    head, _, body = expected[0].partition(b"\r\n\r\n")
    resp, lines, _ = conn.top(1, 0)
    check(resp.startswith(b"+OK"), f"TOP reply: {resp!r}")
    want_top = head.split(b"\r\n") + [b""]
    check(lines == want_top, f"TOP 1 0: expected {want_top!r}, got {lines!r}")
    resp, lines, _ = conn.top(1, 1)
    first_body_line = body.split(b"\r\n")[0]
    check(lines == want_top + [first_body_line], f"TOP 1 1: got {lines!r}")
    print("ok: top")

    resp = conn.dele(1)
    check(resp.startswith(b"+OK"), f"DELE reply: {resp!r}")
    resp = conn.quit()
    check(resp.startswith(b"+OK"), f"QUIT reply: {resp!r}")
    print("ok: dele+quit")

    conn = login(args)
    count, size = conn.stat()
    check(count == n - 1, f"after DELE+QUIT: expected {n - 1} messages, got {count}")
    check(size == total - len(expected[0]), f"after DELE+QUIT: size {size}")
    resp, uidls, _ = conn.uidl()
    rest = [u.split(b" ", 1)[1] for u in uidls]
    check(rest == uids[1:], f"after DELE+QUIT: uids {rest!r}, expected {uids[1:]!r}")
    if n > 1:
        _, lines, _ = conn.retr(1)
        got = b"".join(line + b"\r\n" for line in lines)
        check(got == expected[1], f"after DELE+QUIT message 1 is not the old message 2: {got!r}")
    conn.quit()
    print(f"ok: new session sees {count} messages")


def cmd_wrong_password(args):
    conn = connect(args)
    conn.user(args.user)
    try:
        resp = conn.pass_(args.password)
    except poplib.error_proto as e:
        reply = e.args[0]
        check(isinstance(reply, bytes), f"error_proto argument: {reply!r}")
        check(reply.startswith(b"-ERR [AUTH]"), f"wrong password reply: {reply!r}")
        print(f"ok: refused: {reply.decode(errors='replace')}")
    else:
        fail(f"wrong password was accepted: {resp!r}")
    # The session goes on: a new USER/PASS attempt is possible, then QUIT.
    conn.quit()


def cmd_cleartext_refused(args):
    conn = connect(args)
    caps = conn.capa()
    check("STLS" in caps, f"CAPA does not offer STLS: {caps!r}")
    check("USER" not in caps, f"CAPA offers USER on cleartext: {caps!r}")
    try:
        resp = conn.user(args.user)
    except poplib.error_proto as e:
        reply = e.args[0]
        check(reply.startswith(b"-ERR"), f"reply: {reply!r}")
        check(b"STLS" in reply, f"refusal does not mention STLS: {reply!r}")
        print(f"ok: refused: {reply.decode(errors='replace')}")
    else:
        fail(f"USER accepted on cleartext: {resp!r}")
    try:
        resp = conn.pass_(args.password)
    except poplib.error_proto as e:
        print(f"ok: PASS refused: {e.args[0].decode(errors='replace')}")
    else:
        fail(f"PASS accepted on cleartext: {resp!r}")
    conn.quit()


def cmd_count(args):
    conn = login(args)
    count, _ = conn.stat()
    conn.quit()
    print(f"count: {count}")


def cmd_find(args):
    conn = login(args)
    count, _ = conn.stat()
    print(f"count: {count}")
    names = [h.lower().encode() for h in args.header]
    for i in range(1, count + 1):
        _, lines, _ = conn.retr(i)
        # Unfold the header (RFC 5322 section 2.2.3), one field per entry.
        fields = []
        for line in lines:
            if line == b"":
                break
            if line[:1] in (b" ", b"\t") and fields:
                fields[-1] += b" " + line.strip()
            else:
                fields.append(line)
        for field in fields:
            if any(field.lower().startswith(n) for n in names):
                print(f"msg {i}: {field.decode(errors='replace')}")
    conn.quit()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["session", "wrong-password", "cleartext-refused", "count", "find"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["stls", "ssl", "plain"], required=True)
    p.add_argument("--cert")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--expect", action="append", default=[])
    p.add_argument("--header", action="append", default=[])
    args = p.parse_args()
    if args.mode != "plain" and not args.cert:
        p.error("--cert is needed for TLS")
    {
        "session": cmd_session,
        "wrong-password": cmd_wrong_password,
        "cleartext-refused": cmd_cleartext_refused,
        "count": cmd_count,
        "find": cmd_find,
    }[args.command](args)
    print("PASS")


if __name__ == "__main__":
    try:
        main()
    except (poplib.error_proto, OSError, ssl.SSLError) as e:
        print(f"FAIL: {type(e).__name__}: {e!r}", file=sys.stderr)
        sys.exit(1)
