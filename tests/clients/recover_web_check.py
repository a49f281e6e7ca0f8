#!/usr/bin/env python3
"""The users' "Recover deleted items" page and the admin API's recoverable
items, with Python's own urllib (a cookie jar for the signed-in browser).
Prints JSON.

Usage: recover_web_check.py BASE_URL USER PASSWORD ADMIN_TOKEN

Signs in, lists /recover, restores the first item shown there with the
page's form; then lists the rest through the admin API and restores them.
"""

import html
import http.cookiejar
import json
import re
import sys
import urllib.parse
import urllib.request

base, user, password, token = sys.argv[1:5]
jar = http.cookiejar.CookieJar()
browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))


def post_form(path, fields):
    data = urllib.parse.urlencode(fields).encode()
    with browser.open(base + path, data=data, timeout=20) as r:
        return r.read().decode()


def get(path):
    with browser.open(base + path, timeout=20) as r:
        return r.read().decode()


def api(method, path, body=None):
    req = urllib.request.Request(base + path, method=method)
    req.add_header("Authorization", "Bearer " + token)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, data=data, timeout=20) as r:
        return json.loads(r.read().decode())


out = {}
post_form("/login", [("address", user), ("password", password)])
page = get("/recover")
out["nav_link"] = 'href="/recover"' in page
ids = re.findall(r'name="item" value="(\d+)"', page)
out["page_items"] = len(ids)
out["page_subjects"] = [
    html.unescape(s)
    for s in re.findall(r'aria-label="Restore"></td><td>([^<]*)</td>', page)
]
csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
done = post_form("/recover", [("csrf", csrf), ("item", ids[0])])
out["outcome"] = html.unescape(re.search(r'id="outcome">([^<]*)<', done).group(1))
out["page_items_after"] = len(re.findall(r'name="item" value="(\d+)"', done))
listed = api("GET", "/api/admin/accounts/%s/recoverable" % urllib.parse.quote(user))
out["api_subjects"] = [i["subject"] for i in listed]
out["api_folders"] = [i["folder"] for i in listed]
restored = api(
    "POST",
    "/api/admin/accounts/%s/recoverable/restore" % urllib.parse.quote(user),
    {"ids": [i["id"] for i in listed]},
)
out["api_restored"] = restored["restored"]
out["api_left"] = len(
    api("GET", "/api/admin/accounts/%s/recoverable" % urllib.parse.quote(user))
)
print(json.dumps(out))
