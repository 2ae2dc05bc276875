"""``edgefleet service list|show|update|score|logs|keys|delete``: deployed services and their endpoints on devices."""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
from pathlib import Path
from typing import Any

import httpx

from edgefleet.hub.cli.command import Context, add_command, add_group, say
from edgefleet.hub.cli.output import Result, table, to_json
from edgefleet.hub.cli.tables import service_detail, service_table
from edgefleet.hub.cli.workflow import settled, update_service, wait_for_removal
from edgefleet.hub.errors import ClientError, HubError
from edgefleet.hub.schemas import DeviceServiceState, ServiceDeployed, ServiceKeys, ServiceView
from edgefleet.protocol.models import ModuleState


def list_(ctx: Context) -> Result[list[ServiceView]]:
    return Result(ctx.client.list_services(), service_table)


def show(ctx: Context) -> Result[ServiceView]:
    return Result(ctx.client.get_service(ctx.args.name), service_detail)


def update(ctx: Context) -> Result[ServiceDeployed]:
    """Change only what is given (models, configs, source); the rest stays as deployed."""
    a = ctx.args
    service = update_service(
        ctx.client,
        a.name,
        a.model,
        Path(a.ic) if a.ic else None,
        Path(a.dc) if a.dc else None,
        Path(a.source_dir) if a.source_dir else None,
        say,
    )
    say(f"updated {service.name}: models {', '.join(f'{m.name}:{m.version}' for m in service.models)}; "
        f"target {service.target}")  # fmt: skip
    return settled(ctx.client, service, a.wait, a.timeout, say)


def _scoring_input(data: str | None, file: str | None) -> str:
    if (data is None) == (file is None):
        raise ClientError("give the input with exactly one of --data JSON or --input-file PATH (- for stdin)")
    if file == "-":
        raw = sys.stdin.read()
    elif file is not None:
        try:
            raw = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ClientError(f"--input-file {file}: cannot read: {exc.strerror or exc}") from None
    else:
        raw = str(data)
    try:
        json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ClientError(f"the scoring input is not valid JSON: {exc.msg} at column {exc.colno}") from None
    return raw


def _scoring_device(service: ServiceView, device: str | None) -> tuple[DeviceServiceState, str]:
    """The device to score on (the one asked for, else the first Healthy one) and its endpoint."""
    candidates = [d for d in service.devices if d.state == ModuleState.HEALTHY and d.endpoint]
    if device:
        candidates = [d for d in service.devices if d.device == device]
        if not candidates:
            raise ClientError(f"service {service.name} does not run on device {device}")
        if not candidates[0].endpoint:
            raise ClientError(f"device {device} reports no endpoint for {service.name} yet")
    if not candidates:
        raise ClientError(f"service {service.name} has no Healthy device with an endpoint ({service.reason})")
    target = candidates[0]
    return target, str(target.endpoint)


def _scoring_key(ctx: Context, service: ServiceView) -> str | None:
    """The key to send: --key, else EDGEFLEET_SCORING_KEY, else the service's primary key from the
    hub when it has authEnabled (that needs the deploy role), else none."""
    given = ctx.args.key or os.environ.get("EDGEFLEET_SCORING_KEY")
    if given:
        return str(given)
    if service.deployment_config.auth_enabled:
        return ctx.client.service_keys(service.name).primary_key
    return None


def score(ctx: Context) -> Result[Any]:
    """The device's answer as it gave it: JSON printed as JSON, anything else as text."""
    raw = _scoring_input(ctx.args.data, ctx.args.file)
    service = ctx.client.get_service(ctx.args.name)
    target, endpoint = _scoring_device(service, ctx.args.device)
    url = endpoint.rstrip("/") + "/score"
    headers = {"Content-Type": "application/json"}
    key = _scoring_key(ctx, service)
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    verify: ssl.SSLContext | bool = True
    if ctx.args.cacert:
        try:
            verify = ssl.create_default_context(cafile=ctx.args.cacert)
        except (OSError, ssl.SSLError) as exc:
            raise ClientError(f"--cacert {ctx.args.cacert}: not a readable PEM certificate: {exc}") from None
    try:
        response = httpx.post(url, content=raw, headers=headers, timeout=60, verify=verify)
    except httpx.ConnectError as exc:
        hint = "; give the device's CA certificate with --cacert" if "CERTIFICATE_VERIFY_FAILED" in str(exc) else ""
        raise ClientError(f"device {target.device}: cannot reach {url}: {exc}{hint}") from None
    except httpx.HTTPError as exc:
        raise ClientError(f"device {target.device}: cannot reach {url}: {exc}") from None
    try:
        answer: Any = response.json()
    except ValueError:
        answer = response.text
    if response.status_code >= 400:
        message = answer.get("error") if isinstance(answer, dict) else answer
        raise ClientError(f"device {target.device} answered {response.status_code}: {message}")
    say(f"scored on {target.device} ({url})")
    return Result(answer, to_json)


def _device_logs(ctx: Context, service: str, device: DeviceServiceState, tail: int) -> dict[str, Any]:
    """One device's answer to the ``logs`` direct method: its lines, or what went wrong."""
    try:
        response = ctx.client.call_method(device.device, "logs", {"module": service, "tail": tail}, ctx.args.timeout)
    except HubError as exc:
        return {"device": device.device, "error": str(exc)}
    lines = response.payload.get("lines")
    if response.status >= 400:
        return {"device": device.device, "error": f"answered {response.status}: {response.payload.get('error')}"}
    if not (isinstance(lines, list) and all(isinstance(line, str) for line in lines)):
        return {"device": device.device, "error": f"answered without log lines: {json.dumps(response.payload)}"}
    return {"device": device.device, "lines": lines}


def logs_text(answers: list[dict[str, Any]]) -> str:
    """One device: its lines as they are. Several: each under a ``==> DEVICE <==`` header (as ``tail`` heads files)."""
    if len(answers) == 1 and "lines" in answers[0]:
        return "\n".join(answers[0]["lines"])
    parts = []
    for a in answers:
        body = "\n".join(a["lines"]) if "lines" in a else f"error: {a['error']}"
        parts.append(f"==> {a['device']} <==\n{body}" if body else f"==> {a['device']} <==")
    return "\n\n".join(parts)


def logs(ctx: Context) -> Result[list[dict[str, Any]]]:
    """The module's recent log lines from each device the service runs on (or the one named)."""
    a = ctx.args
    service = ctx.client.get_service(a.name)
    devices = service.devices
    if a.device:
        devices = [d for d in devices if d.device == a.device]
        if not devices:
            targeted = ", ".join(d.device for d in service.devices) or "none"
            raise ClientError(f"service {a.name} does not run on device {a.device} (it runs on: {targeted})")
    if not devices:
        raise ClientError(f"service {a.name} runs on no device ({service.reason})")
    answers = []
    for d in devices:
        if d.online is False and not a.device:
            answers.append({"device": d.device, "error": "offline; not asked (give --device to ask anyway)"})
        else:
            answers.append(_device_logs(ctx, a.name, d, a.tail))
    failed = [x["device"] for x in answers if "error" in x]
    return Result(answers, logs_text, status=1 if failed else 0)


def keys_table(keys: ServiceKeys) -> str:
    return table(["KEY", "VALUE"], [["primary", keys.primary_key], ["secondary", keys.secondary_key]])


def keys(ctx: Context) -> Result[ServiceKeys]:
    """Show the service's scoring keys, or replace one (``--regenerate``) and show the new pair."""
    name, which = ctx.args.name, ctx.args.regenerate
    if which is None:
        return Result(ctx.client.service_keys(name), keys_table)
    fresh = ctx.client.regenerate_key(name, which)
    other = "secondary" if which == "primary" else "primary"
    say(
        f"regenerated the {which} key of {name}; devices switch as the new spec rolls out, and the {other} key "
        "keeps working meanwhile"
    )
    return Result(fresh, keys_table)


def delete(ctx: Context) -> Result[dict[str, str]]:
    name = ctx.args.name
    ctx.client.delete_service(name)
    say(f"deleted service {name}; waiting for devices to remove the module")
    if ctx.args.wait:
        wait_for_removal(ctx.client, name, ctx.args.timeout, say)
    return Result({"deleted": name}, lambda d: f"deleted {d['deleted']}")


def add_commands(groups: Any) -> None:
    svc = add_group(groups, "service", "deployed services")
    add_command(svc, "list", list_, "list services and their state")
    s = add_command(svc, "show", show, "show a service with per-device state")
    s.add_argument("name")
    s = add_command(svc, "update", update, "change a service: only the models, configs or source given change")
    s.add_argument("name")
    s.add_argument(
        "-m", "--model", action="append", metavar="NAME[:VERSION]",
        help="the service's models from now on (repeatable; NAME alone: its latest version)",
    )  # fmt: skip
    s.add_argument("--ic", "--inference-config", dest="ic", help="inferenceconfig.json replacing the service's")
    s.add_argument("--dc", "--deployment-config", dest="dc", help="deploymentconfig.json replacing the service's")
    s.add_argument("--source-dir", help="upload this folder as the source (default: the --ic file's sourceDirectory)")
    s.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True, help="follow the rollout")
    s.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")
    s = add_command(svc, "score", score, "send a scoring request to a Healthy device's endpoint")
    s.add_argument("name")
    s.add_argument("-d", "--data", "--input-data", dest="data", help="JSON request body")
    s.add_argument(
        "--input-file", "--file", dest="file", metavar="PATH", help="file holding the JSON request body; - for stdin"
    )
    s.add_argument("--device", help="score on this device")
    s.add_argument(
        "--key",
        help="scoring key to send (default: EDGEFLEET_SCORING_KEY, else the service's primary key from the hub)",
    )
    s.add_argument("--cacert", help="CA certificate (PEM) to verify an HTTPS endpoint with")
    s = add_command(svc, "logs", logs, "the module's recent log lines from each device the service runs on")
    s.add_argument("name")
    s.add_argument("--device", help="only this device")
    s.add_argument("--tail", type=int, default=100, help="lines per device (default 100)")
    s.add_argument("--timeout", type=float, default=10.0, help="seconds each device has to answer (default 10)")
    s = add_command(svc, "keys", keys, "show a service's scoring keys (authEnabled), or regenerate one")
    s.add_argument("name")
    s.add_argument("--regenerate", choices=["primary", "secondary"], help="replace this key and roll it out")
    s = add_command(svc, "delete", delete, "delete a service and wait until devices removed it")
    s.add_argument("name")
    s.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True)
    s.add_argument("--timeout", type=float, default=300.0)
