"""A software WebAuthn authenticator for tests: a P-256 key pair per credential, "none"
attestation, user presence and verification always asserted, a signature counter. It
answers the portal's JSON options the way a browser would (binary fields base64url), so the
vault's checks (challenge, origin, RP ID hash, signature, counter) meet real answers."""
import base64
import hashlib
import json
import os
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64u(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def cbor(v) -> bytes:
    """The CBOR subset WebAuthn needs: ints, byte and text strings, maps."""
    def head(major, n):
        if n < 24:
            return bytes([major << 5 | n])
        for info, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
            if n < 1 << (8 * struct.calcsize(fmt)):
                return bytes([major << 5 | info]) + struct.pack(fmt, n)
        raise ValueError(n)
    if isinstance(v, bool):
        raise TypeError("no booleans needed")
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, bytes):
        return head(2, len(v)) + v
    if isinstance(v, str):
        b = v.encode()
        return head(3, len(b)) + b
    if isinstance(v, dict):
        return head(5, len(v)) + b"".join(cbor(k) + cbor(x) for k, x in v.items())
    raise TypeError(type(v))


UP, UV, AT = 0x01, 0x04, 0x40


class SoftAuthenticator:
    def __init__(self, origin: str, rp_id: str = "localhost"):
        self.origin, self.rp_id = origin, rp_id
        self.creds = {}  # credential id -> [private key, user handle, counter]

    def _client_data(self, kind, challenge, origin=None):
        return json.dumps({"type": kind, "challenge": challenge, "origin": origin or self.origin,
                           "crossOrigin": False}).encode()

    def create(self, options, origin=None):
        pk = options["publicKey"]
        assert pk["rp"]["id"] == self.rp_id, pk["rp"]
        key = ec.generate_private_key(ec.SECP256R1())
        cred_id = os.urandom(32)
        self.creds[cred_id] = [key, unb64u(pk["user"]["id"]), 0]
        nums = key.public_key().public_numbers()
        cose = cbor({1: 2, 3: -7, -1: 1, -2: nums.x.to_bytes(32, "big"), -3: nums.y.to_bytes(32, "big")})
        auth_data = (hashlib.sha256(self.rp_id.encode()).digest() + bytes([UP | UV | AT])
                     + struct.pack(">I", 0) + bytes(16) + struct.pack(">H", len(cred_id)) + cred_id + cose)
        att = cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {"id": b64u(cred_id), "rawId": b64u(cred_id), "type": "public-key",
                "response": {"attestationObject": b64u(att),
                             "clientDataJSON": b64u(self._client_data("webauthn.create", pk["challenge"], origin))},
                "extensions": {}}

    def get(self, options, cred_id=None, origin=None, counter=None, flags=UP | UV, tamper=False):
        pk = options["publicKey"]
        allowed = [unb64u(c["id"]) for c in pk.get("allowCredentials") or []]
        if cred_id is None:
            cred_id = next(c for c in self.creds if not allowed or c in allowed)
        key, handle, count = self.creds[cred_id]
        count = count + 1 if counter is None else counter
        self.creds[cred_id][2] = count
        auth_data = hashlib.sha256(self.rp_id.encode()).digest() + bytes([flags]) + struct.pack(">I", count)
        client_data = self._client_data("webauthn.get", pk["challenge"], origin)
        sig = key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        if tamper:
            auth_data = auth_data[:-1] + bytes([auth_data[-1] ^ 1])
        return {"id": b64u(cred_id), "rawId": b64u(cred_id), "type": "public-key",
                "response": {"authenticatorData": b64u(auth_data), "clientDataJSON": b64u(client_data),
                             "signature": b64u(sig), "userHandle": b64u(handle)},
                "extensions": {}}
