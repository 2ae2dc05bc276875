"""The hub's parts wired together: settings -> store, blob store, key, controller, registry, token authority."""

from __future__ import annotations

import logging

from edgefleet.hub.server.artifacts import BlobStore
from edgefleet.hub.server.auth import Authority
from edgefleet.hub.server.controller import Controller
from edgefleet.hub.server.registry import Registry
from edgefleet.hub.server.settings import HubSettings
from edgefleet.hub.server.store import Store, open_store
from edgefleet.protocol.signing import HubKey

log = logging.getLogger(__name__)


class Hub:
    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.key = HubKey.load_or_create(settings.key_path)
        self.store: Store = open_store(settings.db_url)
        self.blobs = BlobStore(settings.blob_dir)
        self.controller = Controller(self.store, self.key, settings.broker_url, settings.base_url)
        self.registry = Registry(self.store, self.blobs, self.controller)
        self.auth = Authority(self.store)

    def start(self) -> None:
        log.info(
            "hub key %s, data in %s, broker %s, artifacts at %s",
            self.key.key_id,
            self.settings.data_dir,
            self.settings.broker_url,
            self.settings.base_url,
        )
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
