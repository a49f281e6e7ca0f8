#!/usr/bin/env python3
"""mbox files through Python's own mailbox module. Prints JSON.

Usage: mbox_check.py write FILE   -- writes two messages (flags RA and F, a
                                     body line that starts with "From ")
       mbox_check.py read FILE    -- each message's subject, flags and body
"""

import email.message
import json
import mailbox
import sys

step, path = sys.argv[1:3]
if step == "write":
    box = mailbox.mbox(path)
    for subject, flags, body in [
        ("first from python", "RA", "From the top of a line\nsecond line\n"),
        ("second from python", "F", "plain body\n"),
    ]:
        m = mailbox.mboxMessage()
        m["From"] = "py@example.net"
        m["Subject"] = subject
        m.set_payload(body)
        m.set_flags(flags)
        m.set_from("py@example.net", (2026, 12, 1, 10, 0, 0, 0, 335, 0))
        box.add(m)
    box.flush()
    box.close()
    print(json.dumps({"written": 2}))
else:
    box = mailbox.mbox(path, create=False)
    out = []
    for m in box:
        out.append(
            {
                "subject": m["Subject"],
                "flags": "".join(sorted(m.get_flags())),
                "body": m.get_payload(),
                "from_line": m.get_from(),
            }
        )
    print(json.dumps(out))
