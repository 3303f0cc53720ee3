#!/usr/bin/env python3
"""A tiny authoritative DNS server for Sekisho's tests (UDP, loopback only).

Answers from a JSON zone file, re-read on every query so tests can add records while it runs:
`{"name.": ["txt", ...]}` (TXT records) or `{"name.": {"TXT": [...], "A": ["127.0.0.2"]}}`,
where a TXT record may be a list of strings (one record of several strings), and the types
A, AAAA, MX (`[preference, "exchange."]`), PTR and CNAME (`"target."`, followed for other
types) are served too. `{"name.": "TIMEOUT"}` is never answered (a server that times out);
`{"name.": {"TXT": [...], "TIMEOUT": true}}` answers its records and times out other types.
Every other name is NXDOMAIN; other types of known names get an empty NOERROR answer. With
`--servfail` every query gets SERVFAIL (a resolver that cannot answer). Prints "PORT <n>" once
listening.
"""
import argparse
import json
import os
import socket
import struct


def parse_question(packet):
    """Returns (qname, qtype, end offset of the question)."""
    labels = []
    pos = 12
    while True:
        n = packet[pos]
        if n == 0:
            pos += 1
            break
        if n & 0xC0:
            raise ValueError("compressed qname in a query")
        labels.append(packet[pos + 1:pos + 1 + n].decode("latin-1"))
        pos += 1 + n
    qtype = struct.unpack(">H", packet[pos:pos + 2])[0]
    return ".".join(labels).lower() + ".", qtype, pos + 4


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("latin-1", "replace")[:63]
            out += bytes([len(raw)]) + raw
    return out + b"\0"


def txt_rdata(value):
    strings = value if isinstance(value, list) else [value]
    out = b""
    for text in strings or [""]:
        data = text.encode("utf-8", "surrogateescape")
        chunks = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
        out += b"".join(bytes([len(c)]) + c for c in chunks)
    return out


def a_rdata(text):
    return socket.inet_aton(text)


def aaaa_rdata(text):
    return socket.inet_pton(socket.AF_INET6, text)


def mx_rdata(value):
    pref, name = value
    return struct.pack(">H", int(pref)) + encode_name(name)


TYPES = {1: ("A", a_rdata), 5: ("CNAME", encode_name), 12: ("PTR", encode_name),
         15: ("MX", mx_rdata), 16: ("TXT", txt_rdata), 28: ("AAAA", aaaa_rdata)}


def records_of(zone, name):
    records = zone.get(name)
    if isinstance(records, list):
        records = {"TXT": records}
    return records


def answer(packet, zone, servfail=False):
    """The reply to `packet`, or None when the name is to time out."""
    qid = packet[:2]
    name, qtype, end = parse_question(packet)
    question = packet[12:end]
    records = records_of(zone, name)
    if records == "TIMEOUT" and not servfail:
        return None
    rrs = []                                 # (owner, type, rdata)
    if servfail:
        flags = 0x8182                       # QR, RD, RA, SERVFAIL
    elif records is None:
        flags = 0x8403                       # QR, AA, NXDOMAIN
    else:
        flags = 0x8400                       # QR, AA, NOERROR
        owner = name
        for _ in range(8):                   # follow CNAMEs (bounded)
            if not isinstance(records, dict):
                break
            if qtype != 5 and records.get("CNAME"):
                target = records["CNAME"][0]
                rrs.append((owner, 5, encode_name(target)))
                owner = target.lower() if target.endswith(".") else target.lower() + "."
                records = records_of(zone, owner)
                if records == "TIMEOUT":
                    return None
                continue
            kind, encode = TYPES.get(qtype, (None, None))
            if records.get("TIMEOUT") and not records.get(kind):
                return None
            rrs += [(owner, qtype, encode(t)) for t in records.get(kind, [])] if kind else []
            break
    out = qid + struct.pack(">HHHHH", flags, 1, len(rrs), 0, 0) + question
    for owner, rtype, rdata in rrs:
        head = b"\xc0\x0c" if owner == name else encode_name(owner)
        out += head + struct.pack(">HHIH", rtype, 1, 60, len(rdata)) + rdata
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--zone", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--servfail", action="store_true")
    a = p.parse_args()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", a.port))
    print("PORT", s.getsockname()[1], flush=True)
    while True:
        packet, peer = s.recvfrom(4096)
        try:
            zone = {}
            if os.path.exists(a.zone):
                with open(a.zone) as f:
                    zone = {k.lower(): v for k, v in json.load(f).items()}
            reply = answer(packet, zone, a.servfail)
            if reply is not None:
                s.sendto(reply, peer)
        except (ValueError, IndexError, struct.error):
            continue


if __name__ == "__main__":
    main()
