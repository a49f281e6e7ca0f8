#!/usr/bin/env python3
"""Shows what a real client sees of a mailbox, as JSON on stdout, with Python's
poplib and imaplib (standard library only). The Rust tests assert on the JSON.

Common options: --host, --user, --password, --cert CAFILE (implicit TLS is used:
POP3 over --pop-port, IMAP over --imap-port), --timeout.

Subcommands:
  pop [--dele N ...]
      Logs in over POP3; prints {"stat": [n, size], "list": [[i, size]...],
      "uidl": [[i, uid]...], "messages": ["text of RETR i"...]}; then DELEs the
      given message numbers and QUITs.
  imap [--mailbox NAME]
      Logs in over IMAP; prints {"folders": [names from LIST "" "*"],
      "messages": [{"uid", "flags", "size", "bodystructure", "body"}...]} for the
      mailbox (INBOX by default), read with BODY.PEEK so nothing changes.
"""

import argparse
import imaplib
import json
import poplib
import re
import ssl
import sys


def context(args):
    return ssl.create_default_context(cafile=args.cert)


def pop(args):
    conn = poplib.POP3_SSL(args.host, args.pop_port, timeout=args.timeout, context=context(args))
    conn.user(args.user)
    conn.pass_(args.password)
    n, size = conn.stat()
    out = {"stat": [n, size], "list": [], "uidl": [], "messages": []}
    _, lines, _ = conn.list()
    for line in lines:
        i, s = line.decode().split()
        out["list"].append([int(i), int(s)])
    _, lines, _ = conn.uidl()
    for line in lines:
        i, u = line.decode().split()
        out["uidl"].append([int(i), u])
    for i in range(1, n + 1):
        _, lines, _ = conn.retr(i)
        out["messages"].append(b"\r\n".join(lines).decode("utf-8", "replace"))
    for i in args.dele or []:
        resp = conn.dele(i)
        if not resp.startswith(b"+OK"):
            raise SystemExit(f"FAIL: DELE {i}: {resp!r}")
    resp = conn.quit()
    if not resp.startswith(b"+OK"):
        raise SystemExit(f"FAIL: QUIT: {resp!r}")
    json.dump(out, sys.stdout)


def imap(args):
    conn = imaplib.IMAP4_SSL(args.host, args.imap_port, ssl_context=context(args), timeout=args.timeout)
    conn.login(args.user, args.password)
    typ, data = conn.list('""', "*")
    if typ != "OK":
        raise SystemExit(f"FAIL: LIST: {data!r}")
    folders = []
    for line in data:
        m = re.match(rb'\((.*?)\) "(.*?)" (.*)$', line)
        name = m.group(3).decode()
        if name.startswith('"'):
            name = name[1:-1]
        folders.append(name)
    out = {"folders": folders, "messages": []}
    typ, data = conn.select(f'"{args.mailbox}"', readonly=True)
    if typ != "OK":
        raise SystemExit(f"FAIL: SELECT: {data!r}")
    if int(data[0]) > 0:
        typ, data = conn.fetch("1:*", "(UID FLAGS RFC822.SIZE BODYSTRUCTURE BODY.PEEK[])")
        if typ != "OK":
            raise SystemExit(f"FAIL: FETCH: {data!r}")
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta, body = item
            meta = meta.decode()
            out["messages"].append(
                {
                    "uid": int(re.search(r"UID (\d+)", meta).group(1)),
                    "flags": re.search(r"FLAGS \((.*?)\)", meta).group(1).split(),
                    "size": int(re.search(r"RFC822\.SIZE (\d+)", meta).group(1)),
                    "bodystructure": meta[meta.index("BODYSTRUCTURE ") :],
                    "body": body.decode("utf-8", "replace"),
                }
            )
    conn.logout()
    json.dump(out, sys.stdout)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["pop", "imap"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--pop-port", type=int)
    p.add_argument("--imap-port", type=int)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--dele", type=int, action="append")
    p.add_argument("--mailbox", default="INBOX")
    args = p.parse_args()
    {"pop": pop, "imap": imap}[args.command](args)


if __name__ == "__main__":
    main()
