"""Device identities: credentials issued at registration, bootstrap bundles, revocation at the broker,
and the hub's own identity at the broker.

- certificate (default): the operator's CLI makes a key pair and a signing request naming the device;
  the hub CA signs a client certificate (subject CN = device id, clientAuth). The private key never
  leaves the operator's machine, and the hub stores only the serial and fingerprint.
- password (brokers without client certificates): the hub makes a random password, returns it once in
  the bundle and keeps only the broker's hash of it, for the password file it writes.

Revoking rewrites the CRL (or the password file) in the broker-config directory and reloads the
broker by its pid file; where the hub cannot, the answer says what to run.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime

from cryptography.hazmat.primitives import serialization

from edgefleet.hub.errors import InvalidRequest, SettingsError
from edgefleet.hub.server import pki
from edgefleet.hub.server.broker_config import (
    BrokerFiles,
    BrokerReload,
    hub_password,
    mosquitto_password_hash,
    new_password,
)
from edgefleet.hub.server.ca import CertificateAuthority, TlsFiles, hub_client_identity
from edgefleet.hub.server.mqtt_url import MqttConnection, parse_broker_url
from edgefleet.hub.server.rotation import HubKeys
from edgefleet.hub.server.settings import HubSettings
from edgefleet.hub.server.store import CredentialRecord, Store
from edgefleet.protocol.bootstrap import AuthKind, BootstrapBundle
from edgefleet.protocol.topics import HUB_IDENTITY

log = logging.getLogger(__name__)


class Identities:
    def __init__(self, settings: HubSettings, store: Store, ca: CertificateAuthority, keys: HubKeys) -> None:
        self.settings = settings
        self.store = store
        self.ca = ca
        self.keys = keys
        self.broker = self._broker_files()

    def _broker_files(self) -> BrokerFiles | None:
        recorded = BrokerFiles.recorded(self.settings.data_dir)
        directory = self.settings.broker_config_dir
        if directory is None:
            return recorded
        if recorded is not None and recorded.directory == directory.resolve():
            return recorded
        return BrokerFiles(directory.resolve(), "password" if self.settings.mqtt_auth == "password" else "certificate")

    # the hub at the broker ---------------------------------------------------------------------
    def connection(self) -> MqttConnection:
        s = self.settings
        address = parse_broker_url(s.broker_url)
        auth = s.mqtt_auth or ((self.broker.auth if self.broker else "certificate") if address.tls else "none")
        if auth == "certificate" and not address.tls:
            raise SettingsError(
                f"broker {s.broker_url}: client certificates need TLS; use an mqtts:// URL or set mqtt_auth"
            )
        tls = None
        if address.tls:
            ca_file = s.mqtt_ca_file or self.ca.cert_path
            if auth != "certificate":
                tls = TlsFiles(ca_file)
            elif s.mqtt_cert_file and s.mqtt_key_file:
                tls = TlsFiles(ca_file, s.mqtt_cert_file, s.mqtt_key_file)
            elif s.mqtt_cert_file or s.mqtt_key_file:
                raise SettingsError("give both mqtt_cert_file and mqtt_key_file, or neither (the hub CA issues them)")
            else:
                own = hub_client_identity(self.ca, s.identity_dir)
                tls = TlsFiles(ca_file, own.cert_file, own.key_file)
        username = password = None
        if auth == "password":
            username, password = s.mqtt_username or HUB_IDENTITY, self._hub_password()
        return MqttConnection(s.broker_url, address, tls, username, password)

    def _hub_password(self) -> str:
        path = self.settings.mqtt_password_file
        if path is None:
            return hub_password(self.settings.identity_dir)
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise SettingsError(
                f"mqtt_password_file {path}: {exc.strerror}; give the hub's broker password there"
            ) from None

    # devices -----------------------------------------------------------------------------------
    def issue(
        self, device_id: str, auth: AuthKind, csr: str | None, now: datetime
    ) -> tuple[CredentialRecord, BootstrapBundle]:
        """A new credential for ``device_id`` and the bundle that carries it (no private key: see above)."""
        if self.broker is not None and self.broker.auth != auth:
            raise InvalidRequest(
                f"device {device_id}: this hub's broker takes {self.broker.auth} identities (`hub broker-config "
                f"--auth {self.broker.auth}` in {self.broker.directory}); register it with --auth {self.broker.auth}"
            )
        bundle = BootstrapBundle(
            device_id=device_id,
            hub_url=self.settings.base_url,
            broker_url=self.settings.bundle_broker_url,
            ca_certificate=self.ca.cert_pem,
            hub_public_key=self.keys.current.public_key_b64,
            hub_key_id=self.keys.current.key_id,
            auth=auth,
        )
        if auth == "password":
            password = new_password()
            record = CredentialRecord(
                device_id=device_id, kind="password", password_hash=mosquitto_password_hash(password), issued_at=now
            )
            return record, bundle.model_copy(update={"username": device_id, "password": password})
        if not csr:
            raise InvalidRequest(
                f"device {device_id}: auth 'certificate' needs a certificate signing request (csr) naming the device; "
                "`edgefleet device register` makes one"
            )
        try:
            public_key = pki.csr_public_key(csr, device_id)
        except ValueError as exc:
            raise InvalidRequest(f"device {device_id}: {exc}") from None
        cert = self.ca.issue_client(public_key, device_id, now)
        der = cert.public_bytes(serialization.Encoding.DER)
        record = CredentialRecord(
            device_id=device_id,
            kind="certificate",
            serial=pki.serial_hex(cert.serial_number),
            fingerprint="sha256:" + hashlib.sha256(der).hexdigest(),
            issued_at=now,
            not_after=cert.not_valid_after_utc,
        )
        return record, bundle.model_copy(update={"client_certificate": pki.cert_pem(cert).decode()})

    def sync_broker(self, why: str) -> BrokerReload:
        """Bring the broker's CRL or password file in line with the store, then reload the broker."""
        if self.broker is None:
            return BrokerReload(
                False,
                f"{why}, but this hub knows no broker configuration: a broker that does not use the hub's CRL "
                "or password file still lets the old credential in (`edgefleet hub broker-config`, README Security)",
            )
        try:
            self.write_broker_files()
        except OSError as exc:
            return BrokerReload(False, f"{why}, but {self.broker.directory} could not be written: {exc}")
        outcome = self.broker.reload()
        log.info("%s: %s", why, outcome.message)
        return outcome

    def write_broker_files(self) -> None:
        """Rewrite the CRL (a fresh one each start: it is valid for a year) or the password file."""
        if self.broker is None:
            return
        hub_user = self.settings.mqtt_username or HUB_IDENTITY
        hub_hash = mosquitto_password_hash(self._hub_password()) if self.broker.auth == "password" else None
        self.broker.write_revocations(self.ca, self.store, hub_hash if hub_user == HUB_IDENTITY else None)
