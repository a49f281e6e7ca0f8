#!/usr/bin/env python3
"""Logs in with the name given, as a user types it, with Python's own clients:
imaplib LOGIN and AUTHENTICATE PLAIN over implicit TLS, poplib USER/PASS over
implicit TLS, smtplib AUTH PLAIN and AUTH LOGIN after STARTTLS on submission.
Prints JSON {"imap-login": bool, "imap-plain": bool, "pop-user": bool,
"smtp-plain": bool, "smtp-login": bool}.

Usage: login_names_check.py HOST IMAPS_PORT POP3S_PORT SUBMISSION_PORT CAFILE USER PASSWORD
"""

import base64
import imaplib
import json
import poplib
import smtplib
import ssl
import sys

host, imaps, pop3s, submission, cafile, user, password = sys.argv[1:8]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False


def imap_login():
    conn = imaplib.IMAP4_SSL(host, int(imaps), ssl_context=ctx, timeout=20)
    try:
        # imaplib sends the user name as it is (only the password quoted); a
        # name with a backslash (DOMAIN\user) must go as a quoted string.
        conn.login(conn._quote(user) if "\\" in user else user, password)
        return True
    except imaplib.IMAP4.error:
        return False
    finally:
        conn.shutdown()


def imap_plain():
    conn = imaplib.IMAP4_SSL(host, int(imaps), ssl_context=ctx, timeout=20)
    try:
        typ, _ = conn.authenticate(
            "PLAIN", lambda _: ("\0" + user + "\0" + password).encode()
        )
        return typ == "OK"
    except imaplib.IMAP4.error:
        return False
    finally:
        conn.shutdown()


def pop_user():
    conn = poplib.POP3_SSL(host, int(pop3s), context=ctx, timeout=20)
    try:
        conn.user(user)
        conn.pass_(password)
        return True
    except poplib.error_proto:
        return False
    finally:
        conn.close()


def smtp(mechanism):
    conn = smtplib.SMTP(host, int(submission), timeout=20)
    try:
        conn.starttls(context=ctx)
        conn.ehlo()
        conn.user, conn.password = user, password
        auth = conn.auth_plain if mechanism == "PLAIN" else conn.auth_login
        conn.auth(mechanism, auth, initial_response_ok=True)
        return True
    except smtplib.SMTPAuthenticationError:
        return False
    finally:
        conn.close()


print(
    json.dumps(
        {
            "imap-login": imap_login(),
            "imap-plain": imap_plain(),
            "pop-user": pop_user(),
            "smtp-plain": smtp("PLAIN"),
            "smtp-login": smtp("LOGIN"),
        }
    )
)
