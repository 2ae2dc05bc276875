"""The hub server: everything that runs inside ``edgefleet hub serve``.

The CLI imports it only to run it (``hub serve``) and for ``hub token`` on the hub machine.

settings.py        HubSettings (environment EDGEFLEET_HUB_*)
store/             Store interface + SQLite implementation (models, services, devices and credentials, desired
                   state, tokens)
artifacts.py       content-addressed blob store on disk (sha256), HTTP Range parsing
render.py          pure: services x device -> the device's ModuleSpecs
service_state.py   pure: published generations x reports -> service and per-device states
generations.py     pure: must a device get a new manifest, and with which generation
controller.py      MQTT: ingest registered devices' reports, publish signed retained manifests, direct methods
pki.py             pure: X.509 for the hub's CA (client and server certificates, CRL, signing requests)
ca.py              the CA on disk (<data-dir>/ca, key 0600) and the hub's own MQTT client identity
identities.py      device credentials at registration, bootstrap bundles, revocation at the broker
broker_config.py   the locked-down Mosquitto configuration: TLS listener, ACL from topics.py, CRL, passwords
registry.py        the operations behind the API: rules across records, records -> API schemas
access.py          pure: the role each route needs (ROUTE_ROLES), the open routes (OPEN_ROUTES), role checks
tokens.py          pure: operator tokens' form (eft_<id>_<secret>), hashing, verification
auth.py            Authority: tokens over the store (issue, list, revoke, authenticate); the local CLI's way in
guard.py           the access table applied to every route of the app (a FastAPI dependency), OpenAPI security
api.py             FastAPI app under /api/v1; bodies are edgefleet.hub.schemas
core.py            Hub: all parts wired together
runner.py          serve (foreground, for the CLI) and HubServer (in-process, for the demo and tests)
"""
