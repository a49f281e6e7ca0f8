#!/usr/bin/env python3
"""An account's mailboxes as Python's imaplib sees them, over implicit TLS:
for each mailbox its UIDVALIDITY and UIDNEXT (STATUS) and each message's UID,
flags, INTERNALDATE and size. Prints JSON.

Usage: mailbox_view.py HOST IMAPS_PORT CAFILE USER PASSWORD
"""

import imaplib
import json
import re
import ssl
import sys

host, port, cafile, user, password = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False
conn = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx, timeout=20)
conn.login(user, password)
view = {}
typ, boxes = conn.list()
for line in boxes:
    name = line.decode().rsplit(' "/" ', 1)[1].strip('"')
    typ, data = conn.status('"%s"' % name, "(UIDVALIDITY UIDNEXT)")
    status = data[0].decode()
    validity = int(re.search(r"UIDVALIDITY (\d+)", status).group(1))
    uidnext = int(re.search(r"UIDNEXT (\d+)", status).group(1))
    conn.select('"%s"' % name, readonly=True)
    typ, data = conn.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE)")
    messages = []
    for d in data:
        if not d:
            continue
        d = d.decode() if isinstance(d, bytes) else d[0].decode()
        uid = int(re.search(r"UID (\d+)", d).group(1))
        # \Recent is per session (and imaplib speaks IMAP4rev1).
        flags = sorted(
            f
            for f in re.search(r"FLAGS \(([^)]*)\)", d).group(1).split()
            if f != "\\Recent"
        )
        date = re.search(r'INTERNALDATE "([^"]+)"', d).group(1)
        size = int(re.search(r"RFC822.SIZE (\d+)", d).group(1))
        messages.append([uid, flags, date, size])
    view[name] = {"uidvalidity": validity, "uidnext": uidnext, "messages": messages}
conn.logout()
print(json.dumps(view))
