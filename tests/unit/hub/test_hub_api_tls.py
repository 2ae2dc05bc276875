"""The hub API's TLS decisions: which names its certificate carries, when it is issued again, which
settings go together, when plain HTTP is warned about; and the files, key 0600."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from edgefleet.hub.certs import fingerprint, normalize_fingerprint
from edgefleet.hub.errors import SettingsError
from edgefleet.hub.server import pki
from edgefleet.hub.server.api_tls import (
    check_settings,
    covers,
    default_server_names,
    is_loopback,
    plain_http_warning,
    reissue_reason,
    served_certificate,
)
from edgefleet.hub.server.ca import CertificateAuthority
from edgefleet.hub.server.settings import HubSettings

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("host", "public_url", "names"),
    [
        ("127.0.0.1", None, ("localhost", "127.0.0.1")),
        ("0.0.0.0", None, ("localhost", "127.0.0.1")),
        ("10.0.0.5", None, ("localhost", "127.0.0.1", "10.0.0.5")),
        ("hub.lan", None, ("localhost", "127.0.0.1")),  # a name is not known to be the hub's until said
        ("0.0.0.0", "https://hub.lan:8443", ("localhost", "127.0.0.1", "hub.lan")),
        ("10.0.0.5", "https://10.0.0.5:8443/", ("localhost", "127.0.0.1", "10.0.0.5")),
    ],
)
def test_default_names_are_this_machine_the_listen_ip_and_the_public_host(
    host: str, public_url: str | None, names: tuple[str, ...]
) -> None:
    assert default_server_names(host, public_url) == names


def test_names_cover_a_host_exactly_or_by_one_wildcard_label() -> None:
    assert covers(["hub.lan", "10.0.0.5"], "HUB.lan") and covers(["10.0.0.5"], "10.0.0.5")
    assert covers(["::1"], "[::1]") and covers(["0:0:0:0:0:0:0:1"], "::1")
    assert covers(["*.example.com"], "hub.example.com")
    assert not covers(["*.example.com"], "a.hub.example.com") and not covers(["*.example.com"], "example.com")
    assert not covers(["hub.lan"], "10.0.0.5") and not covers([], "localhost")


def test_loopback_is_localhost_and_loopback_addresses_only() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.1.2.3") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("10.0.0.5")
    assert not is_loopback("hub.lan")


def test_the_certificate_is_issued_again_only_when_it_no_longer_serves() -> None:
    ca_key = pki.new_key()
    ca = pki.build_ca(ca_key, NOW)
    cert = pki.build_server_cert(ca, ca_key, pki.new_key().public_key(), ["localhost", "127.0.0.1"], NOW)
    assert reissue_reason(None, False, ["localhost"], NOW) == "none was issued yet"
    assert reissue_reason(cert, False, ["localhost", "127.0.0.1"], NOW) == "it is not from this hub's CA"
    assert reissue_reason(cert, True, ["127.0.0.1", "LOCALHOST"], NOW) is None  # same names, any order or case
    changed = reissue_reason(cert, True, ["localhost", "127.0.0.1", "hub.lan"], NOW)
    assert changed == "its names localhost, 127.0.0.1 are not localhost, 127.0.0.1, hub.lan"
    late = cert.not_valid_after_utc - timedelta(days=29)
    assert reissue_reason(cert, True, ["localhost", "127.0.0.1"], late) == (
        f"it expires {cert.not_valid_after_utc:%Y-%m-%d}"
    )
    assert pki.alt_names(cert) == ("localhost", "127.0.0.1")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tls_cert_file": "/c.pem"}, "give both --tls-cert and --tls-key"),
        ({"tls_key_file": "/k.pem"}, "give both --tls-cert and --tls-key"),
        ({"tls_cert_file": "/c", "tls_key_file": "/k", "server_names": ["h"]}, "with --tls-cert the names are"),
        ({"server_names": ["hub.lan"]}, "give --tls as well"),
        ({"tls": True, "public_url": "http://hub.lan:8080"}, "is not https://, but the hub serves HTTPS"),
    ],
)
def test_tls_settings_that_cannot_work_together_are_named(settings: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        check_settings(HubSettings.model_validate(settings))


def test_urls_are_https_with_tls() -> None:
    assert HubSettings(port=8443, tls=True).base_url == "https://127.0.0.1:8443"
    assert HubSettings(host="::1", port=8080).local_url == "http://[::1]:8080"
    assert HubSettings(host="0.0.0.0", tls=True, public_url="https://hub.lan:8443/").base_url == "https://hub.lan:8443"
    own = HubSettings(tls_cert_file=Path("/c"), tls_key_file=Path("/k"))
    assert own.api_tls and own.base_url.startswith("https://")


def test_server_names_come_comma_separated_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFLEET_HUB_SERVER_NAMES", "hub.lan, 10.0.0.5")
    monkeypatch.setenv("EDGEFLEET_HUB_TLS", "1")
    settings = HubSettings()
    assert settings.server_names == ["hub.lan", "10.0.0.5"] and settings.api_tls


def test_plain_http_beyond_loopback_is_warned_about_naming_what_crosses_in_clear() -> None:
    assert plain_http_warning(HubSettings(host="127.0.0.1")) is None
    assert plain_http_warning(HubSettings(host="0.0.0.0", tls=True)) is None
    warning = plain_http_warning(HubSettings(host="0.0.0.0", port=8080))
    assert warning is not None and warning.startswith("hub API on http://0.0.0.0:8080 without TLS")
    for what in ("operator tokens", "download grants", "artifacts", "in clear", "edgefleet hub serve --tls"):
        assert what in warning


def test_the_hub_ca_certificate_is_kept_and_issued_again_when_its_names_change(tmp_path: Path) -> None:
    settings = HubSettings(data_dir=tmp_path, tls=True)
    ca = CertificateAuthority.load_or_create(settings.ca_dir)
    served = served_certificate(settings, ca)
    assert served is not None and served.from_hub_ca and served.names == ("localhost", "127.0.0.1")
    assert (served.cert_file, served.key_file) == (tmp_path / "identity" / "api.pem", tmp_path / "identity" / "api.key")
    assert served.key_file.stat().st_mode & 0o777 == 0o600 and served.cert_file.parent.stat().st_mode & 0o777 == 0o700
    cert = pki.load_cert(served.cert_file.read_bytes())
    assert ca.issued(cert) and pki.alt_names(cert) == ("localhost", "127.0.0.1")
    assert pki.load_cert(served_certificate(settings, ca).cert_file.read_bytes()) == cert  # type: ignore[union-attr]

    renamed = settings.model_copy(update={"server_names": ["hub.lan", "10.0.0.5"]})
    again = served_certificate(renamed, ca)
    assert again is not None and pki.alt_names(pki.load_cert(again.cert_file.read_bytes())) == ("hub.lan", "10.0.0.5")

    other = CertificateAuthority.load_or_create(tmp_path / "other-ca")
    assert other.issued(pki.load_cert(served_certificate(renamed, other).cert_file.read_bytes()))  # type: ignore[union-attr]
    assert served_certificate(HubSettings(data_dir=tmp_path), ca) is None  # plain HTTP


def test_a_certificate_that_does_not_name_the_public_host_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = HubSettings(data_dir=tmp_path, tls=True, server_names=["localhost"], public_url="https://hub.lan:8443")
    with caplog.at_level(logging.WARNING):
        served_certificate(settings, CertificateAuthority.load_or_create(settings.ca_dir))
    assert "is not valid for hub.lan, the host in the hub's public URL" in caplog.text
    assert "add it with --server-name" in caplog.text


def test_the_operators_own_certificate_is_checked_at_start(tmp_path: Path) -> None:
    public_ca = CertificateAuthority.load_or_create(tmp_path / "public-ca")
    cert, key = public_ca.issue_server(["localhost", "127.0.0.1"], datetime.now(timezone.utc))
    (tmp_path / "c.pem").write_bytes(pki.cert_pem(cert))
    (tmp_path / "k.pem").write_bytes(pki.key_pem(key))
    (tmp_path / "k.pem").chmod(0o600)
    hub_ca = CertificateAuthority.load_or_create(tmp_path / "ca")

    def settings(cert_file: str, key_file: str) -> HubSettings:
        return HubSettings(data_dir=tmp_path, tls_cert_file=tmp_path / cert_file, tls_key_file=tmp_path / key_file)

    served = served_certificate(settings("c.pem", "k.pem"), hub_ca)
    assert served is not None and not served.from_hub_ca and served.cert_file == tmp_path / "c.pem"
    assert not (tmp_path / "identity" / "api.pem").exists()  # the hub CA issues nothing then
    with pytest.raises(SettingsError, match=r"none\.pem does not exist"):
        served_certificate(settings("none.pem", "k.pem"), hub_ca)
    (tmp_path / "other.key").write_bytes(pki.key_pem(pki.new_key()))
    with pytest.raises(SettingsError, match="not a PEM certificate and its matching private key"):
        served_certificate(settings("c.pem", "other.key"), hub_ca)
    old, old_key = public_ca.issue_server(["localhost"], datetime(2020, 1, 1, tzinfo=timezone.utc))
    (tmp_path / "old.pem").write_bytes(pki.cert_pem(old))
    (tmp_path / "old.key").write_bytes(pki.key_pem(old_key))
    with pytest.raises(SettingsError, match="the certificate expired"):
        served_certificate(settings("old.pem", "old.key"), hub_ca)


def test_fingerprints_are_sha256_of_the_der_bytes_in_any_common_spelling(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    value = fingerprint(ca.cert_pem)
    assert value == "sha256:" + ca.cert.fingerprint(hashes.SHA256()).hex()
    openssl = ":".join(value[7:][i : i + 2] for i in range(0, 64, 2)).upper()
    assert normalize_fingerprint(openssl) == normalize_fingerprint(value[7:]) == value
    with pytest.raises(ValueError, match="expected sha256:<64 hex digits>"):
        normalize_fingerprint("sha256:abc")
    with pytest.raises(ValueError, match="not a PEM certificate"):
        fingerprint("hello")
