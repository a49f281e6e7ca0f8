#!/usr/bin/env python3
"""Drives casella's web pages in a real headless Chromium through chromedriver,
speaking the W3C WebDriver protocol with urllib (standard library only).

Usage: browser_check.py BASE_URL EMAIL PASSWORD SCREENSHOT.png

Signs in, reads the "POP and IMAP" settings table, saves a screenshot of it,
changes the POP options (adds the Junk Email folder, marks downloads as read, moves
deleted messages to Deleted Items), creates an app password limited to SMTP, and
signs out. Prints what it saw as JSON. Chromium runs with --headless
--no-sandbox and the background-networking features off (this machine's network
is closed); chromedriver and Chromium are stopped at the end whatever happens.
"""

import base64
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves it out
from webdriver import chromium  # noqa: E402

BASE, EMAIL, PASSWORD, SHOT = sys.argv[1:5]


def main():
    with chromium(BASE) as d:
        out = {}

        d.go("/")
        out["start"] = d.url()
        d.type("#address", EMAIL)
        d.type("#password", PASSWORD)
        d.click("#signin")
        d.find("#imap-server-0")
        out["after_login"] = d.url()
        out["username"] = d.text("#username")
        out["settings"] = {
            kind: {"server": d.text(f"#{kind}-server-0"), "port": d.text(f"#{kind}-port-0"),
                   "encryption": d.text(f"#{kind}-encryption-0")}
            for kind in ("imap", "pop", "smtp")
        }
        png = base64.b64decode(d.s("GET", "/screenshot"))
        with open(SHOT, "wb") as f:
            f.write(png)
        out["screenshot_bytes"] = len(png)

        d.go("/settings/pop")
        d.click('input[name="folder"][value="Junk Email"]')
        if not d.selected("#mark_read"):
            d.click("#mark_read")
        d.click("#dele-move-to-deleted-items")
        d.click("#save")
        out["pop_saved"] = d.text("#saved")
        out["pop_after"] = {
            "junk": d.selected('input[name="folder"][value="Junk Email"]'),
            "inbox": d.selected('input[name="folder"][value="INBOX"]'),
            "mark_read": d.selected("#mark_read"),
            "move": d.selected("#dele-move-to-deleted-items"),
        }

        d.go("/security")
        d.type("#app-name", "Phone")
        d.click("#app-submission")
        d.click("#create-app-password")
        out["app_password"] = d.text("#new-app-password")

        d.click("#logout")
        d.find("#signin")
        out["after_logout"] = d.url()
        d.go("/settings")
        out["settings_after_logout"] = d.url()
        print(json.dumps(out))

if __name__ == "__main__":
    main()
