#!/usr/bin/env python3
"""A Web Push receiver of the project's own, on loopback, for the tests.

It plays a push service and the browser behind it at once: it makes the
subscription keys (P-256 key pair and auth secret), accepts pushes at
http://127.0.0.1:PORT/push/<name>, checks the VAPID JWT (RFC 8292) with the
`cryptography` package, and decrypts the body with `http_ece` (RFC 8291 /
RFC 8188), an implementation independent of the gateway's.

stdout, one JSON object per line:
  first:  {"endpoint": "http://127.0.0.1:PORT/push/", "p256dh": ..., "auth": ...}
  then per push: {"path", "status", "payload" (decoded JSON), "jwt" (claims),
                  "headers" {ttl, urgency, content-encoding}, "receivedAt" (Unix ms)}
          or {"path", "status", "error"} when a check failed (answered 400).

Paths choose the answer: /push/gone/... answers 410; /push/flaky-N/... answers
503 to the first N pushes to that path, then 201; anything else 201.
"""

import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    import http_ece
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
except ImportError as e:  # the setup script installs these
    sys.exit(f"receiver.py: {e}: run scripts/setup.d/35-push-python.sh")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


PRIVATE = ec.generate_private_key(ec.SECP256R1())
PUBLIC = PRIVATE.public_key().public_bytes(
    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
)
AUTH = os.urandom(16)
FLAKY_SEEN: dict = {}
LOCK = threading.Lock()
OUT = threading.Lock()


def emit(obj):
    with OUT:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def check_vapid(header: str, origin: str) -> dict:
    """The claims of a valid `vapid t=<jwt>, k=<key>` header, else raises."""
    if not header.startswith("vapid "):
        raise ValueError(f"authorization is not vapid: {header[:40]!r}")
    params = {}
    for part in header[len("vapid "):].split(","):
        k, _, v = part.strip().partition("=")
        params[k] = v
    jwt, key = params.get("t"), params.get("k")
    if not jwt or not key:
        raise ValueError("vapid header lacks t= or k=")
    head_b64, claims_b64, sig_b64 = jwt.split(".")
    head = json.loads(unb64url(head_b64))
    if head.get("alg") != "ES256":
        raise ValueError(f"JWT alg {head.get('alg')}")
    sig = unb64url(sig_b64)
    if len(sig) != 64:
        raise ValueError("ES256 signature is not 64 bytes")
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
    try:
        pub.verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ValueError("JWT signature does not verify with k=")
    claims = json.loads(unb64url(claims_b64))
    now = time.time()
    if claims.get("aud") != origin:
        raise ValueError(f"JWT aud {claims.get('aud')!r} is not {origin!r}")
    if not (now < claims.get("exp", 0) <= now + 24 * 3600):
        raise ValueError(f"JWT exp {claims.get('exp')} not within 24 h")
    if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
        raise ValueError(f"JWT sub {claims.get('sub')!r}")
    claims["k"] = key
    return claims


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status):
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self):
        received_at = int(time.time() * 1000)
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        path = self.path
        origin = f"http://{self.server.server_address[0]}:{self.server.server_address[1]}"
        if path.startswith("/push/gone/"):
            emit({"path": path, "status": 410, "receivedAt": received_at})
            return self.answer(410)
        if path.startswith("/push/flaky-"):
            n = int(path.split("/")[2].split("-")[1])
            with LOCK:
                seen = FLAKY_SEEN.get(path, 0)
                FLAKY_SEEN[path] = seen + 1
            if seen < n:
                emit({"path": path, "status": 503, "receivedAt": received_at})
                return self.answer(503)
        try:
            if self.headers.get("content-encoding") != "aes128gcm":
                raise ValueError(f"content-encoding {self.headers.get('content-encoding')!r}")
            if not self.headers.get("ttl", "").isdigit():
                raise ValueError("TTL header missing")
            claims = check_vapid(self.headers.get("authorization", ""), origin)
            plain = http_ece.decrypt(body, private_key=PRIVATE, auth_secret=AUTH, version="aes128gcm")
            payload = json.loads(plain)
        except Exception as e:  # every failure is reported, never hidden
            emit({"path": path, "status": 400, "error": f"{type(e).__name__}: {e}",
                  "receivedAt": received_at})
            return self.answer(400)
        emit({
            "path": path,
            "status": 201,
            "payload": payload,
            "jwt": claims,
            "headers": {h: self.headers.get(h) for h in ("ttl", "urgency", "content-encoding")},
            "bodyLength": len(body),
            "receivedAt": received_at,
        })
        self.answer(201)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host, port = server.server_address
    emit({"endpoint": f"http://{host}:{port}/push/", "p256dh": b64url(PUBLIC), "auth": b64url(AUTH)})
    # Ends when the test closes our stdin (or dies).
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
