#!/usr/bin/env python3
"""A tiny authoritative DNS server for Sekisho's tests (UDP, loopback only).

Answers from a JSON zone file, re-read on every query so tests can add records while it runs:
`{"name.": ["txt", ...]}` (TXT records) or `{"name.": {"TXT": [...], "A": ["127.0.0.2"]}}`.
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
        labels.append(packet[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    qtype = struct.unpack(">H", packet[pos:pos + 2])[0]
    return ".".join(labels).lower() + ".", qtype, pos + 4


def txt_rdata(text):
    data = text.encode()
    chunks = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
    return b"".join(bytes([len(c)]) + c for c in chunks)


def a_rdata(text):
    return socket.inet_aton(text)


TYPES = {1: ("A", a_rdata), 16: ("TXT", txt_rdata)}


def answer(packet, zone, servfail=False):
    qid = packet[:2]
    name, qtype, end = parse_question(packet)
    question = packet[12:end]
    records = zone.get(name)
    if isinstance(records, list):
        records = {"TXT": records}
    if servfail:
        flags, answers = 0x8182, []          # QR, RD, RA, SERVFAIL
    elif records is None:
        flags, answers = 0x8403, []          # QR, AA, NXDOMAIN
    else:
        flags = 0x8400                       # QR, AA, NOERROR
        kind, encode = TYPES.get(qtype, (None, None))
        answers = [encode(t) for t in records.get(kind, [])] if kind else []
    out = qid + struct.pack(">HHHHH", flags, 1, len(answers), 0, 0) + question
    for rdata in answers:
        out += b"\xc0\x0c" + struct.pack(">HHIH", qtype, 1, 60, len(rdata)) + rdata
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
            s.sendto(answer(packet, zone, a.servfail), peer)
        except (ValueError, IndexError, struct.error):
            continue


if __name__ == "__main__":
    main()
