#!/usr/bin/env python3
"""SORT and THREAD (RFC 5256) driven by Python's imaplib (standard library only).

Used by crates/casella/tests/imap_sort.rs. Logs in over implicit TLS, selects
the given mailbox, and prints one line per answer, as imaplib parsed it:

  capability: SORT THREAD=REFERENCES ...   (the sort/thread words, in order)
  sort SUBJECT: 3 4 5 1 2
  thread REFERENCES: (1 (6)(2 3))(4 5)(7)

usage: imap_sort_check.py --port P --cert CAFILE --user U --password PW
       --mailbox NAME (--sort CRITERIA | --thread ALGORITHM | --uid-sort CRITERIA)...
Exit status 0 when every command answered OK.
"""

import argparse
import imaplib
import ssl
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--mailbox", default="INBOX")
    p.add_argument("--sort", action="append", default=[])
    p.add_argument("--uid-sort", action="append", default=[])
    p.add_argument("--thread", action="append", default=[])
    a = p.parse_args()

    ctx = ssl.create_default_context(cafile=a.cert)
    ctx.check_hostname = False
    with imaplib.IMAP4_SSL(a.host, a.port, ssl_context=ctx, timeout=30) as m:
        m.login(a.user, a.password)
        typ, dat = m.capability()
        if typ != "OK":
            sys.exit("capability failed: %s" % typ)
        words = [c for c in dat[0].decode().split() if c.startswith(("SORT", "THREAD", "ESORT", "WITHIN"))]
        print("capability: " + " ".join(words))
        typ, _ = m.select(a.mailbox)
        if typ != "OK":
            sys.exit("select failed: %s" % typ)
        for crit in a.sort:
            typ, data = m.sort("(%s)" % crit, "UTF-8", "ALL")
            if typ != "OK":
                sys.exit("sort %s: %s %r" % (crit, typ, data))
            print("sort %s: %s" % (crit, data[0].decode()))
        for crit in a.uid_sort:
            typ, data = m.uid("SORT", "(%s)" % crit, "UTF-8", "ALL")
            if typ != "OK":
                sys.exit("uid sort %s: %s %r" % (crit, typ, data))
            print("uid sort %s: %s" % (crit, data[0].decode()))
        for alg in a.thread:
            typ, data = m.thread(alg, "UTF-8", "ALL")
            if typ != "OK":
                sys.exit("thread %s: %s %r" % (alg, typ, data))
            print("thread %s: %s" % (alg, data[0].decode()))
        m.logout()
    print("PASS")


if __name__ == "__main__":
    main()
