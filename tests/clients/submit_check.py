#!/usr/bin/env python3
"""Drives a submission server (RFC 6409) with Python's smtplib (standard library only).

Used by crates/casella/tests/submission_clients.rs. A failed check exits non-zero with
a message naming what was expected and what came back.

Common options: --host --port --cert CAFILE --tls starttls|implicit --timeout.

  send --user U --password P --from A --to B [--to C ...] --subject S [--header-from F]
      Logs in, sends; every recipient must be accepted. Prints "sent: SUBJECT".
  refused-sender --user U --password P --from A --to B [--header-from F]
      The envelope sender (or, with --header-from, the From: header) must be refused
      with 553 5.7.1. Prints "refused: CODE TEXT".
  noauth --from A --to B
      Sending without logging in must be refused with 530. Prints "refused: ...".
"""

import argparse
import smtplib
import ssl
import sys
from email.message import EmailMessage
from email.utils import formatdate, make_msgid


def fail(msg):
    raise SystemExit(f"FAIL: {msg}")


def connect(args):
    ctx = ssl.create_default_context(cafile=args.cert)
    if args.tls == "implicit":
        s = smtplib.SMTP_SSL(args.host, args.port, context=ctx, timeout=args.timeout)
        s.ehlo("client.test")
    else:
        s = smtplib.SMTP(args.host, args.port, timeout=args.timeout)
        s.ehlo("client.test")
        if s.has_extn("auth"):
            fail("AUTH offered before STARTTLS under SecureLogin")
        if not s.has_extn("starttls"):
            fail("STARTTLS not offered")
        s.starttls(context=ctx)
        s.ehlo("client.test")
    for ext in ("auth", "size", "pipelining", "8bitmime", "smtputf8", "enhancedstatuscodes", "chunking", "dsn"):
        if not s.has_extn(ext):
            fail(f"{ext} not offered after TLS: {s.esmtp_features}")
    return s


def message(args, header_from=None):
    msg = EmailMessage()
    msg["From"] = header_from or args.sender
    msg["To"] = ", ".join(args.to)
    msg["Subject"] = args.subject
    msg["Date"] = formatdate()
    msg["Message-ID"] = make_msgid(domain="client.test")
    msg.set_content("Sent by Python's smtplib.\n.a line starting with a dot\n")
    return msg


def cmd_send(args):
    s = connect(args)
    s.login(args.user, args.password)
    refused = s.send_message(message(args, args.header_from), from_addr=args.sender, to_addrs=args.to)
    if refused:
        fail(f"refused recipients: {refused}")
    s.quit()
    print(f"sent: {args.subject}")


def cmd_refused_sender(args):
    s = connect(args)
    s.login(args.user, args.password)
    try:
        s.send_message(message(args, args.header_from), from_addr=args.sender, to_addrs=args.to)
    except smtplib.SMTPSenderRefused as e:
        code, text = e.smtp_code, e.smtp_error
    except smtplib.SMTPDataError as e:
        code, text = e.smtp_code, e.smtp_error
    else:
        fail("the message was accepted")
    text = text.decode() if isinstance(text, bytes) else str(text)
    if code != 553 or not text.startswith("5.7.1 Sender address rejected: not owned by authenticated user"):
        fail(f"expected 553 5.7.1, got {code} {text}")
    s.quit()
    print(f"refused: {code} {text}")


def cmd_noauth(args):
    s = connect(args)
    try:
        s.send_message(message(args), from_addr=args.sender, to_addrs=args.to)
    except smtplib.SMTPSenderRefused as e:
        text = e.smtp_error.decode()
        if e.smtp_code != 530:
            fail(f"expected 530, got {e.smtp_code} {text}")
        print(f"refused: {e.smtp_code} {text}")
    else:
        fail("sent without logging in")
    s.quit()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["send", "refused-sender", "noauth"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--tls", choices=["starttls", "implicit"], required=True)
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", action="append", required=True)
    p.add_argument("--subject", default="from smtplib")
    p.add_argument("--header-from")
    args = p.parse_args()
    {"send": cmd_send, "refused-sender": cmd_refused_sender, "noauth": cmd_noauth}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
