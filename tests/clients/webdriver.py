"""W3C WebDriver over urllib, for the browser checks: chromedriver driving
Debian's headless Chromium (standard library only). Shared by
browser_check.py and browser_session_check.py."""

import contextlib
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Driver:
    def __init__(self, port, site):
        self.base = f"http://127.0.0.1:{port}"
        self.site = site
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
        self.s("POST", "/url", {"url": self.site + path})

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


@contextlib.contextmanager
def chromium(site):
    """A Driver on a new headless Chromium session for pages under `site`;
    chromedriver is ended afterwards."""
    port = free_port()
    profile = tempfile.mkdtemp(prefix="casella-chromium-")
    log = open(os.path.join(profile, "chromedriver.log"), "w")
    driver_proc = subprocess.Popen(
        ["chromedriver", f"--port={port}", "--allowed-ips=127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT)
    d = Driver(port, site)
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
        yield d
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
