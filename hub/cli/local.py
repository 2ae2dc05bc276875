"""``edgefleet hub serve``, ``edgefleet hub token ...`` and ``edgefleet demo``: commands that act on
the system here, not through a hub's API.

Each imports what it runs inside its handler: ``hub serve`` and ``hub token`` are the CLI's only
imports of the server (the runner and the token authority; one ignore each in the import-linter
contract), the demo its numpy and process supervisor. So the REST commands start fast and never
load FastAPI, uvicorn or the store.

``hub token`` works on the hub's database directly, so it needs no token: being able to open the
hub's files on the hub machine is what makes someone its admin. It is how the first admin token
is made; later ones can come through the API too (``edgefleet token create``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefleet.hub.cli.command import Context, add_command, add_group
from edgefleet.hub.cli.output import Result
from edgefleet.hub.cli.tables import token_line, token_table
from edgefleet.hub.cli.tokens import add_expiry_and_role, created, token_request
from edgefleet.hub.schemas import TokenCreated, TokenView

if TYPE_CHECKING:
    from edgefleet.hub.server.auth import Authority


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


@contextmanager
def _local_tokens(ctx: Context, create: bool = False) -> Iterator[tuple[Authority, str]]:
    from edgefleet.hub.server.auth import local_authority  # the store, only for the hub's own token commands

    a = ctx.args
    authority, url = local_authority(Path(a.data_dir) if a.data_dir else None, a.database_url, must_exist=not create)
    try:
        yield authority, url
    finally:
        authority.store.close()


def hub_token_create(ctx: Context) -> Result[TokenCreated]:
    a = ctx.args
    request = token_request(a.name, a.role, a.expires_in)
    with _local_tokens(ctx, create=True) as (authority, url):
        token = authority.issue(request)
    return created(token, f"in {url}")


def hub_token_list(ctx: Context) -> Result[list[TokenView]]:
    with _local_tokens(ctx) as (authority, _url):
        return Result(authority.list_tokens(), token_table)


def hub_token_revoke(ctx: Context) -> Result[TokenView]:
    with _local_tokens(ctx) as (authority, _url):
        token = authority.revoke(ctx.args.token_ref)
    return Result(token, lambda t: f"revoked {token_line(t)}; it no longer works")


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

    tok = add_group(hub_p, "token", "operator tokens, straight in this machine's hub database (no token needed)")
    commands: list[tuple[str, Callable[[Context], Any], str]] = [
        ("create", hub_token_create, "create a token in the hub's database and print it, this once"),
        ("list", hub_token_list, "list the tokens in the hub's database (never the tokens themselves)"),
        ("revoke", hub_token_revoke, "revoke a token; the hub refuses it from its next request on"),
    ]
    for name, handler, help_ in commands:
        s = add_command(tok, name, handler, help_)
        if name == "create":
            add_expiry_and_role(s)
        if name == "revoke":
            s.add_argument("token_ref", metavar="ID|NAME", help="the token's id, or the name of a live token")
        s.add_argument(
            "--data-dir", help="the hub's data directory, as given to `hub serve` (default ./.edgefleet/hub)"
        )
        s.add_argument(
            "--database-url", help="the hub's database, as given to `hub serve` (default sqlite:///DATA_DIR/hub.db)"
        )
