"""The bootstrap bundle on the device: its values beneath the other settings, installed 0600, its parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgefleet.agent.bootstrap import install, installed_bundle, mqtt_credentials, read_bundle
from edgefleet.agent.errors import SettingsError
from edgefleet.agent.settings import load_settings
from edgefleet.protocol import HubKey
from edgefleet.protocol.bootstrap import BootstrapBundle

KEY = HubKey.generate()


def _bundle(**changes: object) -> BootstrapBundle:
    base = BootstrapBundle(
        device_id="dev-1",
        hub_url="http://hub.lan:8080",
        broker_url="mqtts://broker.lan:8883",
        ca_certificate="-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n",
        hub_public_key=KEY.public_key_b64,
        hub_key_id=KEY.key_id,
        client_certificate="-----BEGIN CERTIFICATE-----\nDEV\n-----END CERTIFICATE-----\n",
        client_key="-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----\n",
    )
    return base.model_copy(update=changes)


def _write(path: Path, bundle: BootstrapBundle) -> Path:
    path.write_text(bundle.model_dump_json(by_alias=True))
    path.chmod(0o600)
    return path


def test_bundle_values_are_defaults_beneath_flags(tmp_path: Path) -> None:
    path = _write(tmp_path / "b.json", _bundle())
    s = load_settings(None, bootstrap=path, data_dir=tmp_path / "data")
    assert (s.device_id, s.hub_url, s.mqtt.broker_url, s.hub_public_key) == (
        "dev-1",
        "http://hub.lan:8080",
        "mqtts://broker.lan:8883",
        KEY.public_key_b64,
    )
    assert s.mqtt.tls and s.mqtt.port == 8883
    flagged = load_settings(None, bootstrap=path, hub_url="http://other:1", mqtt={"broker_url": "mqtts://b:1"})
    assert (flagged.hub_url, flagged.mqtt.broker_url) == ("http://other:1", "mqtts://b:1")
    with pytest.raises(SettingsError, match="is for device dev-1, not dev-2"):
        load_settings(None, bootstrap=path, device_id="dev-2")


def test_installed_bundle_serves_later_starts_and_keeps_secrets_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = _write(tmp_path / "b.json", _bundle())
    creds = mqtt_credentials(path, data, tls=True)
    identity = data / "identity"
    assert (creds.ca_file, creds.cert_file, creds.key_file) == (
        identity / "ca.pem",
        identity / "client.pem",
        identity / "client.key",
    )
    assert (identity / "client.key").stat().st_mode & 0o777 == 0o600
    assert installed_bundle(data).stat().st_mode & 0o777 == 0o600
    assert identity.stat().st_mode & 0o777 == 0o700
    path.unlink()  # the operator removes the copy; the device id alone finds the installed bundle
    s = load_settings(None, device_id="dev-1", data_dir=data)
    assert s.bootstrap == installed_bundle(data) and s.hub_public_key == KEY.public_key_b64
    assert "SECRET" not in repr(read_bundle(installed_bundle(data))) and "SECRET" not in repr(creds)


def test_password_bundles_give_a_username_and_password(tmp_path: Path) -> None:
    bundle = _bundle(auth="password", client_certificate=None, client_key=None, username="dev-1", password="pw")
    s = load_settings(None, bootstrap=_write(tmp_path / "b.json", bundle), data_dir=tmp_path / "d")
    assert (s.mqtt.username, s.mqtt.password) == ("dev-1", "pw") and "pw" not in repr(s)
    install(bundle, tmp_path / "d")
    creds = mqtt_credentials(s.bootstrap, tmp_path / "d", tls=True, username="dev-1", password="pw")
    assert creds.cert_file is None and creds.ca_file == tmp_path / "d" / "identity" / "ca.pem"


def test_bad_bundles_are_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"missing\.json: cannot read it"):
        read_bundle(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text(json.dumps({"deviceId": "dev-1"}))
    with pytest.raises(SettingsError, match="not an edgefleet bootstrap bundle"):
        read_bundle(tmp_path / "x.json")
    no_key = _write(tmp_path / "k.json", _bundle(client_key=None))
    with pytest.raises(SettingsError, match="client_key missing for auth 'certificate'"):
        read_bundle(no_key)
