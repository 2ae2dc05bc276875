"""The operator's workflow steps over the REST API, shared by the CLI and the demo.

register a model (upload each file's blob once, by digest) -> deploy a service (upload its source
directory, send both configs) -> wait until every targeted device settles; update a service, or
download a model's files. Whatever can be refused here (a bad name, a model that is not
registered, a service that exists or does not) is refused before anything is uploaded. Progress
lines and the hub's warnings go to ``say``; the caller decides where they are shown. Answers are
the API's schemas (HubClient).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from edgefleet.hub.cli.files import collect_files, directory_files, source_files
from edgefleet.hub.cli.output import Result
from edgefleet.hub.cli.tables import human_size, service_detail
from edgefleet.hub.client import HubClient
from edgefleet.hub.configs import InferenceConfig, load_deployment_config, load_inference_config, read_json_file
from edgefleet.hub.errors import ClientError, Conflict, NotFound
from edgefleet.hub.refs import ModelQuery, check_model_name, check_service_name, parse_model_query
from edgefleet.hub.schemas import FileEntry, ModelView, ServiceDeployed, ServiceView
from edgefleet.protocol.digests import sha256_file
from edgefleet.protocol.models import ModuleState, check_relative_path

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
    check_model_name(name)  # before any upload
    files = collect_files(path)
    say(f"registering {name} ({len(files)} file(s))")
    entries = [upload_file(client, local, rel, say) for rel, local in files]
    return client.create_model(name, entries, tags, description)


def find_model(client: HubClient, query: ModelQuery) -> ModelView:
    """The model version named, or (NAME alone) the latest registered one."""
    if query.version is not None:
        return client.get_model(query.name, query.version)
    versions = client.list_models(query.name)
    if not versions:
        raise NotFound(f"model {query.name} is not registered (`edgefleet model list` shows the models)")
    return max(versions, key=lambda m: m.version)


def check_models(client: HubClient, models: Sequence[str]) -> None:
    """Each reference well-formed and registered: said before anything is uploaded."""
    for text in models:
        find_model(client, parse_model_query(text))


def _sources(
    ic_path: Path | None, ic: InferenceConfig | None, source_dir: Path | None, entry_script: str | None
) -> list[tuple[str, Path]] | None:
    """The source files to upload: the folder --source-dir names, else the inference config's
    sourceDirectory (or entry script); None when neither is given."""
    if source_dir is not None:
        return directory_files(source_dir, entry_script)
    if ic_path is not None and ic is not None:
        return source_files(ic_path, ic)
    return None


def _upload_sources(client: HubClient, files: list[tuple[str, Path]], say: Say) -> list[FileEntry]:
    if files:
        say(f"uploading {len(files)} source file(s)")
    return [upload_file(client, local, rel, say) for rel, local in files]


def say_warnings(service: ServiceDeployed, say: Say) -> None:
    for line in service.warnings:
        say(f"warning: {line}")


def deploy_service(
    client: HubClient,
    name: str,
    models: list[str],
    ic_path: Path | None,
    dc_path: Path | None,
    say: Say,
    overwrite: bool = False,
    source_dir: Path | None = None,
) -> ServiceDeployed:
    """Check everything that can be checked here (the name, the models, the configs), upload the
    source files, deploy; the hub's warnings are said as they come."""
    check_service_name(name)
    ic = load_inference_config(ic_path) if ic_path else None  # local check first: errors name the user's file
    if dc_path:
        load_deployment_config(dc_path)
    check_models(client, models)
    if not overwrite and _exists(client, name):
        raise Conflict(
            f"service {name} already exists; give --overwrite to replace it, or change it with "
            f"`edgefleet service update {name}`"
        )
    files = _sources(ic_path, ic, source_dir, ic.entry_script if ic else None) or []
    entries = _upload_sources(client, files, say)
    service = client.deploy(
        name,
        models,
        read_json_file(ic_path) if ic_path else None,
        read_json_file(dc_path) if dc_path else None,
        entries,
        overwrite,
    )
    say_warnings(service, say)
    return service


def _exists(client: HubClient, name: str) -> bool:
    try:
        client.get_service(name)
    except NotFound:
        return False
    return True


def update_service(
    client: HubClient,
    name: str,
    models: list[str] | None,
    ic_path: Path | None,
    dc_path: Path | None,
    source_dir: Path | None,
    say: Say,
) -> ServiceDeployed:
    """Change only what is given: models, either config, the source folder (the rest stays)."""
    if not (models or ic_path or dc_path or source_dir):
        raise ClientError("nothing to update: give -m MODEL, --ic FILE, --dc FILE or --source-dir DIR")
    ic = load_inference_config(ic_path) if ic_path else None
    if dc_path:
        load_deployment_config(dc_path)
    current = client.get_service(name)  # the service must exist before anything is uploaded
    if models:
        check_models(client, models)
    entry = (ic or current.inference_config).entry_script
    files = _sources(ic_path, ic, source_dir, entry)
    entries = _upload_sources(client, files, say) if files is not None else None
    service = client.update_service(
        name,
        models or None,
        read_json_file(ic_path) if ic_path else None,
        read_json_file(dc_path) if dc_path else None,
        entries,
    )
    say_warnings(service, say)
    return service


def download_model(client: HubClient, model: ModelView, out: Path, overwrite: bool, say: Say) -> list[Path]:
    """Write the model version's files under ``out`` (their registered paths), each checked
    against its digest before it takes its name; existing files only with ``overwrite``."""
    targets: list[tuple[FileEntry, Path]] = []
    for f in model.files:
        try:
            check_relative_path(f.path, "model file path")
        except ValueError as exc:
            raise ClientError(f"model {model.name}:{model.version}: {exc}; not writing it") from None
        dest = out / f.path
        if dest.exists() and not overwrite:
            raise ClientError(f"{dest} exists; give --overwrite to replace it, or another --out folder")
        targets.append((f, dest))
    say(f"downloading {model.name}:{model.version} ({len(targets)} file(s)) to {out}")
    tty = sys.stderr.isatty()
    for f, dest in targets:

        def progress(got: int, total: int, rel: str = f.path) -> None:
            if tty:
                sys.stderr.write(f"\r  downloading {rel}: {human_size(got)} / {human_size(total)}")
                sys.stderr.flush()

        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        try:
            with open(part, "wb") as fh:
                client.download_blob(f.digest, fh, progress)
            part.replace(dest)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        finally:
            if tty:
                sys.stderr.write("\r")
        say(f"  {f.path}: {human_size(f.size)} {f.digest[:19]}")
    return [dest for _f, dest in targets]


def settled(
    client: HubClient, service: ServiceDeployed, wait: bool, timeout: float, say: Say
) -> Result[ServiceDeployed]:
    """A deploy's or an update's result: the service once its devices settled (``wait``), with the
    hub's warnings; exit status 1 when it did not end Healthy."""
    if not wait:
        return Result(service, service_detail)
    final = wait_for_service(client, service.name, timeout, say)
    return Result(
        ServiceDeployed(**dict(final), warnings=service.warnings),
        service_detail,
        status=0 if final.state == ModuleState.HEALTHY else 1,
    )


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
