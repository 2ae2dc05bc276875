"""Registering devices for the benches, through the hub's own registration code, without HTTP.

``register_devices`` opens the hub's data dir (its CA, keys and store: ``Hub(settings)``, the
controller not started) and, per device, does what ``edgefleet device register`` and the hub's
``POST /devices`` do together: an EC P-256 key and a signing request made as the CLI makes them
(``new_key_and_csr``), ``Registry.register_device`` (the CA signs a client certificate with subject
CN = device id; the store records the device and the credential's serial), and the CLI's bundle
with the private key added. The broker accepts these certificates exactly as any registered
device's (same CA, same code), and the hub listens to these devices (they are in its store).

About 2 ms a device on a 2-core machine, so a fleet of 1,000 takes seconds, not minutes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edgefleet.hub.cli.bootstrap import new_key_and_csr, write_bundle
from edgefleet.hub.schemas import DeviceCreate
from edgefleet.hub.server.core import Hub
from edgefleet.hub.server.settings import HubSettings
from tests.support.identities import DeviceIdentity, identity_files


@dataclass(frozen=True)
class ClientFiles:
    """What an MQTT client of one device reads: the hub CA, the device's certificate and key."""

    device_id: str
    ca_file: Path
    cert_file: Path
    key_file: Path


def register_devices(
    hub_data_dir: Path, broker_url: str, device_ids: Iterable[str], out: Path, *, bundles: bool = False
) -> list[ClientFiles]:
    """Register each id at the hub whose data dir is ``hub_data_dir``; write ``out/ca.pem`` and
    ``out/<id>.pem`` / ``out/<id>.key`` (0600), and with ``bundles`` also ``out/<id>.bootstrap.json``."""
    out.mkdir(parents=True, exist_ok=True)
    hub = Hub(HubSettings(data_dir=hub_data_dir, port=0, broker_url=broker_url))
    files = []
    try:
        ca_file = out / "ca.pem"
        ca_file.write_text(hub.ca.cert_pem)
        for device_id in device_ids:
            key_pem, csr = new_key_and_csr(device_id)
            registration = hub.registry.register_device(DeviceCreate(device_id=device_id, csr=csr))
            cert_file, key_file = out / f"{device_id}.pem", out / f"{device_id}.key"
            cert_file.write_text(registration.bundle.client_certificate or "")
            key_file.touch(mode=0o600)
            key_file.write_text(key_pem)
            if bundles:
                bundle = registration.bundle.model_copy(update={"client_key": key_pem})
                write_bundle(out / f"{device_id}.bootstrap.json", bundle)
            files.append(ClientFiles(device_id, ca_file, cert_file, key_file))
    finally:
        hub.store.close()
    return files


def register_device(hub_data_dir: Path, broker_url: str, device_id: str, out: Path) -> DeviceIdentity:
    """One device, with its bootstrap bundle (for ``edgefleet-agent --bootstrap``)."""
    register_devices(hub_data_dir, broker_url, [device_id], out, bundles=True)
    return identity_files(out / f"{device_id}.bootstrap.json", out / device_id)
