#!/usr/bin/env python3
"""Logs in with SCRAM-SHA-256 or SCRAM-SHA-256-PLUS (channel binding
tls-server-end-point) using the `scramp` package — an independent SCRAM client
(pip install scramp) — over Python's imaplib, poplib and smtplib. The client
checks the server's signature too. Prints JSON {"ok", "reply", "caps"}.

Usage: scram_check.py imap|pop|smtp MECHANISM HOST PORT CAFILE USER PASSWORD
"""

import base64
import imaplib
import json
import poplib
import smtplib
import ssl
import sys

from scramp import ScramClient, ScramException

proto, mech, host, port, cafile, user, password = sys.argv[1:8]
port = int(port)
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False


class Exchange:
    def __init__(self, sock):
        binding = ("tls-server-end-point", sock) if mech.endswith("-PLUS") else None
        self.client = ScramClient([mech], user, password, channel_binding=binding)
        self.step = 0

    def __call__(self, challenge):
        self.step += 1
        if self.step == 1:
            return self.client.get_client_first().encode()
        if self.step == 2:
            self.client.set_server_first(challenge.decode())
            return self.client.get_client_final().encode()
        # Raises when the server's signature is wrong.
        self.client.set_server_final(challenge.decode())
        return b""


def imap():
    conn = imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=20)
    caps = list(conn.capabilities)
    try:
        typ, data = conn.authenticate(mech, Exchange(conn.sock))
        return typ == "OK", data[0].decode(), caps
    except imaplib.IMAP4.error as e:
        return False, str(e), caps


def pop():
    conn = poplib.POP3_SSL(host, port, context=ctx, timeout=20)
    caps = conn.capa().get("SASL", [])
    ex = Exchange(conn.sock)
    conn._putcmd(f"AUTH {mech} " + base64.b64encode(ex(b"")).decode())
    try:
        resp = conn._getresp()
        while resp.startswith(b"+ "):
            conn._putcmd(base64.b64encode(ex(base64.b64decode(resp[2:]))).decode())
            resp = conn._getresp()
        return True, resp.decode(), caps
    except poplib.error_proto as e:
        return False, str(e), caps


def smtp():
    conn = smtplib.SMTP(host, port, timeout=20)
    conn.starttls(context=ctx)
    conn.ehlo()
    caps = conn.esmtp_features.get("auth", "").split()
    ex = Exchange(conn.sock)
    try:
        code, resp = conn.docmd("AUTH", f"{mech} " + base64.b64encode(ex(b"")).decode())
        while code == 334:
            code, resp = conn.docmd(base64.b64encode(ex(base64.b64decode(resp))).decode())
        return code == 235, f"{code} {resp.decode()}", caps
    except smtplib.SMTPServerDisconnected as e:
        return False, f"disconnected: {e}", caps


try:
    ok, reply, caps = {"imap": imap, "pop": pop, "smtp": smtp}[proto]()
except ScramException as e:
    ok, reply, caps = False, f"scramp: {e}", []
print(json.dumps({"ok": ok, "reply": reply, "caps": caps}))
