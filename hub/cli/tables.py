"""The readable form of each API schema, as ``-o table`` prints it (the JSON form is the schema itself)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from edgefleet.hub.cli.output import table
from edgefleet.hub.schemas import (
    BrokerReloadView,
    CredentialView,
    DeviceRegistration,
    DeviceServiceState,
    DeviceView,
    ModelView,
    ServiceView,
    TokenView,
)
from edgefleet.protocol.models import ModelRef, ModuleState

DEVICE_STATE_HEADERS = ["DEVICE", "STATE", "ONLINE", "GEN", "DESIRED", "ENDPOINT", "BACKEND", "MESSAGE"]


# values ----------------------------------------------------------------------------------------
def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def short_time(at: datetime | None) -> str:
    """To the second, as the hub recorded it (UTC)."""
    return at.strftime("%Y-%m-%d %H:%M:%S") if at else ""


def tags_text(tags: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(tags.items()))


def model_ref(model: ModelRef | ModelView) -> str:
    """``NAME:VERSION``, as users write it."""
    return f"{model.name}:{model.version}"


def refs_text(models: Sequence[ModelRef]) -> str:
    return ", ".join(model_ref(m) for m in models)


def _dash(value: object) -> object:
    return "-" if value is None else value


# models ----------------------------------------------------------------------------------------
def model_table(models: list[ModelView]) -> str:
    rows = [
        [
            m.name,
            m.version,
            len(m.files),
            human_size(sum(f.size for f in m.files)),
            tags_text(m.tags),
            short_time(m.created),
            m.description,
        ]
        for m in models
    ]
    return table(["NAME", "VERSION", "FILES", "SIZE", "TAGS", "CREATED", "DESCRIPTION"], rows)


def model_detail(m: ModelView) -> str:
    return "\n".join(
        [
            f"model:       {model_ref(m)}",
            f"created:     {short_time(m.created)}",
            f"tags:        {tags_text(m.tags)}",
            f"description: {m.description}",
            table(["PATH", "SIZE", "DIGEST"], [[f.path, human_size(f.size), f.digest] for f in m.files]),
        ]
    )


# services --------------------------------------------------------------------------------------
def device_state_rows(devices: Sequence[DeviceServiceState]) -> list[list[Any]]:
    return [
        [
            d.device,
            d.state.value,
            "yes" if d.online else ("no" if d.online is False else "?"),
            _dash(d.generation),
            _dash(d.desired_generation),
            d.endpoint or "",
            d.backend or "",
            d.message or "",
        ]
        for d in devices
    ]


def service_detail(s: ServiceView) -> str:
    lines = [
        f"service: {s.name}",
        f"state:   {s.state.value}  ({s.reason})",
        f"models:  {refs_text(s.models)}",
        f"entry:   {s.inference_config.entry_script or '(no-code)'}",
        f"target:  {s.target}",
    ]
    if s.devices:
        lines.append(table(DEVICE_STATE_HEADERS, device_state_rows(s.devices)))
    choices = [d for d in s.devices if d.backend]
    if choices:
        lines.append("backend choice (measured on each device when the module loaded):")
    lines += [f"  {d.device}: {d.reason or d.backend}" for d in choices]
    return "\n".join(lines)


def service_table(services: list[ServiceView]) -> str:
    rows = [
        [
            s.name,
            s.state.value,
            refs_text(s.models),
            sum(1 for d in s.devices if d.state == ModuleState.HEALTHY),
            len(s.devices),
            s.reason,
        ]
        for s in services
    ]
    return table(["NAME", "STATE", "MODELS", "HEALTHY", "DEVICES", "REASON"], rows)


# devices ---------------------------------------------------------------------------------------
def credential_text(c: CredentialView | None) -> str:
    if c is None:
        return "none (`edgefleet device register` gives it one)"
    what = f"certificate serial {c.serial}" if c.kind == "certificate" else "broker password"
    until = f", valid until {c.not_after:%Y-%m-%d}" if c.not_after else ""
    revoked = f", revoked {short_time(c.revoked_at)}" if c.revoked_at else ""
    return f"{what}{until}{revoked}"


def device_table(devices: list[DeviceView]) -> str:
    rows = [
        [
            d.device_id,
            d.status,
            d.presence,
            d.last_report.generation if d.last_report else "-",
            d.desired_generation or "-",
            len(d.last_report.modules) if d.last_report else 0,
            ",".join(sorted({a.kind for a in d.capabilities.accelerators})),
            tags_text(d.labels),
            short_time(d.last_seen),
        ]
        for d in devices
    ]
    headers = ["DEVICE", "STATUS", "PRESENCE", "GEN", "DESIRED", "MODULES", "ACCELERATORS", "LABELS", "LAST SEEN"]
    return table(headers, rows)


def device_detail(d: DeviceView) -> str:
    report = d.last_report
    lines = [
        f"device:      {d.device_id}  ({d.status}, {d.presence}, agent {d.agent_version or '?'})",
        f"labels:      {tags_text(d.labels)}",
        f"identity:    {credential_text(d.credential)}",
        f"generation:  reported {report.generation if report else '-'}, desired {d.desired_generation or '-'}",
        f"last seen:   {short_time(d.last_seen) or 'never'}",
    ]
    if report and report.rejected:
        lines.append(f"rejected:    {report.rejected}")
    accelerators = d.capabilities.accelerators
    if accelerators:
        lines.append(
            table(
                ["KIND", "PLATFORM", "DEVICE", "BOARD", "SIMULATED"],
                [[a.kind, a.platform, a.device, a.board or "", a.simulated] for a in accelerators],
            )
        )
    modules = report.modules if report else []
    if modules:
        lines.append(
            table(
                ["MODULE", "STATE", "ENDPOINT", "BACKEND", "RESTARTS", "MESSAGE"],
                [[m.name, m.state.value, m.endpoint or "", m.backend or "", m.restarts, m.message] for m in modules],
            )
        )
    return "\n".join(lines)


def registration_text(r: DeviceRegistration, bundle_file: object) -> str:
    d = r.device
    lines = [
        f"registered {d.device_id} ({tags_text(d.labels) or 'no labels'}); identity: {credential_text(d.credential)}",
        f"bootstrap bundle written to {bundle_file} (mode 0600: it holds the device's "
        f"{'private key' if r.bundle.auth == 'certificate' else 'password'}; copy it to the device, then delete it)",
        f"on the device: edgefleet-agent --bootstrap {bundle_file}",
    ]
    if r.broker is not None:
        lines.append(f"broker: {r.broker.message}")
    return "\n".join(lines)


def removal_text(what: str, broker: BrokerReloadView) -> str:
    return f"{what}\nbroker: {broker.message}"


# tokens ----------------------------------------------------------------------------------------
def token_table(tokens: list[TokenView]) -> str:
    """Ids and names only: the hub never hands out a token after creating it."""
    rows = [
        [
            t.id,
            t.name,
            t.role.value,
            t.state,
            short_time(t.created_at),
            short_time(t.expires_at) or "never",
            short_time(t.last_used) or "never",
        ]
        for t in tokens
    ]
    return table(["ID", "NAME", "ROLE", "STATE", "CREATED", "EXPIRES", "LAST USED"], rows)


def token_line(t: TokenView) -> str:
    expires = f"expires {short_time(t.expires_at)}" if t.expires_at else "never expires"
    return f"{t.role.value} token {t.name!r} (id {t.id}, {t.state}, {expires})"
