#!/usr/bin/env python3
"""A web session in a real headless Chromium (through chromedriver, W3C
WebDriver over urllib) while the account changes under it: the session must
be refused at its next request.

Usage: browser_session_check.py BASE_URL USER USER_PW ADMIN ADMIN_PW CASELLA_BIN DATA_DIR

Signs USER in, runs `casella account set USER enabled=off` (a separate
process, as an administrator would), reloads the settings page; switches the
account on again and reloads (the old session stays ended); signs in again and
removes the account; then signs ADMIN in, opens /admin, removes ADMIN with the
CLI and opens /admin again. Prints the URL after each step as JSON.
"""

import json
import os
import sys
import subprocess
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves it out
from webdriver import chromium  # noqa: E402

BASE, USER, USER_PW, ADMIN, ADMIN_PW, CASELLA, DATA = sys.argv[1:8]


def cli(*args):
    subprocess.run([CASELLA, "--data", DATA, *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def sign_in(d, user, password):
    """Signs in and waits until the login's answer has loaded (a navigation
    started before it would race with the form's POST)."""
    d.go("/login")
    d.type("#address", user)
    d.type("#password", password)
    d.click("#signin")
    deadline = time.time() + 15
    while "/login" in d.url():
        if time.time() > deadline:
            raise SystemExit(f"FAIL: still on {d.url()} after signing in as {user}")
        time.sleep(0.1)


def main():
    with chromium(BASE) as d:
        out = {}

        sign_in(d, USER, USER_PW)
        d.find("#imap-server-0")
        out["signed_in"] = d.url()
        cli("account", "set", USER, "enabled=off")
        d.go("/settings")
        out["after_disable"] = d.url()
        cli("account", "set", USER, "enabled=on")
        d.go("/settings")
        out["after_enable"] = d.url()
        sign_in(d, USER, USER_PW)
        d.find("#imap-server-0")
        out["signed_in_again"] = d.url()
        cli("account", "remove", USER)
        d.go("/security")
        out["after_remove"] = d.url()

        sign_in(d, ADMIN, ADMIN_PW)
        d.go("/admin")
        d.find("#accounts")
        out["admin"] = d.url()
        cli("account", "remove", ADMIN)
        d.go("/admin")
        out["admin_after_remove"] = d.url()
        print(json.dumps(out))

if __name__ == "__main__":
    main()
