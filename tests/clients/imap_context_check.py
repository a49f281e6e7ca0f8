#!/usr/bin/env python3
"""CONTEXT=SEARCH updates and PARTIAL (RFC 5267, RFC 9394) driven by Python's
imaplib (standard library only). Used by crates/casella/tests/imap_context.rs.

Logs in twice over implicit TLS. The first connection starts an updating
UID SEARCH of UNSEEN messages; the second marks UID 1 \\Seen and appends an
unseen message; the first then sends NOOP and prints the ESEARCH updates as
imaplib kept them. Then PARTIAL: a UID SEARCH of the last two messages and a
UID FETCH with the PARTIAL modifier. Finally CANCELUPDATE ends the updates.

  capability: CONTEXT=SEARCH CONTEXT=SORT PARTIAL
  started: (TAG "...") UID
  update: (TAG "...") UID REMOVEFROM (0 1) ADDTO (0 5)
  partial: (TAG "...") UID PARTIAL (-1:-2 4:5)
  fetch partial: 4 5
  cancelled: OK
  after cancel: none
  PASS

usage: imap_context_check.py --port P --cert CAFILE --user U --password PW
"""

import argparse
import imaplib
import re
import ssl
import sys

# imaplib refuses commands it does not know; CANCELUPDATE is valid when a
# mailbox is selected (RFC 5267 §4.3.5).
imaplib.Commands.setdefault("CANCELUPDATE", ("SELECTED",))


def connect(a):
    ctx = ssl.create_default_context(cafile=a.cert)
    ctx.check_hostname = False
    m = imaplib.IMAP4_SSL(a.host, a.port, ssl_context=ctx, timeout=30)
    m.login(a.user, a.password)
    typ, _ = m.select("INBOX")
    if typ != "OK":
        sys.exit("select failed: %s" % typ)
    return m


def check(typ, data, what):
    if typ != "OK":
        sys.exit("%s: %s %r" % (what, typ, data))
    return data


def esearch(m):
    """The ESEARCH responses imaplib kept since last asked, as text."""
    _, data = m.response("ESEARCH")
    return [d.decode() for d in data if d is not None]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    a = p.parse_args()

    first = connect(a)
    caps = check(*first.capability(), "capability")[0].decode().split()
    print("capability: " + " ".join(c for c in caps if c.startswith(("CONTEXT=", "PARTIAL"))))

    check(*first.uid("SEARCH", "RETURN (UPDATE) UNSEEN"), "updating search")
    started = esearch(first)
    print("started: " + " | ".join(started))
    tag = re.match(r'\(TAG "([^"]+)"\)', started[0]).group(1)

    second = connect(a)
    check(*second.uid("STORE", "1", "+FLAGS", "(\\Seen)"), "store")
    check(*second.append("INBOX", None, None, b"Subject: fifth\r\n\r\nfive\r\n"), "append")
    second.logout()

    check(*first.noop(), "noop")
    print("update: " + " | ".join(esearch(first)))

    check(*first.uid("SEARCH", "RETURN (PARTIAL -1:-2) ALL"), "partial search")
    print("partial: " + " | ".join(esearch(first)))
    first.response("FETCH")  # the flag changes NOOP reported
    data = check(*first.uid("FETCH", "1:*", "(FLAGS)", "(PARTIAL -1:-2)"), "partial fetch")
    uids = [re.search(rb"UID (\d+)", d).group(1).decode() for d in data if d]
    print("fetch partial: " + " ".join(uids))

    typ, _ = first._simple_command("CANCELUPDATE", '"%s"' % tag)
    print("cancelled: " + typ)
    check(*first.uid("STORE", "2", "+FLAGS", "(\\Seen)"), "store after cancel")
    check(*first.noop(), "noop after cancel")
    print("after cancel: " + (" | ".join(esearch(first)) or "none"))
    first.logout()
    print("PASS")


if __name__ == "__main__":
    main()
