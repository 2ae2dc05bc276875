"""Pure X.509 building for the hub's CA: keys, certificates, CSRs, the CRL. No files, no clock.

Every function takes the time it should use (``now``) and returns objects or PEM bytes, so the unit
tests pin subjects, extensions, validity and CRL contents exactly. ``ca.py`` keeps the CA on disk.

- the CA: EC P-256, basic constraints CA (path length 0), key usage certificate and CRL signing;
- a client certificate: subject CN = the identity (a device id, or ``edgefleet-hub``), extended
  key usage clientAuth only, so it cannot serve as a broker's certificate;
- a server certificate (the broker's, the hub API's): subject alternative names (DNS names and IP
  addresses), extended key usage serverAuth only;
- the CRL: every revoked serial whose certificate has not expired yet.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "edgefleet hub CA"
CA_DAYS = 20 * 365
CLIENT_DAYS = 5 * 365
SERVER_DAYS = 825
CRL_DAYS = 365
# Issued a little in the past: a device whose clock lags the hub's must still accept a fresh certificate.
BACKDATE = timedelta(minutes=5)

PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Revoked:
    """One revoked certificate, as the CRL lists it."""

    serial: int
    revoked_at: datetime
    not_after: datetime


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ski(key: ec.EllipticCurvePublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key)


def _usage(*, digital_signature: bool = False, signing: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signing,
        crl_sign=signing,
        encipher_only=False,
        decipher_only=False,
    )


def build_ca(key: PrivateKey, now: datetime, days: int = CA_DAYS, name: str = CA_NAME) -> x509.Certificate:
    """A self-signed CA certificate that may sign leaf certificates and CRLs, nothing below them."""
    subject = _name(name)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(signing=True), critical=True)
        .add_extension(_ski(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _leaf(
    ca: x509.Certificate,
    ca_key: PrivateKey,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime,
    days: int,
    serial: int,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + timedelta(days=days), ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(digital_signature=True), critical=True)
        .add_extension(_ski(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )


def build_client_cert(
    ca: x509.Certificate,
    ca_key: PrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    identity: str,
    now: datetime,
    days: int = CLIENT_DAYS,
    serial: int | None = None,
) -> x509.Certificate:
    """A client certificate whose subject CN is ``identity`` (the broker's username for it)."""
    return (
        _leaf(ca, ca_key, _name(identity), public_key, now, days, serial or x509.random_serial_number())
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def build_server_cert(
    ca: x509.Certificate,
    ca_key: PrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    hosts: Sequence[str],
    now: datetime,
    days: int = SERVER_DAYS,
) -> x509.Certificate:
    """A server's certificate (the broker's, the hub API's): valid for each of ``hosts`` (DNS names or IP addresses)."""
    if not hosts:
        raise ValueError("a server certificate needs at least one host name or IP address")
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return (
        _leaf(ca, ca_key, _name(hosts[0]), public_key, now, days, x509.random_serial_number())
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def build_crl(
    ca: x509.Certificate, ca_key: PrivateKey, revoked: Iterable[Revoked], now: datetime, days: int = CRL_DAYS
) -> x509.CertificateRevocationList:
    """The CRL of ``revoked``, leaving out certificates that expired anyway (no broker accepts them)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now - BACKDATE)
        .next_update(now + timedelta(days=days))
    )
    for item in sorted(revoked, key=lambda r: r.serial):
        if item.not_after <= now:
            continue
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(item.serial).revocation_date(item.revoked_at).build()
        )
    return builder.sign(ca_key, hashes.SHA256())


# certificate signing requests (the CLI makes them: hub/cli/bootstrap.py) -------------------------
def csr_public_key(csr_pem: str | bytes, identity: str) -> ec.EllipticCurvePublicKey:
    """The public key of a CSR that is well-signed and names ``identity``; ValueError says what is wrong.

    Only the key is taken: the CA decides subject, validity and extensions itself.
    """
    data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise ValueError(f"not a PEM certificate signing request: {exc}") from None
    if not csr.is_signature_valid:
        raise ValueError("the certificate signing request's signature does not verify")
    names = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [identity]:
        raise ValueError(f"the certificate signing request names {names or 'no common name'}, not {identity!r}")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("the certificate signing request's key must be EC P-256 (secp256r1)")
    return key


# PEM -------------------------------------------------------------------------------------------
def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def load_key(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("not an EC private key")
    return key


def alt_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The DNS names and IP addresses a server certificate is valid for (none: no such extension)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return (*san.get_values_for_type(x509.DNSName), *ips)


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def serial_hex(serial: int) -> str:
    return f"{serial:x}"
