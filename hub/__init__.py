"""The edgefleet hub: fleet registry, artifact store, REST API, MQTT controller and the `edgefleet` CLI.

settings.py        HubSettings (environment EDGEFLEET_HUB_*)
store/             Store interface + SQLite implementation (models, services, devices, desired state)
artifacts.py       content-addressed blob store on disk (sha256), HTTP Range parsing
configs.py         Azure ML CLI v1 inferenceconfig.json / deploymentconfig.json
render.py          pure: services x device -> the device's ModuleSpecs
service_state.py   pure: published generations x reports -> service and per-device states
controller.py      MQTT: ingest reports, publish signed retained manifests, direct methods
api.py             FastAPI app under /api/v1
server.py          Hub (all parts wired together) and HubServer (in-process uvicorn)
client.py / cli.py the `edgefleet` command line
"""

__version__ = "0.1.0"
