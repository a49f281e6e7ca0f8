#!/usr/bin/env python3
"""Quotas (RFC 9208 and Exchange's three levels) seen through Python's own
imaplib and smtplib. Prints JSON.

Usage: quota_check.py STEP HOST IMAPS SMTP SUBMISSION CAFILE USER PASSWORD

STEP "fill": GETQUOTAROOT before; two APPENDs and two deliveries over SMTP;
  the quota, the sum of the messages' sizes and the INBOX subjects after.
STEP "limits": a submission (must be refused), an APPEND and a COPY that
  would pass the hard limit (OVERQUOTA), a MOVE (allowed).
STEP "receive": one delivery over SMTP (refused when the mailbox is full).
STEP "expunge": INBOX emptied; the quota and the sum of sizes after.
"""

import imaplib
import json
import re
import smtplib
import ssl
import sys

step, host, imaps, smtp_port, submission, cafile, user, password = sys.argv[1:9]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False


def imap():
    conn = imaplib.IMAP4_SSL(host, int(imaps), ssl_context=ctx, timeout=20)
    conn.login(user, password)
    return conn


def message(subject, size):
    body = ("x" * 70 + "\r\n") * (size // 72)
    return (
        "From: a@example.org\r\nTo: %s\r\nSubject: %s\r\n\r\n%s" % (user, subject, body)
    ).encode()


def quota(conn):
    typ, data = conn.getquota('""')
    if typ != "OK":
        return None
    m = re.search(rb"STORAGE (\d+) (\d+)", data[0])
    return {"used_kib": int(m.group(1)), "limit_kib": int(m.group(2))}


def sizes(conn):
    """The sum of RFC822.SIZE over every mailbox, and the message count."""
    total, count = 0, 0
    typ, boxes = conn.list()
    for line in boxes:
        name = line.decode().rsplit(' "/" ', 1)[1]
        typ, _ = conn.select(name, readonly=True)
        typ, data = conn.fetch("1:*", "(RFC822.SIZE)")
        for d in data:
            if d:
                total += int(re.search(rb"RFC822.SIZE (\d+)", d).group(1))
                count += 1
    return total, count


def subjects(conn):
    conn.select("INBOX", readonly=True)
    typ, data = conn.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    return [
        d[1].decode().split(":", 1)[1].strip() for d in data if isinstance(d, tuple)
    ]


def deliver(subject, size):
    with smtplib.SMTP(host, int(smtp_port), timeout=20) as s:
        s.ehlo("client.example")
        try:
            s.sendmail("a@example.org", [user], message(subject, size))
            return 250
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients[user]
            return [code, text.decode()]


out = {}
if step == "fill":
    conn = imap()
    typ, data = conn.getquotaroot("INBOX")
    out["root"] = [d.decode() if isinstance(d, bytes) else str(d) for d in data[0] + data[1]]
    out["before"] = quota(conn)
    for i in range(2):
        typ, data = conn.append("INBOX", None, None, message("appended %d" % i, 1100))
        assert typ == "OK", data
    out["deliveries"] = [deliver("delivered %d" % i, 1100) for i in range(2)]
    out["after"] = quota(conn)
    out["sum"], out["count"] = sizes(conn)
    out["subjects"] = subjects(conn)
    conn.logout()
elif step == "limits":
    with smtplib.SMTP(host, int(submission), timeout=20) as s:
        s.starttls(context=ctx)
        s.login(user, password)
        try:
            s.sendmail(user, ["someone@example.net"], message("out", 200))
            out["submission"] = 250
        except smtplib.SMTPSenderRefused as e:
            out["submission"] = [e.smtp_code, e.smtp_error.decode()]
    conn = imap()
    try:
        typ, data = conn.append("INBOX", None, None, message("too big", 4000))
        out["append"] = [typ, data[0].decode()]
    except imaplib.IMAP4.error as e:
        out["append"] = ["NO", str(e)]
    conn.select("INBOX")
    typ, data = conn.copy("1:*", "Archive")
    out["copy"] = [typ, data[0].decode()]
    typ, data = conn._simple_command("MOVE", "1", '"Deleted Items"')
    out["move"] = typ
    conn.logout()
elif step == "receive":
    out["delivery"] = deliver("refused", 500)
elif step == "expunge":
    conn = imap()
    conn.select("INBOX")
    conn.store("1:*", "+FLAGS", r"(\Deleted)")
    conn.expunge()
    out["after"] = quota(conn)
    out["sum"], out["count"] = sizes(conn)
    conn.logout()
print(json.dumps(out))
