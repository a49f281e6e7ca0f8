#!/usr/bin/env python3
"""Deletes mail the ways users do and looks at what comes back, with Python's
own imaplib and poplib over implicit TLS. Prints JSON.

Usage: recovery_check.py STEP HOST IMAPS_PORT POP3S_PORT CAFILE USER PASSWORD

STEP "delete": APPENDs two messages to INBOX (the first \\Flagged), checks
SAVEDATE (RFC 8514): the capability, FETCH SAVEDATE, SEARCH SAVEDSINCE /
SAVEDBEFORE / SAVEDATESUPPORTED; expunges the first over IMAP (STORE \\Deleted,
EXPUNGE) and deletes the second with POP3 DELE.
STEP "look": the INBOX messages with their UIDs, flags and subjects.
"""

import imaplib
import json
import poplib
import re
import ssl
import sys
import time

step, host, imaps, pop3s, cafile, user, password = sys.argv[1:8]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False


def imap():
    conn = imaplib.IMAP4_SSL(host, int(imaps), ssl_context=ctx, timeout=20)
    conn.login(user, password)
    return conn


def message(subject):
    return (
        "From: a@example.org\r\nTo: %s\r\nSubject: %s\r\n\r\nbody of %s\r\n"
        % (user, subject, subject)
    ).encode()


def uids(conn, criteria):
    typ, data = conn.uid("SEARCH", criteria)
    assert typ == "OK", (criteria, data)
    return [int(u) for u in data[0].split()]


def delete():
    out = {}
    conn = imap()
    typ, data = conn.capability()
    out["capability"] = "SAVEDATE" in data[0].decode().upper().split()
    conn.append("INBOX", r"(\Flagged)", None, message("first to go"))
    conn.append("INBOX", None, None, message("second to go"))
    conn.select("INBOX")
    typ, data = conn.fetch("1:*", "(UID SAVEDATE)")
    assert typ == "OK", data
    dates = [re.search(rb'SAVEDATE "([^"]+)"', d).group(1).decode() for d in data]
    out["savedates"] = dates
    today = time.strftime("%d-%b-%Y", time.gmtime())
    out["saved_since_today"] = len(uids(conn, "SAVEDSINCE " + today))
    out["saved_before_2000"] = len(uids(conn, "SAVEDBEFORE 1-Jan-2000"))
    out["supported"] = len(uids(conn, "SAVEDATESUPPORTED"))
    all_uids = uids(conn, "ALL")
    out["uids"] = all_uids
    conn.uid("STORE", str(all_uids[0]), "+FLAGS", r"(\Deleted)")
    typ, data = conn.expunge()
    assert typ == "OK", data
    conn.logout()
    pop = poplib.POP3_SSL(host, int(pop3s), context=ctx, timeout=20)
    pop.user(user)
    pop.pass_(password)
    count, _ = pop.stat()
    out["pop_count"] = count
    pop.dele(1)
    pop.quit()
    return out


def look():
    conn = imap()
    conn.select("INBOX")
    found = []
    typ, data = conn.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    for item in data:
        if not isinstance(item, tuple):
            continue
        meta, header = item
        uid = int(re.search(rb"UID (\d+)", meta).group(1))
        flags = re.search(rb"FLAGS \(([^)]*)\)", meta).group(1).decode().split()
        subject = header.decode().split(":", 1)[1].strip()
        found.append({"uid": uid, "flags": flags, "subject": subject})
    conn.logout()
    return {"messages": found}


print(json.dumps(delete() if step == "delete" else look()))
