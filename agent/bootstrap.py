"""The device's side of provisioning: read the bootstrap bundle, install it, and hand out its parts.

``edgefleet-agent --bootstrap FILE`` reads the bundle ``edgefleet device register`` wrote. Its values
(device id, hub and broker URLs, the hub's manifest key, a username and password) become defaults
beneath every other settings source, and the bundle is installed into the data dir:

    <data-dir>/identity/bootstrap.json   the bundle itself (0600): later starts need only the device id
    <data-dir>/identity/ca.pem           the hub's CA: the broker's certificate must chain to it
    <data-dir>/identity/client.pem       the device's client certificate (subject CN = device id)
    <data-dir>/identity/client.key       its private key (0600)

The agent's MQTT client reads the PEM files from there (TLS needs them as files), and the CA also
verifies an https:// hub (``hubtls``). Nothing of the bundle's secrets is logged;
``BootstrapBundle``'s repr leaves them out.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgefleet.agent.errors import SettingsError
from edgefleet.protocol.bootstrap import BootstrapBundle
from edgefleet.protocol.files import write_atomic

log = logging.getLogger(__name__)

IDENTITY_DIR = "identity"
BUNDLE_FILE = "bootstrap.json"


@dataclass(frozen=True)
class MqttCredentials:
    """What the MQTT link proves itself with: TLS files (mqtts) and/or a username and password."""

    tls: bool = False
    ca_file: Path | None = None  # None: the system's trusted CAs
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        return f"MqttCredentials(tls={self.tls}, cert_file={self.cert_file}, username={self.username!r})"


def installed_bundle(data_dir: Path) -> Path:
    return data_dir / IDENTITY_DIR / BUNDLE_FILE


def bundle_ca_file(bootstrap: Path | None, data_dir: Path) -> Path | None:
    """The bundle's CA as installed (by ``mqtt_credentials``), if the agent runs from a bundle."""
    return installed_bundle(data_dir).parent / "ca.pem" if bootstrap is not None else None


def read_bundle(path: Path) -> BootstrapBundle:
    try:
        text = path.read_text()
        mode = path.stat().st_mode
    except OSError as exc:
        raise SettingsError(
            f"bootstrap bundle {path}: cannot read it ({exc.strerror}); `edgefleet device register` writes one"
        ) from None
    try:
        bundle = BootstrapBundle.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the file"
        raise SettingsError(
            f"bootstrap bundle {path}: not an edgefleet bootstrap bundle ({where}: {first['msg']})"
        ) from None
    missing = bundle.missing()
    if missing:
        raise SettingsError(f"bootstrap bundle {path}: {', '.join(missing)} missing for auth {bundle.auth!r}")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "bootstrap bundle %s is readable by others (mode %o); it holds the device's secret", path, mode & 0o777
        )
    return bundle


def bundle_settings(bundle: BootstrapBundle) -> dict[str, Any]:
    """The settings a bundle gives (pure): defaults beneath flags, environment and settings file."""
    mqtt: dict[str, Any] = {"broker_url": bundle.broker_url}
    if bundle.auth == "password":
        mqtt |= {"username": bundle.username, "password": bundle.password}
    return {
        "device_id": bundle.device_id,
        "hub_url": bundle.hub_url,
        "hub_public_key": bundle.hub_public_key,
        "mqtt": mqtt,
    }


def install(bundle: BootstrapBundle, data_dir: Path) -> Path:
    """Write the bundle and its PEM parts into ``<data_dir>/identity`` (0700; secrets 0600)."""
    directory = data_dir / IDENTITY_DIR
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    write_atomic(directory / BUNDLE_FILE, bundle.model_dump_json(by_alias=True, indent=2).encode(), mode=0o600)
    write_atomic(directory / "ca.pem", bundle.ca_certificate.encode())
    if bundle.client_certificate and bundle.client_key:
        write_atomic(directory / "client.pem", bundle.client_certificate.encode())
        write_atomic(directory / "client.key", bundle.client_key.encode(), mode=0o600)
    return directory


def mqtt_credentials(
    bootstrap: Path | None,
    data_dir: Path,
    *,
    tls: bool,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    username: str | None = None,
    password: str | None = None,
) -> MqttCredentials:
    """The MQTT link's credentials: the settings' own files, else the bundle's (installed on the way)."""
    if bootstrap is not None:
        bundle = read_bundle(bootstrap)
        installed = installed_bundle(data_dir)
        if bootstrap.resolve() != installed.resolve() or not (installed.parent / "ca.pem").exists():
            install(bundle, data_dir)
            log.info("installed bootstrap bundle for %s into %s", bundle.device_id, installed.parent)
        identity = installed.parent
        ca_file = ca_file or identity / "ca.pem"
        if bundle.auth == "certificate" and cert_file is None:
            cert_file, key_file = identity / "client.pem", identity / "client.key"
    if (cert_file is None) != (key_file is None):
        raise SettingsError("give both mqtt.cert_file and mqtt.key_file, or neither")
    if not tls:
        if cert_file is not None and bootstrap is None:
            raise SettingsError("mqtt.cert_file needs a TLS broker: use an mqtts:// broker URL")
        return MqttCredentials(tls=False, username=username, password=password)
    for path in (ca_file, cert_file, key_file):
        if path is not None and not path.is_file():
            raise SettingsError(f"MQTT TLS file {path} does not exist")
    return MqttCredentials(True, ca_file, cert_file, key_file, username, password)
