"""``edgefleet hub serve`` and ``edgefleet demo``: commands that run the system here, not call a hub.

Each imports what it runs inside its handler: ``hub serve`` is the CLI's one import of the server
(allowed by exactly one ignore in the import-linter contract), the demo its numpy and process
supervisor. So the REST commands start fast and never load FastAPI, uvicorn or the store.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgefleet.hub.cli.command import Context, add_command


def hub_serve(ctx: Context) -> int:
    from edgefleet.hub.server.runner import serve_with  # the server, only for the server command

    a = ctx.args
    overrides = {
        "data_dir": a.data_dir,
        "host": a.host,
        "port": a.port,
        "broker_url": a.broker,
        "public_url": a.public_url,
        "database_url": a.database_url,
    }
    logging.basicConfig(
        level=getattr(logging, a.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    serve_with({k: v for k, v in overrides.items() if v is not None})
    return 0


def demo(ctx: Context) -> int:
    from edgefleet.hub.cli.demo import main_demo  # numpy and the process supervisor only for the demo

    a = ctx.args
    return main_demo(Path(a.workdir), a.devices, a.broker, a.timeout, a.fpga_devices)


def add_commands(groups: Any) -> None:
    s = add_command(groups, "demo", demo, "run the whole system locally: broker, hub, devices, deploy, score")
    s.add_argument("--devices", type=int, default=3, help="simulated devices, one agent process each (default 3)")
    s.add_argument(
        "--broker", choices=["auto", "mosquitto", "amqtt"], default="auto", help="default: mosquitto if installed"
    )
    s.add_argument("--fpga-devices", type=int, default=1, help="devices given a simulated FPGA board (default 1)")
    s.add_argument("--workdir", default=".edgefleet/demo", help="state of this run (wiped at start)")
    s.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for every device to be Healthy")

    hub_p = groups.add_parser("hub", help="run the hub").add_subparsers(dest="cmd", metavar="CMD", required=True)
    s = add_command(hub_p, "serve", hub_serve, "run the hub: REST API, artifact server and MQTT controller")
    s.add_argument("--data-dir", help="key, blobs and database (default ./.edgefleet/hub)")
    s.add_argument("--host", help="listen address (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="listen port (default 8080; 0 picks a free one)")
    s.add_argument("--broker", help="MQTT broker URL (default mqtt://127.0.0.1:1883)")
    s.add_argument("--public-url", help="base URL devices use for artifacts (default http://HOST:PORT)")
    s.add_argument("--database-url", help="default sqlite:///DATA_DIR/hub.db")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
