"""Certificates for a test cluster: one CA, and the server and client certificates its parts present.

Kubernetes authenticates its own components by client certificate (the CN is the user, the O the
group: `system:node:NAME` in `system:nodes` for a kubelet, `system:kube-scheduler`, ...), so a
cluster made of real components needs one certificate per component, all from one CA. Keys are
ECDSA P-256 (fast to make); certificates are valid for two days.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_LEAF_USAGE = x509.KeyUsage(True, False, True, False, False, False, False, False, False)


@dataclass(frozen=True)
class Pair:
    """A certificate and its key, as files (what every Kubernetes component's flags take)."""

    cert: Path
    key: Path


class CA:
    """A certificate authority in FOLDER (ca.crt, ca.key) that issues server and client certificates there."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "segflow-test-ca")])
        cert = self._issue(self._name, self._key, [
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)])
        self.pair = self._write("ca", self._key, cert)

    @property
    def cert(self) -> Path:
        return self.pair.cert

    def server(self, stem: str, common_name: str, hosts: list[str]) -> Pair:
        """A serving certificate for HOSTS (DNS names and IP addresses)."""
        names = [x509.IPAddress(ipaddress.ip_address(h)) if _is_ip(h) else x509.DNSName(h) for h in hosts]
        return self._leaf(stem, common_name, None, ExtendedKeyUsageOID.SERVER_AUTH,
                          [(x509.SubjectAlternativeName(names), False)])

    def client(self, stem: str, user: str, group: str | None = None) -> Pair:
        """A client certificate: Kubernetes reads USER from the CN and GROUP from the O."""
        return self._leaf(stem, user, group, ExtendedKeyUsageOID.CLIENT_AUTH, [])

    def service_account_keys(self) -> Pair:
        """The key pair service-account tokens are signed with (sa.key) and checked against (sa.pub)."""
        key = ec.generate_private_key(ec.SECP256R1())
        pub = self.folder / "sa.pub"
        pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
        return Pair(pub, self._write_key("sa", key))

    def _leaf(self, stem: str, common: str, organization: str | None, usage, extensions: list) -> Pair:
        key = ec.generate_private_key(ec.SECP256R1())
        parts = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
        if organization:
            parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        cert = self._issue(x509.Name(parts), key, [
            (x509.BasicConstraints(ca=False, path_length=None), True), (_LEAF_USAGE, True),
            (x509.ExtendedKeyUsage([usage]), False), *extensions])
        return self._write(stem, key, cert)

    def _issue(self, subject: x509.Name, key, extensions: list) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(self._name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=2)))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(self._key, hashes.SHA256())

    def _write(self, stem: str, key, cert: x509.Certificate) -> Pair:
        path = self.folder / f"{stem}.crt"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return Pair(path, self._write_key(stem, key))

    def _write_key(self, stem: str, key) -> Path:
        path = self.folder / f"{stem}.key"
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        path.chmod(0o600)
        return path


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
