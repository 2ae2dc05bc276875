"""The hub's certificate authority on disk, and the hub's own MQTT client identity.

    <data-dir>/ca/ca.pem         the CA certificate (public: every device and the broker trust it)
    <data-dir>/ca/ca.key         its private key, mode 0600, in a 0700 folder; never logged or sent
    <data-dir>/identity/hub.pem  the hub's client certificate (subject CN edgefleet-hub) ...
    <data-dir>/identity/hub.key  ... and its key, 0600

Created on first use, like the manifest key (``hub_key.pem``). Only the hub process and
``edgefleet hub broker-config`` (on the hub's machine, with the same data dir) open the CA key.
The certificate building itself is pure, in pki.py.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from edgefleet.hub.errors import SettingsError
from edgefleet.hub.server import pki
from edgefleet.protocol.files import write_atomic
from edgefleet.protocol.models import utcnow
from edgefleet.protocol.topics import HUB_IDENTITY

log = logging.getLogger(__name__)

RENEW_BEFORE = timedelta(days=30)  # the hub's own certificate is re-issued this long before it expires


@dataclass(frozen=True)
class TlsFiles:
    """What an MQTT client needs for TLS: whom to trust, and (optionally) who it is."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


class CertificateAuthority:
    def __init__(self, cert: x509.Certificate, key: pki.PrivateKey, cert_path: Path) -> None:
        self.cert = cert
        self._key = key
        self.cert_path = cert_path

    @classmethod
    def load_or_create(cls, directory: Path, now: datetime | None = None) -> CertificateAuthority:
        cert_path, key_path = directory / "ca.pem", directory / "ca.key"
        if cert_path.exists() and key_path.exists():
            try:
                return cls(pki.load_cert(cert_path.read_bytes()), pki.load_key(key_path.read_bytes()), cert_path)
            except (OSError, ValueError) as exc:
                raise SettingsError(
                    f"hub CA in {directory} is unreadable ({exc}); restore ca.pem and ca.key from a backup "
                    "(a new CA would lock out every provisioned device)"
                ) from None
        if cert_path.exists() or key_path.exists():
            raise SettingsError(
                f"hub CA in {directory}: one of ca.pem and ca.key is missing; restore both from a backup"
            )
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        key = pki.new_key()
        cert = pki.build_ca(key, now or utcnow())
        write_atomic(key_path, pki.key_pem(key), mode=0o600)
        write_atomic(cert_path, pki.cert_pem(cert))
        log.info("created the hub CA in %s (certificate %s)", directory, cert_path)
        return cls(cert, key, cert_path)

    @property
    def cert_pem(self) -> str:
        return pki.cert_pem(self.cert).decode()

    def issue_client(
        self, public_key: ec.EllipticCurvePublicKey, identity: str, now: datetime, days: int = pki.CLIENT_DAYS
    ) -> x509.Certificate:
        return pki.build_client_cert(self.cert, self._key, public_key, identity, now, days)

    def issue_server(self, hosts: list[str], now: datetime) -> tuple[x509.Certificate, pki.PrivateKey]:
        key = pki.new_key()
        return pki.build_server_cert(self.cert, self._key, key.public_key(), hosts, now), key

    def crl_pem(self, revoked: list[pki.Revoked], now: datetime) -> bytes:
        return pki.crl_pem(pki.build_crl(self.cert, self._key, revoked, now))

    def issued(self, cert: x509.Certificate) -> bool:
        """Whether this CA signed ``cert``."""
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


def hub_client_identity(ca: CertificateAuthority, directory: Path, now: datetime | None = None) -> TlsFiles:
    """The hub's own client certificate (CN edgefleet-hub), issued now if missing, near expiry or
    from another CA."""
    now = now or utcnow()
    cert_path, key_path = directory / "hub.pem", directory / "hub.key"
    if cert_path.exists() and key_path.exists():
        try:
            cert = pki.load_cert(cert_path.read_bytes())
            if ca.issued(cert) and cert.not_valid_after_utc - RENEW_BEFORE > now:
                return TlsFiles(ca.cert_path, cert_path, key_path)
        except ValueError:
            pass
    key = pki.new_key()
    cert = ca.issue_client(key.public_key(), HUB_IDENTITY, now, days=pki.SERVER_DAYS)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    write_atomic(key_path, pki.key_pem(key), mode=0o600)
    write_atomic(cert_path, pki.cert_pem(cert))
    log.info("issued the hub's MQTT client certificate %s (subject %s)", cert_path, HUB_IDENTITY)
    return TlsFiles(ca.cert_path, cert_path, key_path)
