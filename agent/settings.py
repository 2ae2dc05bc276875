"""Agent settings: defaults that run on a laptop, overridden by a file, the environment and the CLI.

Precedence (highest first): CLI flags, ``EDGEFLEET_AGENT_*`` environment variables, the settings
file (JSON or TOML), defaults. Durations are in seconds. Settings come in groups (``mqtt``,
``modules``, ``restart``, ...; every one is listed in agent/README.md):

- file: a table per group (``[restart]`` / ``"restart": {...}``); the device's identity at the top.
- environment: ``EDGEFLEET_AGENT_<GROUP>__<NAME>`` (``EDGEFLEET_AGENT_RESTART__MAX_RESTARTS=5``),
  ``EDGEFLEET_AGENT_<NAME>`` for the top level, or a whole group as JSON
  (``EDGEFLEET_AGENT_RESTART='{"max_restarts": 5}'``). Lists and objects are JSON.
- the names from before the groups (``EDGEFLEET_AGENT_MAX_RESTARTS``, ``module_command`` in a file)
  keep working everywhere: ``LEGACY_NAMES`` maps each to its group and name.

An unknown name is an error that names it. The sources are merged here rather than by
pydantic-settings: that package costs the agent about 3 MB of resident memory (it pulls in asyncio
and more of pydantic), against a 40 MB budget. Restart back-off defaults follow Azure IoT Edge
(10 s x 2^n up to 300 s, give up after 20 restarts, forget after 10 minutes healthy).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgefleet.agent.errors import SettingsError
from edgefleet.protocol.brokers import parse_broker_url
from edgefleet.protocol.topics import check_device_id

ENV_PREFIX = "EDGEFLEET_AGENT_"
NESTED = "__"  # EDGEFLEET_AGENT_<GROUP>__<NAME>


def _default_module_command() -> list[str]:
    return [sys.executable, "-m", "edgefleet.modules.scoring"]


def _default_discovery_command() -> list[str]:
    return [sys.executable, "-m", "edgefleet.accelerators.discovery", "--json"]


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class MqttSettings(_Group):
    broker_url: str = Field(
        default="mqtt://127.0.0.1:1883", description="the MQTT broker, mqtts:// for TLS (`--broker`; bundle)"
    )
    keepalive_s: int = Field(default=30, ge=5, description="MQTT keep-alive")
    reconnect_min_s: float = Field(default=0.5, gt=0, description="first reconnect delay; doubles on each failure")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="longest reconnect delay")
    ca_file: Path | None = Field(
        default=None, description="CA of the broker's certificate (mqtts); none: the bundle's, else the system's"
    )
    cert_file: Path | None = Field(default=None, description="client certificate (mqtts); none: the bundle's")
    key_file: Path | None = Field(default=None, description="key of cert_file; none: the bundle's")
    username: str | None = Field(default=None, description="broker username (password identities); none: the bundle's")
    password: str | None = Field(default=None, description="broker password; none: the bundle's")

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, v: str) -> str:
        try:
            parse_broker_url(v)
        except ValueError:
            raise ValueError(
                f"broker URL must look like mqtt://host:1883 or mqtts://host:8883 (TLS), got {v!r}"
            ) from None
        return v

    @property
    def host(self) -> str:
        return parse_broker_url(self.broker_url).host

    @property
    def port(self) -> int:
        return parse_broker_url(self.broker_url).port

    @property
    def tls(self) -> bool:
        return parse_broker_url(self.broker_url).tls

    def __repr_args__(self) -> Any:  # the password never reaches a log line or a traceback
        for name, value in super().__repr_args__():
            yield name, ("***" if name == "password" and value else value)


class ModulesSettings(_Group):
    command: list[str] = Field(
        default_factory=_default_module_command, description="how a process module is started (the scoring server)"
    )
    port_range: tuple[int, int] = Field(default=(20000, 29999), description="ports given to modules that ask for none")
    stop_grace_s: float = Field(default=5.0, ge=0, description="SIGTERM to SIGKILL when stopping a module")
    stop_on_exit: bool = Field(
        default=False, description="stop the modules when the agent exits (`--stop-modules-on-exit`); else adopt them"
    )
    startup_probe_interval_s: float = Field(default=0.1, gt=0, description="health-probe period while Transitioning")
    resource_limits: Literal["auto", "no-cgroups", "off"] = Field(
        default="auto", description="auto: cgroup v2/v1 when writable, else CPU affinity and RLIMIT_DATA"
    )
    limits_cgroup_parent: str | None = Field(
        default=None, description="cgroup path (as in /proc/self/cgroup) for module groups; default: the agent's own"
    )
    docker_url: str | None = Field(
        default=None, description="Docker Engine API URL; default DOCKER_HOST or unix:///var/run/docker.sock"
    )

    @model_validator(mode="after")
    def _checks(self) -> ModulesSettings:
        low, high = self.port_range
        if not 1024 <= low <= high <= 65535:
            raise ValueError(f"port_range must be two ports 1024 <= low <= high <= 65535, got {self.port_range}")
        if not self.command:
            raise ValueError("modules.command must not be empty")
        return self


class RestartSettings(_Group):
    backoff_base_s: float = Field(default=10.0, ge=0, description="delay before the second restart; doubles after")
    backoff_max_s: float = Field(default=300.0, ge=0, description="longest delay between restarts")
    max_restarts: int = Field(default=20, ge=0, description="restarts of one spec before giving up (Failed)")
    reset_after_s: float = Field(default=600.0, ge=0, description="healthy this long: the restart count is forgotten")


class RetrySettings(_Group):
    base_s: float = Field(default=1.0, ge=0, description="cool-off after a step or download fails temporarily")
    max_s: float = Field(default=60.0, ge=0, description="longest cool-off (it doubles per failure)")


class RollbackSettings(_Group):
    window_s: float | None = Field(
        default=None, gt=0, description="time a new generation has to become Healthy; none: its longest startupTimeoutS"
    )


class ReportingSettings(_Group):
    heartbeat_s: float = Field(default=60.0, gt=0, description="an unchanged report is sent again this often")
    telemetry_interval_s: float = Field(default=30.0, gt=0, description="resource-use telemetry period")


class CacheSettings(_Group):
    max_bytes: int = Field(default=2 << 30, gt=0, description="artifact cache cap; unused blobs are evicted LRU")
    download_timeout_s: float = Field(default=30.0, gt=0, description="HTTP timeout of artifact downloads")


class DiscoverySettings(_Group):
    command: list[str] = Field(
        default_factory=_default_discovery_command, description="accelerator discovery, printing JSON"
    )
    timeout_s: float = Field(default=30.0, gt=0, description="discovery gets this long, else no accelerators")
    fpga_sim: str | None = Field(
        default=None,
        description="simulated FPGA board(s), e.g. kv260 (`--fpga-sim`; sets EDGEFLEET_FPGA_SIM for discovery "
        "and modules, so the board is found and used exactly like a real one)",
    )


GROUPS: dict[str, type[_Group]] = {
    "mqtt": MqttSettings,
    "modules": ModulesSettings,
    "restart": RestartSettings,
    "retry": RetrySettings,
    "rollback": RollbackSettings,
    "reporting": ReportingSettings,
    "cache": CacheSettings,
    "discovery": DiscoverySettings,
}

# flat names from before the groups -> (group, name); accepted in files, the environment and code
LEGACY_NAMES: dict[str, tuple[str, str]] = {
    "broker_url": ("mqtt", "broker_url"),
    "mqtt_keepalive_s": ("mqtt", "keepalive_s"),
    "reconnect_min_s": ("mqtt", "reconnect_min_s"),
    "reconnect_max_s": ("mqtt", "reconnect_max_s"),
    "module_command": ("modules", "command"),
    "port_range": ("modules", "port_range"),
    "stop_grace_s": ("modules", "stop_grace_s"),
    "stop_modules_on_exit": ("modules", "stop_on_exit"),
    "startup_probe_interval_s": ("modules", "startup_probe_interval_s"),
    "resource_limits": ("modules", "resource_limits"),
    "limits_cgroup_parent": ("modules", "limits_cgroup_parent"),
    "docker_url": ("modules", "docker_url"),
    "restart_backoff_base_s": ("restart", "backoff_base_s"),
    "restart_backoff_max_s": ("restart", "backoff_max_s"),
    "max_restarts": ("restart", "max_restarts"),
    "restart_reset_after_s": ("restart", "reset_after_s"),
    "step_retry_base_s": ("retry", "base_s"),
    "step_retry_max_s": ("retry", "max_s"),
    "rollback_window_s": ("rollback", "window_s"),
    "report_heartbeat_s": ("reporting", "heartbeat_s"),
    "telemetry_interval_s": ("reporting", "telemetry_interval_s"),
    "cache_max_bytes": ("cache", "max_bytes"),
    "http_timeout_s": ("cache", "download_timeout_s"),
    "discovery_command": ("discovery", "command"),
    "discovery_timeout_s": ("discovery", "timeout_s"),
    "fpga_sim": ("discovery", "fpga_sim"),
}


class AgentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    device_id: str = Field(description="this device's id, also its MQTT identity (`--device-id`; bundle)")
    bootstrap: Path | None = Field(
        default=None,
        description="bootstrap bundle from `edgefleet device register` (`--bootstrap`); installed into the data "
        "dir, so later starts need only the device id",
    )
    hub_url: str = Field(default="http://127.0.0.1:8080", description="the hub's base URL (`--hub`; bundle)")
    data_dir: Path | None = Field(
        default=None, description="state, cache and module directories; none: ./.edgefleet/agent/<device id>"
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="labels the device reports (`--label`); for information only: the hub selects on the "
        "operator's labels",
    )
    hub_public_key: str | None = Field(
        default=None, description="the hub's base64 ed25519 manifest key (`--hub-key`; bundle); else the pinned one"
    )
    hub_key_fingerprint: str | None = Field(
        default=None,
        description="without a key: pin the hub's key on first use, only if its sha256 fingerprint is this "
        "(`--hub-key-fingerprint`)",
    )
    hub_ca_file: Path | None = Field(
        default=None,
        description="CA an https:// hub's certificate must chain to (`--hub-ca-file`); none: the bundle's CA, "
        "else the system's",
    )

    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    modules: ModulesSettings = Field(default_factory=ModulesSettings)
    restart: RestartSettings = Field(default_factory=RestartSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    rollback: RollbackSettings = Field(default_factory=RollbackSettings)
    reporting: ReportingSettings = Field(default_factory=ReportingSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)

    @model_validator(mode="before")
    @classmethod
    def _legacy_names(cls, data: Any) -> Any:
        return grouped(data, "settings") if isinstance(data, Mapping) else data

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, v: str) -> str:
        return check_device_id(v)

    @field_validator("hub_url")
    @classmethod
    def _hub_url(cls, v: str) -> str:
        if urlparse(v).scheme not in ("http", "https"):
            raise ValueError(f"hub URL must be http:// or https://, got {v!r}")
        return v.rstrip("/")

    @property
    def resolved_data_dir(self) -> Path:
        return (self.data_dir or Path(".edgefleet") / "agent" / self.device_id).resolve()


def grouped(settings: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Settings with every legacy flat name moved into its group (a copy; unknown names are kept
    for validation to refuse). One source may give a setting only once, under either name."""
    out: dict[str, Any] = {}
    given: dict[tuple[str, str], str] = {}
    for key, value in settings.items():
        if key in GROUPS and isinstance(value, BaseModel):
            value = value.model_dump(exclude_unset=True)  # a group given as its model, in code
        if key in GROUPS and isinstance(value, Mapping):
            for name, v in value.items():
                _put(out, given, (key, name), v, f"{key}.{name}", where)
        elif key in LEGACY_NAMES:
            _put(out, given, LEGACY_NAMES[key], value, key, where)
        else:
            out[key] = value
    return out


def _put(
    out: dict[str, Any], given: dict[tuple[str, str], str], leaf: tuple[str, str], value: Any, label: str, where: str
) -> None:
    if leaf in given:
        raise SettingsError(f"{where}: {given[leaf]} and {label} are the same setting ({'.'.join(leaf)}); give it once")
    given[leaf] = label
    out.setdefault(leaf[0], {})[leaf[1]] = value


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, group by group."""
    out = dict(base)
    for key, value in top.items():
        if key in GROUPS and isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def _without_none(overrides: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping) and key in GROUPS:
            value = {k: v for k, v in value.items() if v is not None}
            if not value:
                continue
        if value is not None:
            out[key] = value
    return out


def load_settings(config_file: Path | None = None, **overrides: Any) -> AgentSettings:
    """Build settings from an optional JSON/TOML file, the environment and explicit overrides.

    Overrides are top-level names, groups (``restart={"max_restarts": 3}``) or legacy flat names.
    Those that are None are ignored, so CLI flags left out fall through to the environment.
    """
    from_file: dict[str, Any] = {}
    if config_file is not None:
        try:
            text = config_file.read_text()
            from_file = tomllib.loads(text) if config_file.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as exc:
            raise SettingsError(f"settings file {config_file}: cannot read it: {exc}") from exc
        if not isinstance(from_file, dict):
            raise SettingsError(f"settings file {config_file}: expected an object (a table) at the top level")
        from_file = grouped(from_file, f"settings file {config_file}")
    given = grouped(_without_none(overrides), "command line")
    merged = _merge(_merge(from_file, environment_settings(os.environ)), given)
    merged = _with_bundle(merged)
    try:
        return AgentSettings(**merged)
    except ValidationError as exc:
        where = f"settings file {config_file}, " if config_file else ""
        raise SettingsError(
            f"invalid agent settings ({where}environment {ENV_PREFIX}*, or command line): {exc}"
        ) from exc


def _with_bundle(merged: dict[str, Any]) -> dict[str, Any]:
    """The bootstrap bundle's values beneath every other source: ``bootstrap`` names it, or an earlier
    start installed it in the data dir."""
    from edgefleet.agent.bootstrap import bundle_settings, installed_bundle, read_bundle

    if merged.get("bootstrap"):
        path = Path(merged["bootstrap"])
    else:
        device_id = merged.get("device_id")
        data_dir = merged.get("data_dir") or (Path(".edgefleet") / "agent" / device_id if device_id else None)
        if data_dir is None or not installed_bundle(Path(data_dir)).exists():
            return merged
        path = installed_bundle(Path(data_dir))
        merged = {**merged, "bootstrap": path}
    bundle = read_bundle(path)
    if merged.get("device_id") not in (None, bundle.device_id):
        raise SettingsError(
            f"bootstrap bundle {path} is for device {bundle.device_id}, not {merged['device_id']}; "
            "give the device's own bundle, or leave out --device-id"
        )
    return _merge(bundle_settings(bundle), merged)


def environment_names() -> list[str]:
    """Every environment variable the agent reads, in the grouped scheme (legacy names aside)."""
    names = [ENV_PREFIX + name.upper() for name in AgentSettings.model_fields if name not in GROUPS]
    for group, model in GROUPS.items():
        names += [f"{ENV_PREFIX}{group.upper()}{NESTED}{name.upper()}" for name in model.model_fields]
    return names


def environment_settings(environ: Mapping[str, str], *, strict: bool = True) -> dict[str, Any]:
    """The ``EDGEFLEET_AGENT_*`` variables as grouped settings; an unknown name is an error (a typo
    must show), or skipped when not ``strict``."""
    top = {name for name in AgentSettings.model_fields if name not in GROUPS}
    found: dict[str, Any] = {}
    given: dict[tuple[str, str], str] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        group, _, field = name.partition(NESTED)
        if field and group in GROUPS and field in GROUPS[group].model_fields:
            _put(found, given, (group, field), _env_value(key, raw), key, "environment")
        elif name in LEGACY_NAMES:
            _put(found, given, LEGACY_NAMES[name], _env_value(key, raw), key, "environment")
        elif name in GROUPS:
            value = _env_value(key, raw)
            if not isinstance(value, dict):
                raise SettingsError(f"environment variable {key}: a group of settings, give it as a JSON object")
            for field, v in value.items():
                _put(found, given, (name, field), v, f"{key} ({field})", "environment")
        elif name in top:
            found[name] = _env_value(key, raw)
        elif strict:
            raise SettingsError(f"environment variable {key}: not an agent setting{_suggest(key)}")
    return found


def _env_value(key: str, raw: str) -> Any:
    if not raw.lstrip().startswith(("[", "{")):
        return raw
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise SettingsError(f"environment variable {key}: not valid JSON: {exc}") from exc


def _suggest(key: str) -> str:
    import difflib  # only on this error path

    close = difflib.get_close_matches(key, [*environment_names(), *(ENV_PREFIX + n.upper() for n in LEGACY_NAMES)])
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{hint}; the agent's settings and their variables are listed in agent/README.md"
