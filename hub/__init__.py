"""The edgefleet hub: fleet registry, artifact store, REST API, MQTT controller and the `edgefleet` CLI.

server/       what runs inside `edgefleet hub serve`: FastAPI app, MQTT controller, store, artifacts, CA
cli/          the `edgefleet` command line and the demo driver; reaches the hub only through client.py
client.py     typed HTTP client: answers with the API's schemas, raises the hub's errors
schemas.py    REST API request/response bodies, shared by server and client (pure pydantic)
configs.py    Azure ML CLI v1 inferenceconfig.json / deploymentconfig.json (checked on both sides)
refs.py       NAME:VERSION model references
errors.py     the hub's error hierarchy and the HTTP status of each
broker.py     a private Mosquitto/amqtt broker for the demo (not part of the server)

Import-linter keeps cli/ and client.py off server/, and the shared modules off both.
"""

__version__ = "0.1.0"
