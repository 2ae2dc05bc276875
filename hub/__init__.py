"""The edgefleet hub: fleet registry, artifact store, REST API, MQTT controller and the `edgefleet` CLI.

server/            everything that runs inside `edgefleet hub serve` (FastAPI, store, controller)
schemas.py         REST API request/response bodies
configs.py         Azure ML CLI v1 inferenceconfig.json / deploymentconfig.json
client.py / cli.py the `edgefleet` command line
"""

__version__ = "0.1.0"
