"""``edgefleet device register|label|revoke|delete|list|show|ping|restart-module|logs``.

Membership and labels are the operator's: a device is part of the fleet once registered here, and
only these commands change its labels (never its own reports). ``register`` writes the device's
bootstrap bundle (its key or password inside) to a 0600 file and prints nothing secret.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgefleet.hub.cli.bootstrap import provision
from edgefleet.hub.cli.command import Context, add_command, add_group
from edgefleet.hub.cli.output import Result
from edgefleet.hub.cli.tables import device_detail, device_table, registration_text, removal_text
from edgefleet.hub.errors import ClientError
from edgefleet.hub.schemas import DeviceView
from edgefleet.protocol.labels import label_arg
from edgefleet.protocol.models import DirectMethodResponse


def list_(ctx: Context) -> Result[list[DeviceView]]:
    return Result(ctx.client.list_devices(), device_table)


def show(ctx: Context) -> Result[DeviceView]:
    return Result(ctx.client.get_device(ctx.args.device_id), device_detail)


def register(ctx: Context) -> Result[dict[str, Any]]:
    a = ctx.args
    out = Path(a.out or f"{a.device_id}.bootstrap.json")
    registration = provision(ctx.client, a.device_id, dict(a.label), out, a.auth, a.force)
    data = {"device": registration.device, "bundleFile": str(out), "broker": registration.broker}
    return Result(data, lambda _d: registration_text(registration, out))


def _label_change(text: str) -> tuple[str, str | None]:
    """``KEY=VALUE`` sets a label, ``KEY-`` removes it (as kubectl writes it)."""
    if "=" not in text and text.endswith("-") and len(text) > 1:
        return text[:-1], None
    return label_arg(text)


def label(ctx: Context) -> Result[DeviceView]:
    a = ctx.args
    changes = [_label_change(c) for c in a.changes]
    set_ = {k: v for k, v in changes if v is not None}
    remove = [k for k, v in changes if v is None] + list(a.remove)
    if not set_ and not remove:
        raise ClientError("give labels to set (KEY=VALUE) or to remove (KEY- or --remove KEY)")
    return Result(ctx.client.update_labels(a.device_id, set_, remove), device_detail)


def revoke(ctx: Context) -> Result[Any]:
    revoked = ctx.client.revoke_device(ctx.args.device_id)
    effect = "it can no longer connect" if revoked.broker.reloaded else "the hub no longer listens to it"
    return Result(revoked, lambda r: removal_text(f"revoked {r.device.device_id}: {effect}", r.broker))


def delete(ctx: Context) -> Result[Any]:
    deleted = ctx.client.delete_device(ctx.args.device_id)
    text = f"deleted {deleted.device_id}: record, desired state and retained topics are gone"
    return Result(deleted, lambda d: removal_text(text, d.broker))


def _call(ctx: Context, method: str, params: dict[str, Any]) -> DirectMethodResponse:
    """The device's answer; a status >= 400 from the device is an error naming the device."""
    device = ctx.args.device_id
    response = ctx.client.call_method(device, method, params, ctx.args.timeout)
    if response.status >= 400:
        raise ClientError(
            f"device {device}: {method} failed ({response.status}): {response.payload.get('error') or response.payload}"
        )
    return response


def ping(ctx: Context) -> Result[DirectMethodResponse]:
    device = ctx.args.device_id
    return Result(_call(ctx, "ping", {}), lambda _r: f"{device}: pong")


def restart_module(ctx: Context) -> Result[DirectMethodResponse]:
    device, module = ctx.args.device_id, ctx.args.module
    return Result(_call(ctx, "restart-module", {"module": module}), lambda _r: f"{device}: restarted {module}")


def _log_lines(response: DirectMethodResponse) -> str:
    lines = response.payload.get("lines")
    if isinstance(lines, list) and all(isinstance(line, str) for line in lines):
        return "\n".join(lines)
    return json.dumps(response.payload, indent=2)  # not the shape an agent sends: show it as it came


def logs(ctx: Context) -> Result[DirectMethodResponse]:
    return Result(_call(ctx, "logs", {"module": ctx.args.module, "tail": ctx.args.tail}), _log_lines)


def add_commands(groups: Any) -> None:
    dev = add_group(groups, "device", "the fleet")
    s = add_command(dev, "register", register, "register a device: it joins the fleet and gets a bootstrap bundle")
    s.add_argument("device_id")
    s.add_argument("--label", action="append", type=label_arg, default=[], metavar="KEY=VALUE", help="repeatable")
    s.add_argument(
        "--auth",
        choices=["certificate", "password"],
        default="certificate",
        help="client certificate (default), or a broker username and password (brokers without client certificates)",
    )
    s.add_argument("--out", help="bootstrap bundle file, written 0600 (default ./DEVICE.bootstrap.json)")
    s.add_argument("--force", action="store_true", help="overwrite an existing bundle file")
    s = add_command(dev, "label", label, "set (KEY=VALUE) or remove (KEY-) a device's labels")
    s.add_argument("device_id")
    s.add_argument("changes", nargs="*", metavar="KEY=VALUE|KEY-")
    s.add_argument("--remove", action="append", default=[], metavar="KEY", help="remove a label (repeatable)")
    for name, handler, help_ in [
        ("revoke", revoke, "revoke a device's identity: the broker refuses it, the hub ignores it"),
        ("delete", delete, "delete a device: record, desired state and retained topics (its identity stays revoked)"),
    ]:
        s = add_command(dev, name, handler, help_)
        s.add_argument("device_id")
    add_command(dev, "list", list_, "list devices")
    s = add_command(dev, "show", show, "show one device")
    s.add_argument("device_id")
    for name, handler, help_ in [
        ("ping", ping, "check that a device answers direct methods"),
        ("restart-module", restart_module, "restart a module on a device"),
        ("logs", logs, "tail a module's logs on a device"),
    ]:
        s = add_command(dev, name, handler, help_)
        s.add_argument("device_id")
        if name != "ping":
            s.add_argument("module")
        if name == "logs":
            s.add_argument("--tail", type=int, default=100)
        s.add_argument("--timeout", type=float, default=10.0)
