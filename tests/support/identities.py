"""Provisioning for tests, the way operators do it: `device register` through the hub's API (key and
signing request made here), and the bootstrap bundle's parts as the files an MQTT client reads."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from edgefleet.hub.cli.bootstrap import provision
from edgefleet.hub.client import HubClient
from edgefleet.hub.schemas import Role, TokenCreate
from edgefleet.hub.server.runner import HubServer
from edgefleet.protocol.bootstrap import AuthKind, BootstrapBundle


@dataclass(frozen=True)
class DeviceIdentity:
    """A provisioned device: its bundle file, and the bundle's parts as files (TLS needs files)."""

    device_id: str
    bundle_file: Path
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = None


def identity_files(bundle_file: Path, directory: Path) -> DeviceIdentity:
    bundle = BootstrapBundle.model_validate_json(bundle_file.read_text())
    directory.mkdir(parents=True, exist_ok=True)
    ca = directory / "ca.pem"
    ca.write_text(bundle.ca_certificate)
    if bundle.auth == "password":
        return DeviceIdentity(bundle.device_id, bundle_file, ca, username=bundle.username, password=bundle.password)
    cert, key = directory / "client.pem", directory / "client.key"
    cert.write_text(bundle.client_certificate or "")
    key.write_text(bundle.client_key or "")
    key.chmod(0o600)
    return DeviceIdentity(bundle.device_id, bundle_file, ca, cert, key)


def register(
    hub: HubServer,
    device_id: str,
    workdir: Path,
    labels: dict[str, str] | None = None,
    auth: AuthKind = "certificate",
) -> DeviceIdentity:
    """Register ``device_id`` at the in-process hub, as an admin does, and return its identity (files
    under ``workdir/identities/<id>``)."""
    assert hub.hub is not None
    token = hub.hub.auth.issue(TokenCreate(name=f"registrar-{secrets.token_hex(3)}", role=Role.ADMIN)).token
    directory = workdir / "identities" / device_id
    directory.mkdir(parents=True, exist_ok=True)
    bundle_file = directory / "bootstrap.json"
    ca_file = hub.settings.ca_dir / "ca.pem" if hub.settings.api_tls else None  # an https hub: its own CA
    with HubClient(hub.url, token, ca_file=ca_file) as client:
        provision(client, device_id, labels or {}, bundle_file, auth, overwrite=True)
    return identity_files(bundle_file, directory)
