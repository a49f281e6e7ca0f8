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
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

BASE, EMAIL, PASSWORD, SHOT = sys.argv[1:5]
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
