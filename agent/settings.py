"""Agent settings: defaults that run on a laptop, overridden by a file, the environment and the CLI.

Precedence (highest first): CLI flags, ``EDGEFLEET_AGENT_*`` environment variables, the settings
file (JSON or TOML), defaults. Durations are in seconds. Environment values that are lists or
objects are JSON (``EDGEFLEET_AGENT_LABELS='{"site": "lab"}'``).

The sources are merged here rather than by pydantic-settings: that package costs the agent about
3 MB of resident memory (it pulls in asyncio and more of pydantic), against a 40 MB budget. Restart back-off defaults follow Azure IoT
Edge (10 s x 2^n up to 300 s, give up after 20 restarts, forget after 10 minutes healthy).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgefleet.agent.errors import SettingsError
from edgefleet.protocol.topics import check_device_id

ENV_PREFIX = "EDGEFLEET_AGENT_"


def _default_module_command() -> list[str]:
    return [sys.executable, "-m", "edgefleet.modules.scoring"]


def _default_discovery_command() -> list[str]:
    return [sys.executable, "-m", "edgefleet.accelerators.discovery", "--json"]


class AgentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    device_id: str
    hub_url: str = "http://127.0.0.1:8080"
    broker_url: str = "mqtt://127.0.0.1:1883"
    data_dir: Path | None = Field(default=None, description="default ./.edgefleet/agent/<device id>")
    labels: dict[str, str] = Field(default_factory=dict)
    hub_public_key: str | None = Field(default=None, description="base64 raw ed25519; absent: pin on first use")

    # modules
    module_command: list[str] = Field(default_factory=_default_module_command)
    port_range: tuple[int, int] = (20000, 29999)
    stop_grace_s: float = Field(default=5.0, ge=0)
    stop_modules_on_exit: bool = False
    resource_limits: Literal["auto", "no-cgroups", "off"] = Field(
        default="auto", description="auto: cgroup v2/v1 when writable, else CPU affinity and RLIMIT_DATA"
    )
    docker_url: str | None = Field(
        default=None, description="Docker Engine API URL; default DOCKER_HOST or unix:///var/run/docker.sock"
    )
    limits_cgroup_parent: str | None = Field(
        default=None, description="cgroup path (as in /proc/self/cgroup) for module groups; default: the agent's own"
    )

    # health and restarts
    startup_probe_interval_s: float = Field(default=0.1, gt=0, description="probe period while Transitioning")
    restart_backoff_base_s: float = Field(default=10.0, ge=0)
    restart_backoff_max_s: float = Field(default=300.0, ge=0)
    max_restarts: int = Field(default=20, ge=0)
    restart_reset_after_s: float = Field(default=600.0, ge=0)

    # safe updates and disk
    rollback_window_s: float | None = Field(
        default=None, gt=0, description="time a new generation has to become Healthy; None: its longest startupTimeoutS"
    )
    cache_max_bytes: int = Field(default=2 << 30, gt=0, description="artifact cache cap; unused blobs are evicted LRU")

    # executor cool-off for failing steps (downloads, starts)
    step_retry_base_s: float = Field(default=1.0, ge=0)
    step_retry_max_s: float = Field(default=60.0, ge=0)

    # reporting
    report_heartbeat_s: float = Field(default=60.0, gt=0)
    telemetry_interval_s: float = Field(default=30.0, gt=0)
    discovery_command: list[str] = Field(default_factory=_default_discovery_command)
    discovery_timeout_s: float = Field(default=30.0, gt=0)
    fpga_sim: str | None = Field(
        default=None,
        description="simulated FPGA board(s) for this device, e.g. 'kv260' (sets EDGEFLEET_FPGA_SIM for "
        "discovery and modules, so the simulated board is found and used exactly like a real one)",
    )

    # MQTT / HTTP
    mqtt_keepalive_s: int = Field(default=30, ge=5)
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    http_timeout_s: float = Field(default=30.0, gt=0)

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

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, v: str) -> str:
        parsed = urlparse(v)
        if parsed.scheme not in ("mqtt", "tcp") or not parsed.hostname:
            raise ValueError(f"broker URL must look like mqtt://host:1883, got {v!r}")
        return v

    @model_validator(mode="after")
    def _ranges(self) -> AgentSettings:
        low, high = self.port_range
        if not 1024 <= low <= high <= 65535:
            raise ValueError(f"port_range must be two ports 1024 <= low <= high <= 65535, got {self.port_range}")
        if not self.module_command:
            raise ValueError("module_command must not be empty")
        return self

    @property
    def resolved_data_dir(self) -> Path:
        return (self.data_dir or Path(".edgefleet") / "agent" / self.device_id).resolve()

    @property
    def broker_host(self) -> str:
        return urlparse(self.broker_url).hostname or "127.0.0.1"

    @property
    def broker_port(self) -> int:
        return urlparse(self.broker_url).port or 1883


def load_settings(config_file: Path | None = None, **overrides: Any) -> AgentSettings:
    """Build settings from an optional JSON/TOML file, the environment and explicit overrides.

    Overrides that are None are ignored, so CLI flags left out fall through to the environment.
    """
    from_file: dict[str, Any] = {}
    if config_file is not None:
        try:
            text = config_file.read_text()
            from_file = tomllib.loads(text) if config_file.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as exc:
            raise SettingsError(f"settings file {config_file}: cannot read it: {exc}") from exc
    given = {k: v for k, v in overrides.items() if v is not None}
    merged = {**from_file, **environment_settings(os.environ), **given}
    try:
        return AgentSettings(**merged)
    except ValidationError as exc:
        where = f"settings file {config_file}, " if config_file else ""
        raise SettingsError(
            f"invalid agent settings ({where}environment {ENV_PREFIX}*, or command line): {exc}"
        ) from exc


def environment_settings(environ: dict[str, str] | os._Environ[str]) -> dict[str, Any]:
    """The ``EDGEFLEET_AGENT_*`` variables as settings; an unknown name is an error (a typo must show)."""
    fields = AgentSettings.model_fields
    found: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in fields:
            raise SettingsError(
                f"environment variable {key}: not an agent setting (known: {', '.join(sorted(fields))})"
            )
        value: Any = raw
        if raw.lstrip().startswith(("[", "{")):
            try:
                value = json.loads(raw)
            except ValueError as exc:
                raise SettingsError(f"environment variable {key}: not valid JSON: {exc}") from exc
        found[name] = value
    return found
