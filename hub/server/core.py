"""The hub's parts wired together: settings -> store, blob store, keys and CA, the API's certificate, identities,
controller, registry, token authority."""

from __future__ import annotations

import logging

from edgefleet.hub.server.api_tls import check_settings, plain_http_warning, served_certificate
from edgefleet.hub.server.artifacts import BlobStore
from edgefleet.hub.server.auth import Authority, DeviceDownloads
from edgefleet.hub.server.ca import CertificateAuthority
from edgefleet.hub.server.controller import Controller
from edgefleet.hub.server.grants import BlobGrants
from edgefleet.hub.server.identities import Identities
from edgefleet.hub.server.registry import Registry
from edgefleet.hub.server.rotation import HubKeys
from edgefleet.hub.server.settings import HubSettings
from edgefleet.hub.server.store import Store, open_store

log = logging.getLogger(__name__)


class Hub:
    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        check_settings(settings)  # before anything is made in the data dir
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.keys = HubKeys.load_or_create(settings.key_path)
        self.ca = CertificateAuthority.load_or_create(settings.ca_dir)
        self.api_certificate = served_certificate(settings, self.ca)  # None: plain HTTP
        self.store: Store = open_store(settings.db_url)
        self.blobs = BlobStore(settings.blob_dir)
        self.identities = Identities(settings, self.store, self.ca, self.keys)
        self.grants = BlobGrants.load_or_create(settings.grant_key_path, settings.base_url)
        self.controller = Controller(self.store, self.keys, self.identities.connection(), self.grants)
        self.registry = Registry(self.store, self.blobs, self.controller, self.identities, settings.key_path)
        self.auth = Authority(self.store)
        self.downloads = DeviceDownloads(self.store, self.grants)

    def start(self) -> None:
        log.info(
            "hub key %s, data in %s, broker %s, artifacts at %s",
            self.keys.current.key_id,
            self.settings.data_dir,
            self.settings.broker_url,
            self.settings.base_url,
        )
        if (warning := plain_http_warning(self.settings)) is not None:
            log.warning(warning)
        if self.identities.broker is not None:
            try:  # a fresh CRL each start (each is valid for a year), read by the broker when it (re)loads
                self.identities.write_broker_files()
            except OSError as exc:
                log.warning("could not refresh the broker's files in %s: %s", self.identities.broker.directory, exc)
        if not self.auth.has_admin():
            store = self.settings.database_url or self.settings.data_dir
            option = "--database-url" if self.settings.database_url else "--data-dir"
            log.warning(
                "no admin token exists yet, and every API route but health and the hub's key needs a token; create "
                "one on this machine with `edgefleet hub token create --role admin --name NAME %s %s`",
                option,
                store,
            )
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()
        self.store.close()
