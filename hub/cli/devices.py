"""``edgefleet device list|show|ping|restart-module|logs``: the fleet, and direct methods on one device."""

from __future__ import annotations

import json
from typing import Any

from edgefleet.hub.cli.command import Context, add_command, add_group
from edgefleet.hub.cli.output import Result
from edgefleet.hub.cli.tables import device_detail, device_table
from edgefleet.hub.errors import ClientError
from edgefleet.hub.schemas import DeviceView
from edgefleet.protocol.models import DirectMethodResponse


def list_(ctx: Context) -> Result[list[DeviceView]]:
    return Result(ctx.client.list_devices(), device_table)


def show(ctx: Context) -> Result[DeviceView]:
    return Result(ctx.client.get_device(ctx.args.device_id), device_detail)


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
