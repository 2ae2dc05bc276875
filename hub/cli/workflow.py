"""The operator's workflow steps over the REST API, shared by the CLI and the demo.

register a model (upload each file's blob once, by digest) -> deploy a service (upload its source
directory, send both configs) -> wait until every targeted device settles. Progress lines go to
``say``; the caller decides where they are shown. Answers are the API's schemas (HubClient).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgefleet.hub.cli.files import collect_files, source_files
from edgefleet.hub.cli.tables import human_size
from edgefleet.hub.client import HubClient
from edgefleet.hub.configs import load_deployment_config, load_inference_config, read_json_file
from edgefleet.hub.errors import ClientError
from edgefleet.hub.refs import parse_model_ref
from edgefleet.hub.schemas import FileEntry, ModelView, ServiceView
from edgefleet.protocol.digests import sha256_file
from edgefleet.protocol.models import ModuleState

Say = Callable[[str], None]
POLL_S = 0.3


def upload_file(client: HubClient, path: Path, rel: str, say: Say) -> FileEntry:
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
    return FileEntry(path=rel, digest=digest, size=size)


def register_model(
    client: HubClient, path: Path, name: str, tags: dict[str, str], description: str, say: Say
) -> ModelView:
    files = collect_files(path)
    say(f"registering {name} ({len(files)} file(s))")
    entries = [upload_file(client, local, rel, say) for rel, local in files]
    return client.create_model(name, entries, tags, description)


def deploy_service(
    client: HubClient,
    name: str,
    models: list[str],
    ic_path: Path | None,
    dc_path: Path | None,
    say: Say,
    overwrite: bool = False,
) -> ServiceView:
    for ref in models:
        parse_model_ref(ref)
    inference_config: dict[str, Any] | None = None
    deployment_config: dict[str, Any] | None = None
    entries: list[FileEntry] = []
    if ic_path:
        ic = load_inference_config(ic_path)  # local check first: errors name the user's file
        inference_config = read_json_file(ic_path)
        files = source_files(ic_path, ic)
        if files:
            say(f"uploading {len(files)} source file(s)")
        entries = [upload_file(client, local, rel, say) for rel, local in files]
    if dc_path:
        load_deployment_config(dc_path)
        deployment_config = read_json_file(dc_path)
    return client.deploy(name, models, inference_config, deployment_config, entries, overwrite)


def wait_for_service(
    client: HubClient,
    name: str,
    timeout: float,
    say: Say,
    on_poll: Callable[[], None] | None = None,
) -> ServiceView:
    """Poll until the service leaves Transitioning; one progress line per device state change."""
    deadline = time.monotonic() + timeout
    seen: dict[str, tuple[ModuleState, str]] = {}
    while True:
        if on_poll:
            on_poll()
        service = client.get_service(name)
        for d in service.devices:
            now = (d.state, d.message)
            if seen.get(d.device) != now:
                seen[d.device] = now
                backend = f" on {d.backend}" if d.backend and d.state == ModuleState.HEALTHY else ""
                say(f"  {d.device}: {d.state.value}{backend}" + (f" - {d.message}" if d.message else ""))
        if service.state != ModuleState.TRANSITIONING:
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
            d.device_id
            for d in client.list_devices()
            if d.last_report and any(m.name == name or m.service == name for m in d.last_report.modules)
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
