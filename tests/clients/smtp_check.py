#!/usr/bin/env python3
"""Drives an SMTP or LMTP server with Python's smtplib (standard library only).

Used by crates/casella/tests/real_clients.rs. A failed check exits non-zero with a
message naming what was expected and what came back. Progress goes to stdout.

Subcommands (all take --host, --port, --timeout):

  send --cert CAFILE --from A --to B [--to C ...] --subject S [--starttls]
      EHLO, STARTTLS when asked (the server must offer it), EHLO again, then
      sendmail(); every recipient must be accepted. Prints "sent: SUBJECT".
  refused --from A --to B --code N
      sendmail() to B alone must raise SMTPRecipientsRefused with code N for B.
      Prints "refused: CODE TEXT".
  lmtp --from A --to B [--to C ...] --subject S
      LHLO; MAIL; one RCPT per recipient, printing "rcpt B: CODE TEXT"; DATA, then
      one reply per accepted recipient (RFC 2033 section 4.2), printing
      "data B: CODE TEXT".
"""

import argparse
import smtplib
import ssl
import sys
from email.message import EmailMessage
from email.utils import formatdate, make_msgid


def fail(msg):
    raise SystemExit(f"FAIL: {msg}")


def check(cond, msg):
    if not cond:
        fail(msg)


def message(args):
    msg = EmailMessage()
    msg["From"] = args.sender
    msg["To"] = ", ".join(args.to)
    msg["Subject"] = args.subject
    msg["Date"] = formatdate()
    msg["Message-ID"] = make_msgid(domain="remote.test")
    msg.set_content("Hello from smtplib.\n.a line that starts with a dot\nbye\n")
    return msg.as_bytes()


def cmd_send(args):
    with smtplib.SMTP(args.host, args.port, timeout=args.timeout) as s:
        code, _ = s.ehlo("client.remote.test")
        check(code == 250, f"EHLO: {code}")
        if args.starttls:
            check(s.has_extn("starttls"), f"STARTTLS not offered: {s.esmtp_features!r}")
            ctx = ssl.create_default_context(cafile=args.cert)
            code, resp = s.starttls(context=ctx)
            check(code == 220, f"STARTTLS: {code} {resp!r}")
            check(isinstance(s.sock, ssl.SSLSocket), "socket is not TLS after STARTTLS")
            code, _ = s.ehlo("client.remote.test")
            check(code == 250, f"EHLO after STARTTLS: {code}")
            check(not s.has_extn("starttls"), "STARTTLS still offered inside TLS")
            print(f"ok: starttls ({s.sock.version()})")
        refused = s.sendmail(args.sender, args.to, message(args))
        check(refused == {}, f"recipients refused: {refused!r}")
    print(f"sent: {args.subject}")


def cmd_refused(args):
    with smtplib.SMTP(args.host, args.port, timeout=args.timeout) as s:
        s.ehlo("client.remote.test")
        try:
            s.sendmail(args.sender, args.to, message(args))
        except smtplib.SMTPRecipientsRefused as e:
            check(set(e.recipients) == set(args.to), f"refused recipients: {e.recipients!r}")
            for rcpt, (code, text) in e.recipients.items():
                check(code == args.code, f"{rcpt}: expected {args.code}, got {code} {text!r}")
                print(f"refused: {code} {text.decode(errors='replace')}")
        else:
            fail("the message was accepted")
        # The session is still usable after the refusal.
        code, _ = s.noop()
        check(code == 250, f"NOOP after refusal: {code}")


def cmd_lmtp(args):
    s = smtplib.LMTP(args.host, args.port, timeout=args.timeout)
    try:
        code, resp = s.ehlo("client.remote.test")  # LMTP sends LHLO
        check(code == 250, f"LHLO: {code} {resp!r}")
        check(s.does_esmtp, "LHLO answer not parsed as extended")
        print("ok: lhlo")
        code, resp = s.mail(args.sender)
        check(code == 250, f"MAIL: {code} {resp!r}")
        accepted = []
        for rcpt in args.to:
            code, resp = s.rcpt(rcpt)
            print(f"rcpt {rcpt}: {code} {resp.decode(errors='replace')}")
            if code == 250:
                accepted.append(rcpt)
        check(accepted, "no recipient accepted")
        # smtplib.data() returns the reply for the first accepted recipient; LMTP sends
        # one reply per accepted recipient, in RCPT order.
        code, resp = s.data(message(args))
        print(f"data {accepted[0]}: {code} {resp.decode(errors='replace')}")
        for rcpt in accepted[1:]:
            code, resp = s.getreply()
            print(f"data {rcpt}: {code} {resp.decode(errors='replace')}")
        code, _ = s.noop()
        check(code == 250, f"NOOP after DATA (replies out of step?): {code}")
        s.quit()
    finally:
        s.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["send", "refused", "lmtp"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--cert")
    p.add_argument("--starttls", action="store_true")
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", action="append", required=True)
    p.add_argument("--subject", default="casella test")
    p.add_argument("--code", type=int, default=550)
    args = p.parse_args()
    if args.starttls and not args.cert:
        p.error("--starttls needs --cert")
    {"send": cmd_send, "refused": cmd_refused, "lmtp": cmd_lmtp}[args.command](args)
    print("PASS")


if __name__ == "__main__":
    try:
        main()
    except (smtplib.SMTPException, OSError, ssl.SSLError) as e:
        print(f"FAIL: {type(e).__name__}: {e!r}", file=sys.stderr)
        sys.exit(1)
