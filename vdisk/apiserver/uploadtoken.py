"""Upload tokens: `UploadTokenRequest` answers with a signed, short-lived token for one PVC.

Upstream: CDI pkg/apiserver/apiserver.go and pkg/token/token.go: a compact JWS signed PS256 with the
server's RSA key; claims iss "cdi-apiserver", iat, nbf, exp = now + 5 min, and the private claims
{"operation": "Upload", "name": <pvc>, "namespace": <ns>, "resource": {group "", version v1,
resource persistentvolumeclaims}}. The proxy checks it with 10 s of leeway when a request starts, so a
long upload outlives its token. The key lives in DATA_DIR/pki/upload-token.key.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ISSUER = "cdi-apiserver"
LIFETIME = 300
LEEWAY = 10
PVC_RESOURCE = {"group": "", "version": "v1", "resource": "persistentvolumeclaims"}


class TokenError(Exception):
    """Invalid or expired (401) unless `bad_request` (400: wrong operation or resource)."""

    def __init__(self, message: str, bad_request: bool = False):
        super().__init__(message)
        self.message = message
        self.bad_request = bad_request


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)  # RFC 7518 PS256: salt = hash size


class TokenSigner:
    def __init__(self, key_path: Path):
        if key_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            assert isinstance(key, rsa.RSAPrivateKey)
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            key_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
        self.key = key

    def issue(self, namespace: str, pvc: str, now: float | None = None, lifetime: int = LIFETIME) -> str:
        t = int(now if now is not None else time.time())
        header = {"alg": "PS256", "typ": "JWT"}
        claims = {"iss": ISSUER, "iat": t, "nbf": t, "exp": t + lifetime, "operation": "Upload", "name": pvc,
                  "namespace": namespace, "resource": PVC_RESOURCE}
        signing = f"{_b64(json.dumps(header, separators=(',', ':')).encode())}." \
                  f"{_b64(json.dumps(claims, separators=(',', ':')).encode())}"
        sig = self.key.sign(signing.encode(), _pss(), hashes.SHA256())
        return f"{signing}.{_b64(sig)}"

    def verify(self, token: str, now: float | None = None) -> dict[str, Any]:
        """The claims of a valid upload token; raises TokenError."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("invalid token: not a compact JWS")
        try:
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
            sig = _unb64(parts[2])
        except ValueError as exc:
            raise TokenError(f"invalid token: {exc}") from exc
        if header.get("alg") != "PS256":
            raise TokenError("invalid token: unexpected signing algorithm")
        try:
            self.key.public_key().verify(sig, f"{parts[0]}.{parts[1]}".encode(), _pss(), hashes.SHA256())
        except InvalidSignature as exc:
            raise TokenError("invalid token: bad signature") from exc
        t = now if now is not None else time.time()
        if claims.get("iss") != ISSUER:
            raise TokenError("invalid token: wrong issuer")
        if t > float(claims.get("exp", 0)) + LEEWAY:
            raise TokenError("invalid token: token is expired")
        if t + LEEWAY < float(claims.get("nbf", 0)):
            raise TokenError("invalid token: token is not valid yet")
        if claims.get("operation") != "Upload" or claims.get("resource") != PVC_RESOURCE:
            raise TokenError("invalid token: not an upload token for a PersistentVolumeClaim", bad_request=True)
        return dict(claims)
