"""The hub CA's certificates, pinned field by field: subject, issuer, extensions, validity, the CRL."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgefleet.hub.cli.bootstrap import new_key_and_csr
from edgefleet.hub.errors import SettingsError
from edgefleet.hub.server import pki
from edgefleet.hub.server.ca import CertificateAuthority, hub_client_identity

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def ca() -> tuple[x509.Certificate, pki.PrivateKey]:
    key = pki.new_key()
    return pki.build_ca(key, NOW), key


def _cn(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_ca_signs_certificates_and_crls_only_one_level_deep(ca: tuple[x509.Certificate, pki.PrivateKey]) -> None:
    cert, _ = ca
    assert _cn(cert.subject) == _cn(cert.issuer) == pki.CA_NAME
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert cert.not_valid_before_utc == NOW - pki.BACKDATE
    assert cert.not_valid_after_utc == NOW + timedelta(days=pki.CA_DAYS)


def test_client_certificate_names_the_device_and_serves_only_client_auth(
    ca: tuple[x509.Certificate, pki.PrivateKey],
) -> None:
    ca_cert, ca_key = ca
    key = pki.new_key()
    cert = pki.build_client_cert(ca_cert, ca_key, key.public_key(), "dev-1", NOW)
    assert _cn(cert.subject) == "dev-1" and cert.issuer == ca_cert.subject
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc == NOW + timedelta(days=pki.CLIENT_DAYS)
    cert.verify_directly_issued_by(ca_cert)
    # never beyond the CA's own validity
    long = pki.build_client_cert(ca_cert, ca_key, key.public_key(), "dev-1", NOW, days=pki.CA_DAYS * 2)
    assert long.not_valid_after_utc == ca_cert.not_valid_after_utc


def test_server_certificate_carries_dns_names_and_ip_addresses(ca: tuple[x509.Certificate, pki.PrivateKey]) -> None:
    ca_cert, ca_key = ca
    cert = pki.build_server_cert(ca_cert, ca_key, pki.new_key().public_key(), ["localhost", "127.0.0.1"], NOW)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH]
    )
    assert cert.not_valid_after_utc == NOW + timedelta(days=pki.SERVER_DAYS)
    with pytest.raises(ValueError, match="at least one host"):
        pki.build_server_cert(ca_cert, ca_key, pki.new_key().public_key(), [], NOW)


def test_crl_lists_revoked_serials_until_their_certificates_expire(
    ca: tuple[x509.Certificate, pki.PrivateKey],
) -> None:
    ca_cert, ca_key = ca
    revoked = [
        pki.Revoked(0x2A, NOW - timedelta(days=1), NOW + timedelta(days=10)),
        pki.Revoked(0x07, NOW - timedelta(hours=1), NOW + timedelta(days=10)),
        pki.Revoked(0x99, NOW - timedelta(days=400), NOW - timedelta(days=1)),  # expired: no need to list it
    ]
    crl = pki.build_crl(ca_cert, ca_key, revoked, NOW)
    assert crl.issuer == ca_cert.subject and crl.is_signature_valid(ca_cert.public_key())  # type: ignore[arg-type]
    assert [r.serial_number for r in crl] == [0x07, 0x2A]
    assert crl.get_revoked_certificate_by_serial_number(0x2A).revocation_date_utc == NOW - timedelta(days=1)  # type: ignore[union-attr]
    assert crl.next_update_utc == NOW + timedelta(days=pki.CRL_DAYS)
    assert list(pki.build_crl(ca_cert, ca_key, [], NOW)) == []


def test_csr_is_checked_and_only_its_key_is_taken() -> None:
    _, csr = new_key_and_csr("dev-1")
    key = pki.csr_public_key(csr, "dev-1")
    assert key.curve.name == "secp256r1"
    with pytest.raises(ValueError, match=r"names \['dev-1'\], not 'dev-2'"):
        pki.csr_public_key(csr, "dev-2")
    with pytest.raises(ValueError, match="not a PEM certificate signing request"):
        pki.csr_public_key("garbage", "dev-1")


def test_ca_on_disk_is_made_once_with_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    made = CertificateAuthority.load_or_create(tmp_path / "ca", NOW)
    assert (tmp_path / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "ca").stat().st_mode & 0o777 == 0o700
    again = CertificateAuthority.load_or_create(tmp_path / "ca")
    assert again.cert == made.cert
    (tmp_path / "ca" / "ca.key").unlink()
    with pytest.raises(SettingsError, match=r"one of ca\.pem and ca\.key is missing"):
        CertificateAuthority.load_or_create(tmp_path / "ca")


def test_hub_identity_is_issued_once_and_renewed_from_its_own_ca(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    files = hub_client_identity(ca, tmp_path / "identity")
    assert files.cert_file is not None and files.key_file is not None
    cert = pki.load_cert(files.cert_file.read_bytes())
    assert pki.common_name(cert) == "edgefleet-hub" and ca.issued(cert)
    assert files.key_file.stat().st_mode & 0o777 == 0o600
    assert hub_client_identity(ca, tmp_path / "identity").cert_file == files.cert_file
    assert pki.load_cert(files.cert_file.read_bytes()) == cert  # not re-issued
    other = CertificateAuthority.load_or_create(tmp_path / "other-ca")
    hub_client_identity(other, tmp_path / "identity")
    assert other.issued(pki.load_cert(files.cert_file.read_bytes()))  # re-issued by the CA now in use
