#!/usr/bin/env python3
"""Logs in with an OAuth 2.0 access token through Python's imaplib, poplib and
smtplib (standard library only), over implicit TLS for IMAP and POP3 and
STARTTLS for submission. Prints JSON: {"ok": bool, "error": the RFC 7628 JSON
the server sent as a challenge (or null), "reply": the final reply}.

Usage: oauth_check.py imap|pop|smtp XOAUTH2|OAUTHBEARER HOST PORT CAFILE USER TOKEN
"""

import base64
import imaplib
import json
import poplib
import smtplib
import ssl
import sys

proto, mech, host, port, cafile, user, token = sys.argv[1:8]
port = int(port)
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False
seen = {"error": None}


def first_message():
    if mech == "XOAUTH2":
        return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
    return f"n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01".encode()


def answer(challenge):
    """The client's answer to a server challenge: the first message to an empty
    challenge, else (an error) the acknowledgement of RFC 7628 §3.2.3."""
    if not challenge:
        return first_message()
    seen["error"] = json.loads(challenge)
    return b"\x01" if mech == "OAUTHBEARER" else b""


def imap():
    conn = imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=20)
    caps = list(conn.capabilities)
    try:
        typ, data = conn.authenticate(mech, answer)
        ok, reply = typ == "OK", data[0].decode()
        if ok:
            typ, data = conn.select("INBOX")
            ok = typ == "OK"
    except imaplib.IMAP4.error as e:
        ok, reply = False, str(e)
    return ok, reply, caps


def pop():
    conn = poplib.POP3_SSL(host, port, context=ctx, timeout=20)
    caps = list(conn.capa().keys())
    conn._putcmd(f"AUTH {mech} " + base64.b64encode(first_message()).decode())
    try:
        resp = conn._getresp()
        while resp.startswith(b"+ "):
            conn._putcmd(base64.b64encode(answer(base64.b64decode(resp[2:]))).decode())
            resp = conn._getresp()
        ok, reply = True, resp.decode()
        conn.stat()
    except poplib.error_proto as e:
        ok, reply = False, str(e.args[0].decode() if isinstance(e.args[0], bytes) else e)
    return ok, reply, caps


def smtp():
    conn = smtplib.SMTP(host, port, timeout=20)
    conn.starttls(context=ctx)
    conn.ehlo()
    caps = conn.esmtp_features.get("auth", "").split()

    def auth_object(challenge=None):
        return answer(challenge).decode() if challenge is not None else first_message().decode()

    try:
        code, resp = conn.auth(mech, auth_object, initial_response_ok=True)
        ok, reply = code == 235, f"{code} {resp.decode()}"
        if ok:
            conn.sendmail(user, [user], f"From: {user}\r\nTo: {user}\r\nSubject: sent with a token\r\n\r\nhi\r\n")
    except smtplib.SMTPAuthenticationError as e:
        ok, reply = False, f"{e.smtp_code} {e.smtp_error.decode()}"
    except smtplib.SMTPServerDisconnected as e:
        ok, reply = False, f"disconnected: {e}"
    return ok, reply, caps


ok, reply, caps = {"imap": imap, "pop": pop, "smtp": smtp}[proto]()
print(json.dumps({"ok": ok, "error": seen["error"], "reply": reply, "caps": caps}))
