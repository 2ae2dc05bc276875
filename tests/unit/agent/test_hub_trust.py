"""Whom the agent believes is an https:// hub: the setting, else the bundle's CA, else the system's;
a bad CA file stops the agent at start with its name, and only certificate failures get the TLS advice."""

from __future__ import annotations

import ssl
import urllib.error
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgefleet.agent.bootstrap import bundle_ca_file
from edgefleet.agent.errors import SettingsError
from edgefleet.agent.hubtls import HubTrust, hub_ca_file
from edgefleet.agent.settings import load_settings


def _ca_file(path: Path) -> Path:
    """A self-signed CA certificate (what a bundle's caCertificate is), as a PEM file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_the_setting_beats_the_bundles_ca_which_beats_the_system(tmp_path: Path) -> None:
    bundle = bundle_ca_file(tmp_path / "dev.bootstrap.json", tmp_path / "data")
    assert bundle == tmp_path / "data" / "identity" / "ca.pem"
    assert bundle_ca_file(None, tmp_path / "data") is None
    assert hub_ca_file(Path("/etc/hub-ca.pem"), bundle) == Path("/etc/hub-ca.pem")
    assert hub_ca_file(None, bundle) == bundle and hub_ca_file(None, None) is None


def test_hub_ca_file_is_a_setting_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFLEET_AGENT_HUB_CA_FILE", "/etc/ssl/certs/ca-certificates.crt")
    assert load_settings(None, device_id="d").hub_ca_file == Path("/etc/ssl/certs/ca-certificates.crt")


def test_a_ca_file_is_read_at_start_and_a_bad_one_named(tmp_path: Path) -> None:
    ca = _ca_file(tmp_path / "ca.pem")
    trust = HubTrust.load(ca)
    assert trust.context is not None and trust.context.check_hostname
    assert trust.context.verify_mode == ssl.CERT_REQUIRED
    assert trust.describe() == f"the CA in {ca}"
    assert HubTrust.load(None) == HubTrust() and HubTrust().describe() == "the system's trusted CAs"
    with pytest.raises(SettingsError, match=r"none\.pem does not exist"):
        HubTrust.load(tmp_path / "none.pem")
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(SettingsError, match=r"junk\.pem: not a PEM CA certificate"):
        HubTrust.load(tmp_path / "junk.pem")


def test_only_a_certificate_that_does_not_verify_gets_the_tls_advice() -> None:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_code, error.verify_message = 20, "unable to get local issuer certificate"
    message = HubTrust().failure(urllib.error.URLError(error))
    assert message == (
        "the hub's certificate does not verify against the system's trusted CAs (unable to get local issuer "
        "certificate); set hub_ca_file (EDGEFLEET_AGENT_HUB_CA_FILE, --hub-ca-file) to the CA that issued the "
        "hub's certificate"
    )
    error.verify_code, error.verify_message = 64, "IP address mismatch, certificate is not valid for '10.0.0.5'."
    assert "not valid for this URL's host" in (HubTrust().failure(error) or "")
    assert HubTrust().failure(urllib.error.URLError(ConnectionRefusedError(111, "refused"))) is None
