#!/usr/bin/env python3
"""A downstream SMTP server for Sekisho's end-to-end tests (aiosmtpd).

Stores every accepted message as OUT/<n>.eml (the raw content) and OUT/<n>.json (envelope,
TLS), written atomically. Behaviour is chosen by the recipient's local part:
  reject*        -> 550 5.1.1 at RCPT
  tempfailN*     -> 451 4.3.0 at RCPT for the first N attempts of that address, then 250
  datafail*      -> 554 5.6.0 at DATA
With --auth USER:PASS the sink requires SMTP AUTH (over TLS) before MAIL; with --client-ca
CA it asks for a TLS client certificate and verifies it against CA. The .json records the authenticated
user and the client certificate's subject CN.
Prints "PORT <n>" on stdout once listening.
"""
import argparse
import asyncio
import json
import os
import re
import ssl

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, out, requiretls=False):
        self.out = out
        self.n = 0
        self.attempts = {}
        self.requiretls = requiretls

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.requiretls and session.ssl is not None:
            responses.insert(len(responses) - 1, "250-REQUIRETLS")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 No such user here"
        m = re.match(r"tempfail(\d+)", local)
        if m:
            self.attempts[address] = self.attempts.get(address, 0) + 1
            if self.attempts[address] <= int(m.group(1)):
                return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(r.split("@")[0].lower().startswith("datafail") for r in envelope.rcpt_tos):
            return "554 5.6.0 Content refused"
        self.n += 1
        base = os.path.join(self.out, f"{os.getpid()}-{self.n:06d}")
        content = envelope.original_content
        with open(base + ".tmp", "wb") as f:
            f.write(content)
        os.rename(base + ".tmp", base + ".eml")
        cert = (session.ssl or {}).get("peercert") or {}
        cn = [v for rdn in cert.get("subject", ()) for (k, v) in rdn if k == "commonName"]
        meta = {
            "auth_user": session.auth_data.login.decode() if session.auth_data else None,
            "client_cert_cn": cn[0] if cn else None,
            "peer": list(session.peer),
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "mail_options": envelope.mail_options,
        }
        with open(base + ".jtmp", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".jtmp", base + ".json")
        return "250 2.0.0 Message accepted for delivery"


class CountingSMTP(SMTP):
    """Tracks concurrent sessions; the highest count goes to OUT/stats.json. With
    `requiretls`, offers REQUIRETLS inside TLS and takes the MAIL parameter (RFC 8689)."""

    active = 0
    peak = 0
    out = None
    requiretls = False

    def _getparams(self, params):
        if self.requiretls and self.session.ssl is not None:
            params = [p for p in params if p != "REQUIRETLS"]
        return super()._getparams(params)

    def connection_made(self, transport):
        CountingSMTP.active += 1
        if CountingSMTP.active > CountingSMTP.peak:
            CountingSMTP.peak = CountingSMTP.active
            with open(os.path.join(self.out, "sessions.tmp"), "w") as f:
                json.dump({"peak_sessions": CountingSMTP.peak}, f)
            os.rename(os.path.join(self.out, "sessions.tmp"), os.path.join(self.out, "sessions.stat"))
        super().connection_made(transport)

    def connection_lost(self, exc):
        CountingSMTP.active -= 1
        super().connection_lost(exc)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (a remote MX: 127.0.0.3 …)")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--auth", help="USER:PASS required before MAIL")
    p.add_argument("--client-ca", help="require a client certificate issued by this CA")
    p.add_argument("--requiretls", action="store_true", help="offer and accept REQUIRETLS inside TLS")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    ctx = None
    if a.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
        if a.client_ca:
            # CERT_OPTIONAL still asks for and verifies a certificate; aiosmtpd's STARTTLS does
            # not work with CERT_REQUIRED. The test asserts the verified subject it recorded.
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.load_verify_locations(a.client_ca)
    auth = {}
    if a.auth:
        user, password = a.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, data):
            ok = (isinstance(data, LoginPassword) and data.login == user.encode()
                  and data.password == password.encode())
            return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

        auth = {"authenticator": authenticator, "auth_required": True, "auth_require_tls": True}
    handler = Handler(a.out, a.requiretls)
    CountingSMTP.out = a.out
    CountingSMTP.requiretls = a.requiretls
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: CountingSMTP(handler, hostname="sink.test", decode_data=False, enable_SMTPUTF8=True,
                     tls_context=ctx, data_size_limit=0, ident="sink", **auth),
        host=a.host, port=a.port)
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
