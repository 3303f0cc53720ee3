#!/usr/bin/env python3
"""Verifies a Sekisho audit export (`sekisho audit export`) independently of Sekisho.

Usage: verify-audit-export.py EXPORT.jsonl [--key KEY_ID]

Checks, as docs/audit.md describes: every record's hash from its contents; that each line's
prev_hash is the hash of the line before it (ids consecutive); every checkpoint's Ed25519
signature and that it signs the hash of the record it names. With --key, only checkpoints
signed by that key id (published by your operator) are accepted. Needs Python 3 and the
`cryptography` package. Exit status 0 and "ok: ..." when everything holds.
"""
import argparse
import hashlib
import json
import struct
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

CANONICAL = ("id", "at", "principal", "role", "action", "tenant_id", "object", "reason",
             "outcome", "salt")


def fail(msg):
    print(f"FAILED: {msg}")
    sys.exit(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("export")
    p.add_argument("--key", help="accept only checkpoints signed by this key id")
    a = p.parse_args()
    keys, chain, checkpoints, header = {}, [], [], None
    with open(a.export, encoding="utf-8") as f:
        for n, text in enumerate(f, 1):
            line = json.loads(text)
            kind = line.get("type")
            if kind == "header":
                header = line
            elif kind == "key":
                public = bytes.fromhex(line["public_key"])
                if hashlib.sha256(public).hexdigest()[:16] != line["key_id"]:
                    fail(f"line {n}: key id does not match the key")
                keys[line["key_id"]] = Ed25519PublicKey.from_public_bytes(public)
            elif kind in ("record", "link"):
                chain.append(line)
            elif kind == "checkpoint":
                checkpoints.append(line)
            else:
                fail(f"line {n}: unknown line type {kind!r}")
    if not header or header.get("format") != "sekisho-audit-export-v1":
        fail("not a sekisho-audit-export-v1 file")
    hashes, prev, records = {}, None, 0
    for line in chain:
        if prev is not None:
            if line["id"] != prev["id"] + 1:
                fail(f"record {prev['id'] + 1} is missing")
            if line["prev_hash"] != prev["hash"]:
                fail(f"record {line['id']}: link to the previous record is broken")
        if line["type"] == "record":
            if line["tenant_id"] != header["tenant_id"]:
                fail(f"record {line['id']} belongs to another tenant")
            canonical = json.dumps({k: line[k] for k in CANONICAL}, separators=(",", ":"),
                                   ensure_ascii=False).encode()
            digest = hashlib.sha256(b"sekisho audit record v1\0" + bytes.fromhex(line["prev_hash"])
                                    + canonical).hexdigest()
            if digest != line["hash"]:
                fail(f"record {line['id']}: contents do not match its hash")
            records += 1
        hashes[line["id"]] = line["hash"]
        prev = line
    signed = 0
    for c in checkpoints:
        if a.key and c["key_id"] != a.key:
            fail(f"checkpoint {c['id']} is signed by {c['key_id']}, not {a.key}")
        key = keys.get(c["key_id"])
        if key is None:
            fail(f"checkpoint {c['id']}: unknown key {c['key_id']}")
        message = (b"sekisho audit checkpoint v1\0" + struct.pack(">qq", c["record_id"], c["at"])
                   + bytes.fromhex(c["hash"]))
        try:
            key.verify(bytes.fromhex(c["signature"]), message)
        except InvalidSignature:
            fail(f"checkpoint {c['id']}: bad signature")
        if hashes.get(c["record_id"]) != c["hash"]:
            fail(f"checkpoint {c['id']}: does not sign record {c['record_id']} as exported")
        signed = max(signed, c["record_id"])
    last = chain[-1]["id"] if chain else 0
    tail = "" if signed >= last else f"; records after {signed} are not yet covered by a checkpoint"
    print(f"ok: {records} record(s) of {header['tenant']} verified, {len(checkpoints)} "
          f"checkpoint(s), signed through record {signed}{tail}")


if __name__ == "__main__":
    main()
