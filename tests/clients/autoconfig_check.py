#!/usr/bin/env python3
"""Fetches casella's client autoconfiguration with urllib (standard library only)
and parses it the way the mail programs do, printing what it found as JSON:

  thunderbird  both autoconfig URLs, parsed with xml.etree; element names and
               socketType values checked against Thunderbird's config-v1.1 format
  pox          Outlook's POX autodiscover: POST the request schema, parse the
               response schema (namespaces checked)
  json         autodiscover v2 (query and path forms)
  mobileconfig the Apple profile, parsed with plistlib

Usage: autoconfig_check.py BASE_URL EMAIL
"""

import json
import plistlib
import sys
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

BASE, EMAIL = sys.argv[1], sys.argv[2]
# The address in a URL, percent-encoded as mail programs do (encodeURIComponent).
Q = urllib.parse.quote(EMAIL, safe="")
SOCKET_TYPES = {"SSL", "STARTTLS", "plain"}
AUTH = {"password-cleartext", "password-encrypted", "OAuth2", "none"}


def fail(msg):
    raise SystemExit(f"FAIL: {msg}")


def get(path, data=None, headers=None):
    req = urllib.request.Request(BASE + path, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def thunderbird(path):
    status, ctype, body = get(path)
    if status != 200 or "xml" not in ctype:
        fail(f"{path}: {status} {ctype}")
    root = ET.fromstring(body)
    if root.tag != "clientConfig" or root.get("version") != "1.1":
        fail(f"root {root.tag} {root.attrib}")
    provider = root.find("emailProvider")
    out = {"domain": provider.findtext("domain"), "servers": []}
    for el in provider:
        if el.tag not in ("incomingServer", "outgoingServer"):
            continue
        s = {
            "tag": el.tag,
            "type": el.get("type"),
            "hostname": el.findtext("hostname"),
            "port": int(el.findtext("port")),
            "socketType": el.findtext("socketType"),
            "authentication": el.findtext("authentication"),
            "username": el.findtext("username"),
        }
        if s["socketType"] not in SOCKET_TYPES:
            fail(f"socketType {s['socketType']}")
        if s["authentication"] not in AUTH:
            fail(f"authentication {s['authentication']}")
        out["servers"].append(s)
    return out


def pox():
    req = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">'
        f"<Request><EMailAddress>{EMAIL}</EMailAddress>"
        "<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>"
        "</Request></Autodiscover>"
    ).encode()
    status, ctype, body = get("/autodiscover/autodiscover.xml", req, {"Content-Type": "text/xml"})
    if status != 200:
        fail(f"POX status {status}")
    ns = {
        "a": "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006",
        "o": "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a",
    }
    root = ET.fromstring(body)
    account = root.find("o:Response/o:Account", ns)
    if account is None:
        fail("no Response/Account in the outlook response schema")
    out = {
        "AccountType": account.findtext("o:AccountType", namespaces=ns),
        "Action": account.findtext("o:Action", namespaces=ns),
        "protocols": [],
    }
    for p in account.findall("o:Protocol", ns):
        out["protocols"].append({
            child.tag.split("}")[1]: child.text for child in p
        })
    return out


def autodiscover_json():
    out = {}
    for label, path in [
        ("v1url", f"/autodiscover/autodiscover.json?Email={Q}&Protocol=AutodiscoverV1"),
        ("imap", f"/autodiscover/autodiscover.json/v1.0/{Q}?Protocol=imap"),
        ("smtp", f"/autodiscover/autodiscover.json?Email={Q}&Protocol=smtp"),
        ("bad", f"/autodiscover/autodiscover.json?Email={Q}&Protocol=gopher"),
    ]:
        status, _, body = get(path)
        out[label] = {"status": status, "body": json.loads(body)}
    return out


def mobileconfig():
    status, ctype, body = get(f"/mobileconfig?emailaddress={Q}")
    if status != 200 or ctype != "application/x-apple-aspen-config":
        fail(f"mobileconfig {status} {ctype}")
    plist = plistlib.loads(body)
    return {
        "PayloadType": plist["PayloadType"],
        "mail": {k: v for k, v in plist["PayloadContent"][0].items() if not k.startswith("PayloadUUID")},
    }


print(json.dumps({
    "thunderbird_wellknown": thunderbird(f"/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress={Q}"),
    "thunderbird_mail": thunderbird(f"/mail/config-v1.1.xml?emailaddress={Q}"),
    "pox": pox(),
    "json": autodiscover_json(),
    "mobileconfig": mobileconfig(),
}))
