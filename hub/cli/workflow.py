"""The operator's workflow steps over the REST API, shared by the CLI and the demo.

register a model (upload each file's blob once, by digest) -> deploy a service (upload its source
directory, send both configs) -> wait until every targeted device settles. Progress lines go to
``say``; the caller decides where they are shown.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgefleet.hub.cli_output import human_size
from edgefleet.hub.client import HubClient
from edgefleet.hub.configs import load_deployment_config, load_inference_config, read_json_file
from edgefleet.hub.errors import ClientError
from edgefleet.hub.files import collect_files, source_files
from edgefleet.hub.refs import parse_model_ref
from edgefleet.protocol.digests import sha256_file

Say = Callable[[str], None]
POLL_S = 0.3


def upload_file(client: HubClient, path: Path, rel: str, say: Say) -> dict[str, Any]:
    """Upload one file's blob unless the hub already has it; returns its file entry."""
    digest = sha256_file(path)
    size = path.stat().st_size
    if client.blob_exists(digest):
        say(f"  {rel}: {human_size(size)} already stored")
    else:
        tty = sys.stderr.isatty()

        def progress(sent: int, total: int) -> None:
            if tty:
                sys.stderr.write(f"\r  uploading {rel}: {human_size(sent)} / {human_size(total)}")
                sys.stderr.flush()

        client.upload_blob(path, digest, progress)
        if tty:
            sys.stderr.write("\r")
        say(f"  uploaded {rel}: {human_size(size)} {digest[:19]}")
    return {"path": rel, "digest": digest, "size": size}


def register_model(
    client: HubClient, path: Path, name: str, tags: dict[str, str], description: str, say: Say
) -> dict[str, Any]:
    files = collect_files(path)
    say(f"registering {name} ({len(files)} file(s))")
    entries = [upload_file(client, local, rel, say) for rel, local in files]
    return client.create_model({"name": name, "files": entries, "tags": tags, "description": description})


def deploy_service(
    client: HubClient,
    name: str,
    models: list[str],
    ic_path: Path | None,
    dc_path: Path | None,
    say: Say,
    overwrite: bool = False,
) -> dict[str, Any]:
    for ref in models:
        parse_model_ref(ref)
    body: dict[str, Any] = {"name": name, "models": models, "overwrite": overwrite}
    if ic_path:
        ic = load_inference_config(ic_path)  # local check first: errors name the user's file
        body["inferenceConfig"] = read_json_file(ic_path)
        files = source_files(ic_path, ic)
        if files:
            say(f"uploading {len(files)} source file(s)")
        body["sourceFiles"] = [upload_file(client, local, rel, say) for rel, local in files]
    if dc_path:
        load_deployment_config(dc_path)
        body["deploymentConfig"] = read_json_file(dc_path)
    return client.deploy(body)


def wait_for_service(
    client: HubClient,
    name: str,
    timeout: float,
    say: Say,
    on_poll: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Poll until the service leaves Transitioning; one progress line per device state change."""
    deadline = time.monotonic() + timeout
    seen: dict[str, tuple[str, str]] = {}
    while True:
        if on_poll:
            on_poll()
        service = client.get_service(name)
        for d in service["devices"]:
            now = (d["state"], d.get("message") or "")
            if seen.get(d["device"]) != now:
                seen[d["device"]] = now
                backend = f" on {d['backend']}" if d.get("backend") and now[0] == "Healthy" else ""
                say(f"  {d['device']}: {now[0]}{backend}" + (f" - {now[1]}" if now[1] else ""))
        if service["state"] != "Transitioning":
            return service
        if time.monotonic() > deadline:
            raise ClientError(
                f"service {name} is still Transitioning after {timeout:g} s; "
                f"watch it with `edgefleet service show {name}`"
            )
        time.sleep(POLL_S)


def wait_for_removal(client: HubClient, name: str, timeout: float, say: Say) -> None:
    """After a delete: poll until no device reports the service's module any more."""
    deadline = time.monotonic() + timeout
    last: list[str] | None = None
    while True:
        remaining = [
            d["deviceId"]
            for d in client.list_devices()
            if any(
                m["name"] == name or m.get("service") == name for m in (d.get("lastReport") or {}).get("modules", [])
            )
        ]
        if remaining != last:
            last = remaining
            say(f"  still running on: {', '.join(remaining)}" if remaining else "  removed from all devices")
        if not remaining:
            return
        if time.monotonic() > deadline:
            raise ClientError(
                f"service {name} deleted, but devices {', '.join(remaining)} still report its module "
                f"after {timeout:g} s (offline?)"
            )
        time.sleep(POLL_S)
