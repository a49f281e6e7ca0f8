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

import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

BASE, USER, USER_PW, ADMIN, ADMIN_PW, CASELLA, DATA = sys.argv[1:8]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Driver:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        self.sid = None

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read() or b"{}").get("value")
        except urllib.error.HTTPError as e:
            raise SystemExit(f"FAIL: WebDriver {method} {path}: {e.code} {e.read()[:500]!r}")

    def s(self, method, path, body=None):
        return self.call(method, f"/session/{self.sid}{path}", body)

    def go(self, path):
        self.s("POST", "/url", {"url": BASE + path})

    def find(self, css):
        deadline = time.time() + 10
        while True:
            try:
                req = urllib.request.Request(
                    f"{self.base}/session/{self.sid}/element",
                    data=json.dumps({"using": "css selector", "value": css}).encode(),
                    method="POST", headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=30) as r:
                    value = json.loads(r.read())["value"]
                if ELEMENT in value:
                    return value[ELEMENT]
                if value.get("error") != "no such element":
                    raise SystemExit(f"FAIL: finding {css!r}: {value}")
                raise urllib.error.HTTPError(req.full_url, 404, "no such element", None, None)
            except urllib.error.HTTPError:
                if time.time() > deadline:
                    raise SystemExit(f"FAIL: no element {css!r} on {self.url()}")
                time.sleep(0.1)

    def type(self, css, text):
        self.s("POST", f"/element/{self.find(css)}/value", {"text": text})

    def click(self, css):
        self.s("POST", f"/element/{self.find(css)}/click", {})

    def text(self, css):
        return self.s("GET", f"/element/{self.find(css)}/text")

    def selected(self, css):
        return self.s("GET", f"/element/{self.find(css)}/selected")

    def url(self):
        return self.s("GET", "/url")



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
    port = free_port()
    profile = tempfile.mkdtemp(prefix="casella-chromium-")
    log = open(os.path.join(profile, "chromedriver.log"), "w")
    driver_proc = subprocess.Popen(
        ["chromedriver", f"--port={port}", "--allowed-ips=127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT)
    d = Driver(port)
    try:
        deadline = time.time() + 20
        while True:
            try:
                if d.call("GET", "/status").get("ready"):
                    break
            except Exception:
                pass
            if time.time() > deadline:
                raise SystemExit("FAIL: chromedriver did not start")
            time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", "--window-size=1000,1400",
                         f"--user-data-dir={profile}/data"],
            },
        }}}
        created = d.call("POST", "/session", caps)
        d.sid = created["sessionId"]
        d.s("POST", "/timeouts", {"pageLoad": 30000, "script": 10000})
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
    finally:
        if d.sid:
            try:
                d.call("DELETE", f"/session/{d.sid}")
            except BaseException:
                pass
        driver_proc.terminate()
        try:
            driver_proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            driver_proc.kill()


if __name__ == "__main__":
    main()
