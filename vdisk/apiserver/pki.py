"""A private CA and the API server's certificate, created once under DATA_DIR/pki.

Like kind/k3s: the CA signs a server certificate whose SANs cover localhost, the listen address and
this host's name. The certificate is re-issued when the listen host is not among its SANs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class PKI:
    def __init__(self, directory: Path):
        self.dir = directory
        self.ca_cert = directory / "ca.crt"
        self.ca_key = directory / "ca.key"
        self.server_cert = directory / "server.crt"
        self.server_key = directory / "server.key"

    def ensure(self, hosts: list[str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        if not (self.ca_cert.exists() and self.ca_key.exists()):
            self._make_ca()
        if not self._server_cert_covers(hosts):
            self._make_server(hosts)

    def _make_ca(self) -> None:
        key = _key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vdisk-ca")])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        _write(self.ca_key, _pem_key(key))
        _write(self.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)

    def _sans(self, hosts: list[str]) -> list[x509.GeneralName]:
        names = {"localhost", socket.gethostname(), "127.0.0.1", "::1", *hosts}
        out: list[x509.GeneralName] = []
        for h in sorted(n for n in names if n and n not in ("0.0.0.0", "::")):
            try:
                out.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                out.append(x509.DNSName(h))
        return out

    def _server_cert_covers(self, hosts: list[str]) -> bool:
        if not (self.server_cert.exists() and self.server_key.exists()):
            return False
        cert = x509.load_pem_x509_certificate(self.server_cert.read_bytes())
        if cert.not_valid_after_utc < dt.datetime.now(dt.UTC) + dt.timedelta(days=30):
            return False
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have = {str(v) for v in san.get_values_for_type(x509.DNSName)} | \
               {str(v) for v in san.get_values_for_type(x509.IPAddress)}
        return all(h in have for h in hosts if h and h not in ("0.0.0.0", "::"))

    def _make_server(self, hosts: list[str]) -> None:
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = _key()
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vdisk-apiserver")]))
                .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=825))
                .add_extension(x509.SubjectAlternativeName(self._sans(hosts)), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
        _write(self.server_key, _pem_key(key))
        _write(self.server_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
