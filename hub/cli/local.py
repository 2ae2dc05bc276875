"""``edgefleet hub serve|broker-config|ca|info|rotate-key``, ``edgefleet hub token ...`` and ``edgefleet
demo``: commands that act on the system here (``hub info`` and ``hub rotate-key`` go through the API,
``hub ca --fetch`` too).

Each imports what it runs inside its handler: ``hub serve``, ``hub token``, ``hub broker-config`` and
``hub ca`` are the CLI's only imports of the server (the runner, the token authority, the broker
configuration that opens the hub's CA and store, the settings that say where the CA is; one ignore
each in the import-linter contract), the demo its numpy and process supervisor. So the REST commands
start fast and never load FastAPI, uvicorn or the store.

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
from urllib.parse import urlsplit

from edgefleet.hub.certs import fingerprint, normalize_fingerprint
from edgefleet.hub.cli.command import Context, add_command, add_group, say
from edgefleet.hub.cli.output import Result, table
from edgefleet.hub.cli.tables import token_line, token_table
from edgefleet.hub.cli.tokens import add_expiry_and_role, created, token_request
from edgefleet.hub.client import HubClient
from edgefleet.hub.errors import ClientError
from edgefleet.hub.schemas import HubInfo, KeyRotationView, TokenCreated, TokenView
from edgefleet.protocol.files import write_atomic

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
        "device_broker_url": a.device_broker,
        "broker_config_dir": a.broker_config_dir,
        "tls": a.tls,
        "server_names": a.server_name,
        "tls_cert_file": a.tls_cert,
        "tls_key_file": a.tls_key,
    }
    logging.basicConfig(
        level=getattr(logging, a.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    serve_with({k: v for k, v in overrides.items() if v is not None})
    return 0


def broker_config(ctx: Context) -> Result[dict[str, Any]]:
    from edgefleet.hub.server.broker_config import BrokerOptions, write_for_hub  # the CA and store: hub side

    a = ctx.args
    options = BrokerOptions(port=a.port, listen=a.listen, hosts=tuple(a.server_name or ("localhost", "127.0.0.1")),
                            auth=a.auth, **({"user": a.user} if a.user else {}))  # fmt: skip
    directory, files = write_for_hub(Path(a.data_dir), a.database_url, Path(a.out) if a.out else None, options)
    host = options.hosts[0]
    data = {
        "dir": str(directory),
        "auth": options.auth,
        "files": [str(f) for f in files],
        "brokerUrl": f"mqtts://{host}:{options.port}",
        "user": options.user,
    }

    def readable(d: dict[str, Any]) -> str:
        names = ", ".join(Path(f).name + (" (0600)" if f.endswith(".key") else "") for f in d["files"])
        return "\n".join(
            [
                f"wrote the broker configuration to {d['dir']} (auth {d['auth']}, broker runs as {d['user']}): {names}",
                f"start the broker: mosquitto -c {d['dir']}/mosquitto.conf",
                f"start the hub:    edgefleet hub serve --data-dir {a.data_dir} --broker {d['brokerUrl']}",
                "devices:          edgefleet device register DEVICE --out DEVICE.bootstrap.json",
            ]
        )

    return Result(data, readable)


def hub_info(ctx: Context) -> Result[HubInfo]:
    """The hub's identity: what devices pin (the key's fingerprint for `--hub-key-fingerprint`)."""

    def readable(i: HubInfo) -> str:
        state = "connected" if i.broker_connected else "not connected"
        return "\n".join(
            [
                f"hub:         edgefleet {i.version} at {ctx.client.base_url}",
                f"key:         {i.key_id}  (fingerprint {i.key_fingerprint})",
                *([f"next key:    {i.next_key_id}  (rotation running)"] if i.next_key_id else []),
                f"broker:      {i.broker_url} ({state})",
                *([f"CA:          {i.ca_fingerprint}  (`edgefleet hub ca` writes it)"] if i.ca_fingerprint else []),
            ]
        )

    return Result(ctx.client.hub_info(), readable)


def _local_ca(data_dir: str | None) -> tuple[str, str]:
    from edgefleet.hub.server.settings import HubSettings  # where the CA is, as `hub serve` has it

    settings = HubSettings(data_dir=Path(data_dir)) if data_dir else HubSettings()
    path = settings.ca_dir / "ca.pem"
    try:
        return path.read_text(), str(path)
    except FileNotFoundError:
        raise ClientError(
            f"no hub CA in {settings.ca_dir}: the hub makes it when it first starts (`edgefleet hub serve --data-dir "
            f"{settings.data_dir}`); give the data dir the hub uses with --data-dir"
        ) from None
    except OSError as exc:
        raise ClientError(f"cannot read the hub CA {path}: {exc.strerror}") from None


def _fetched_ca(ctx: Context, expected: str | None) -> tuple[str, str]:
    """The CA the hub at --hub offers, trusted on first use (or checked against ``expected``)."""
    hub = ctx.connection.hub
    with HubClient(hub, verify=False) as client:  # nothing to verify against yet; no token goes along
        pem = client.hub_info().ca_certificate
    if not pem:
        raise ClientError(
            f"the hub at {hub} does not offer its CA (older than this CLI?); run `edgefleet hub ca --out FILE` on the "
            "hub machine"
        )
    offered = fingerprint(pem)
    if expected is not None and offered != expected:
        raise ClientError(
            f"the hub at {hub} offers a CA with fingerprint {offered}, not the {expected} given: not trusted; check "
            "who answers at that address"
        )
    if urlsplit(hub).scheme == "https":
        try:
            with HubClient(hub, ca_pem=pem) as client:
                client.health()
        except ClientError:
            raise ClientError(
                f"the hub at {hub} serves a certificate that the CA it offers ({offered}) did not issue: not "
                "trusted. A hub with its own certificate from a public CA (`--tls-cert`) needs no --ca-file; "
                "otherwise someone else answered"
            ) from None
    return pem, hub


def hub_ca(ctx: Context) -> Result[dict[str, Any]]:
    """The hub CA's certificate: from the data dir on the hub machine, or fetched from --hub (trust on first use)."""
    a = ctx.args
    try:
        expected = normalize_fingerprint(a.fingerprint) if a.fingerprint else None
    except ValueError as exc:
        raise ClientError(f"--fingerprint: {exc}") from None
    if expected is not None and not a.fetch:
        raise ClientError("--fingerprint checks a CA fetched from the hub: give --fetch as well")
    pem, source = _fetched_ca(ctx, expected) if a.fetch else _local_ca(a.data_dir)
    hub = source if a.fetch else "https://HUB:PORT"
    data: dict[str, Any] = {
        "certificate": pem,
        "fingerprint": fingerprint(pem),
        "source": source,
        "verified": not a.fetch or expected is not None,  # fetched without --fingerprint: trust on first use
        "file": None,
    }
    if a.out:
        out = Path(a.out)
        try:
            write_atomic(out, pem.encode(), mode=0o644)  # public: a certificate, no key
        except OSError as exc:
            raise ClientError(f"cannot write {out}: {exc.strerror}") from None
        data["file"] = str(out)
    if not data["verified"]:
        say(
            f"fetched over the network from {source}/api/v1/hub without verifying who answered (trust on first "
            f"use): compare the fingerprint {data['fingerprint']} with `edgefleet hub ca` on the hub machine before "
            "you trust it, or fetch again with --fingerprint"
        )
    elif not a.out:
        say(f"hub CA {data['fingerprint']} from {source}")  # stdout holds only the PEM

    def readable(d: dict[str, Any]) -> str:
        if d["file"] is None:
            return str(d["certificate"]).rstrip("\n")
        return "\n".join(
            [
                f"wrote the hub CA certificate to {d['file']} (fingerprint {d['fingerprint']}, from {d['source']})",
                f"trust it:   edgefleet login --hub {hub} --ca-file {d['file']}  (or --ca-file on any command, or "
                "EDGEFLEET_CA_FILE)",
            ]
        )

    return Result(data, readable)


def rotation_text(r: KeyRotationView) -> str:
    lines = [f"key:         {r.key_id}  (fingerprint {r.key_fingerprint})"]
    if r.next_key_id is None:
        lines.append("rotation:    none runs (`edgefleet hub rotate-key` starts one)")
        return "\n".join(lines)
    lines.append(f"next key:    {r.next_key_id}  (fingerprint {r.next_key_fingerprint}), announced to every device")
    if r.devices:
        lines.append(table(["DEVICE", "ACKNOWLEDGED", "WHY"], [[d.device, "yes" if d.acknowledged else "no", d.reason]
                                                                for d in r.devices]))  # fmt: skip
    lines.append(
        "rotation:    complete: `edgefleet hub rotate-key --finish` signs with the next key"
        if r.complete
        else "rotation:    waiting for devices to acknowledge (--finish --force leaves them to be provisioned again)"
    )
    return "\n".join(lines)


def rotate_key(ctx: Context) -> Result[KeyRotationView]:
    a = ctx.args
    if a.finish:
        return Result(ctx.client.finish_key_rotation(a.force), rotation_text)
    if a.status:
        return Result(ctx.client.key_rotation(), rotation_text)
    return Result(ctx.client.start_key_rotation(), rotation_text)


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
    s.add_argument("--public-url", help="base URL devices use for artifacts (default http(s)://HOST:PORT)")
    s.add_argument(
        "--tls", action="store_true", default=None, help="serve HTTPS with a certificate from the hub's CA, kept in "
        "DATA_DIR/identity/api.pem (default: plain HTTP, for development)"
    )  # fmt: skip
    s.add_argument(
        "--server-name", action="append", metavar="NAME", help="with --tls: DNS name or IP clients and devices use "
        "(repeatable; default localhost, 127.0.0.1, the --host if an IP, the --public-url host)"
    )  # fmt: skip
    s.add_argument("--tls-cert", help="serve HTTPS with your own certificate instead (PEM, server first, then chain)")
    s.add_argument("--tls-key", help="the private key of --tls-cert (PEM)")
    s.add_argument("--database-url", help="default sqlite:///DATA_DIR/hub.db")
    s.add_argument("--device-broker", help="broker URL written into bootstrap bundles (default --broker)")
    s.add_argument("--broker-config-dir", help="where `hub broker-config` wrote the broker's files (default: recorded)")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    add_command(hub_p, "info", hub_info, "the hub's key (and its fingerprint) and broker, as devices see them")
    s = add_command(hub_p, "ca", hub_ca, "the hub CA's certificate, for --ca-file: from the data dir, or --fetch")
    s.add_argument("--data-dir", help="on the hub machine: the hub's data dir (default ./.edgefleet/hub)")
    s.add_argument("--out", help="write it to this file (default: print it)")
    s.add_argument(
        "--fetch", action="store_true", help="from the hub at --hub (GET /api/v1/hub) instead: trust on first use"
    )
    s.add_argument("--fingerprint", help="with --fetch: refuse a CA whose sha256 fingerprint is not this")
    s = add_command(hub_p, "rotate-key", rotate_key, "rotate the manifest key: announce a next key, then switch to it")
    s.add_argument("--status", action="store_true", help="show the rotation and which devices acknowledged it")
    s.add_argument("--finish", action="store_true", help="sign with the next key (every device acknowledged it)")
    s.add_argument("--force", action="store_true", help="with --finish: also when devices did not acknowledge it")
    s = add_command(
        hub_p, "broker-config", broker_config, "write a locked-down Mosquitto configuration (TLS, identities, ACL)"
    )
    s.add_argument("--data-dir", default=".edgefleet/hub", help="the hub's data dir: its CA and store")
    s.add_argument("--database-url", help="the hub's database, if not in the data dir")
    s.add_argument("--out", help="folder for the broker's files (default DATA_DIR/broker)")
    s.add_argument("--port", type=int, default=8883, help="TLS listener port (default 8883)")
    s.add_argument("--listen", default="127.0.0.1", help="listen address (default 127.0.0.1; 0.0.0.0 for all)")
    s.add_argument(
        "--server-name", action="append", metavar="NAME", help="DNS name or IP devices use (repeatable; default "
        "localhost and 127.0.0.1)"
    )  # fmt: skip
    s.add_argument(
        "--auth", choices=["certificate", "password"], default="certificate",
        help="client certificates (default) or usernames and passwords",
    )  # fmt: skip
    s.add_argument("--user", help="the user Mosquitto runs as (default: you); files are given to it when run as root")
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
