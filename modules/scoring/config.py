"""Server configuration from the command line, with every option also settable by environment.

The options and their environment variables are the agent <-> module contract
(``edgefleet.protocol.module.ModuleOption``). Environment alone must be enough (a Docker container
is configured that way); a command-line option wins over its environment variable. The agent
appends ``--edgefleet-*`` identification arguments it owns (it finds its processes in /proc by
them); they are accepted and ignored.

Secrets (the scoring keys, ``ModuleSecret``) come from the environment only: there is no flag for
them, so they never show in ``ps``. The entry script must be a relative path inside the source
directory (the agent checks the same; ``service`` checks it again after resolving symlinks).

The serving options (``ServingOption``: transport, workers, back-pressure) are the module's
own, not part of the contract: the agent does not pass them, and the defaults hold without them
(``workers`` follows ``--cpu``, which the agent passes from the deployment, else the cpu the
process may use, see ``workers.available_cpus``).

A dataclass and argparse rather than pydantic-settings: the server must be Ready fast (the agent's
goal is manifest -> Healthy in under 1.5 s), and this parses in microseconds. The contract module
costs nothing extra: the server imports ``edgefleet.protocol`` (and pydantic) anyway.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefleet.modules.scoring.errors import ConfigError
from edgefleet.protocol.models import SCORING_KEY_PATTERN, check_relative_path
from edgefleet.protocol.module import (
    AZUREML_MODEL_DIR,
    DEFAULT_MAX_REQUEST_BYTES,
    MARK_PREFIX,
    FlagOption,
    ModuleOption,
    ModuleSecret,
)

ACCELERATOR_KINDS = ("fpga", "opencl", "cpu")
TRANSPORTS = ("asyncio", "threading")
DEFAULT_PORT = 5001  # the Azure ML inference server's default
# Requests admitted at once (running or waiting for an inference thread), for the whole module: enough
# that 32 kept-alive clients of a fast model never see a 503, few enough that their bodies stay within
# the byte budget (admission.admission_for); a slow model meets max_queue_wait_ms first.
DEFAULT_MAX_CONCURRENT_REQUESTS = 64
DEFAULT_MAX_QUEUE_WAIT_MS = 500  # Azure ML's default maxQueueWaitMs
MAX_WORKERS = 64
__all__ = [
    "DEFAULT_MAX_CONCURRENT_REQUESTS",
    "DEFAULT_MAX_QUEUE_WAIT_MS",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_PORT",
    "ServerConfig",
    "ServingOption",
    "build_parser",
    "parse_config",
]
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class ServerConfig:
    model_dir: Path
    source_dir: Path | None = None
    entry_script: str | None = None  # relative to source_dir; None = no-code mode
    model_name: str | None = None  # None: derived from the model file name
    model_version: str = "1"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    accelerator_prefer: tuple[str, ...] = ("cpu",)
    accelerator_required: bool = False
    status_file: Path | None = None
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    log_level: str = "INFO"
    tls_cert: Path | None = None  # with tls_key: serve HTTPS
    tls_key: Path | None = None
    auth_keys: tuple[str, ...] = field(default=(), repr=False)  # empty: scoring needs no key
    transport: str = "asyncio"
    workers: int | None = None  # None: from the cpu (workers.workers_for)
    cpu: float | None = None  # the deployment's cpu cores, when the caller says
    max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS
    max_queue_wait_ms: int = DEFAULT_MAX_QUEUE_WAIT_MS

    @property
    def entry_script_path(self) -> Path | None:
        if self.entry_script is None:
            return None
        return (self.source_dir or Path.cwd()) / self.entry_script


class ServingOption(FlagOption):
    """The module's own serving options (flag, environment variable), not part of the contract."""

    TRANSPORT = ("--transport", "EDGEFLEET_TRANSPORT")
    WORKERS = ("--workers", "EDGEFLEET_WORKERS")
    MAX_CONCURRENT_REQUESTS = ("--max-concurrent-requests", "EDGEFLEET_MAX_CONCURRENT_REQUESTS")
    MAX_QUEUE_WAIT_MS = ("--max-queue-wait-ms", "EDGEFLEET_MAX_QUEUE_WAIT_MS")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m edgefleet.modules.scoring",
        description="Serve a model over HTTP: Azure ML /score and Open Inference Protocol v2. "
        "Every option can also be set by the environment variable named in its help.",
    )

    def add(option: ModuleOption | ServingOption, text: str, **kwargs: Any) -> None:
        p.add_argument(option.flag, help=f"{text} [{option.env}]", **kwargs)

    opt = ModuleOption
    add(opt.MODEL_DIR, f"directory holding the model file(s); {AZUREML_MODEL_DIR} is set to it")
    add(opt.SOURCE_DIR, "directory of the entry script and its helpers")
    add(opt.ENTRY_SCRIPT, f"entry script relative to {opt.SOURCE_DIR.flag}; absent: no-code mode")
    add(opt.MODEL_NAME, "model name in /v2 paths (default: the model file's stem)")
    add(opt.MODEL_VERSION, "model version in /v2 metadata (default 1)")
    add(opt.HOST, "address to listen on (default 127.0.0.1)")
    add(opt.PORT, f"port to listen on; 0 picks a free one (default {DEFAULT_PORT})")
    add(opt.ACCELERATOR, "preference, comma list of fpga,opencl,cpu (default cpu)")
    add(
        opt.ACCELERATOR_REQUIRED,
        "no fall-back to CPU: without a verified accelerator exit 78 (Unschedulable)",
        nargs="?",
        const="true",
    )
    add(opt.STATUS_FILE, "where to write the status JSON for the agent")
    add(opt.MAX_REQUEST_BYTES, "largest accepted request body")
    add(opt.LOG_LEVEL, "DEBUG, INFO, WARNING, ... (default INFO)")
    add(opt.TLS_CERT, f"PEM certificate (chain): serve HTTPS (needs {opt.TLS_KEY.flag})")
    add(opt.TLS_KEY, f"PEM private key of {opt.TLS_CERT.flag}")
    serving = ServingOption
    add(serving.TRANSPORT, "asyncio (event loop, the default) or threading (the former stdlib server)")
    add(serving.WORKERS, "worker processes sharing the port (default: from the cpu, see --cpu)")
    add(opt.CPU, "cpu cores the deployment may use (default: what the process may run on)")
    add(
        serving.MAX_CONCURRENT_REQUESTS,
        f"scoring requests admitted at once, running or queued; more get 503 (Azure ML "
        f"maxConcurrentRequestsPerContainer; default {DEFAULT_MAX_CONCURRENT_REQUESTS})",
    )
    add(
        serving.MAX_QUEUE_WAIT_MS,
        f"longest wait for an inference thread before 503 (Azure ML maxQueueWaitMs; default {DEFAULT_MAX_QUEUE_WAIT_MS})",
    )
    p.epilog = (
        "Scoring keys come from the environment only, never the command line: "
        f"{ModuleSecret.PRIMARY_KEY.env} and {ModuleSecret.SECONDARY_KEY.env}; when either is set, every route but "
        "GET /, /v2/health/live and /v2/health/ready needs Authorization: Bearer <key>."
    )
    return p


def _check_identification_args(unknown: Sequence[str]) -> None:
    for token in unknown:
        if token.startswith("-") and not token.startswith(MARK_PREFIX):
            raise ConfigError(
                f"unknown option {token!r}: run `python -m edgefleet.modules.scoring --help` for the options "
                f"(only {MARK_PREFIX}* identification arguments are ignored)"
            )


def _parse_bool(value: str, source: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigError(f"{source}: expected true/false, got {value!r}")


def _parse_int(value: str, source: str, low: int, high: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"{source}: expected an integer, got {value!r}") from None
    if not low <= n <= high:
        raise ConfigError(f"{source}: {n} is outside {low}..{high}")
    return n


def _parse_cpu(value: str, source: str) -> float:
    try:
        cpu = float(value)
    except ValueError:
        raise ConfigError(f"{source}: expected a number of cores, got {value!r}") from None
    if not (math.isfinite(cpu) and 0 < cpu <= 4096):
        raise ConfigError(f"{source}: {value!r} is not a number of cores in (0, 4096]")
    return cpu


def _parse_choice(value: str, source: str, choices: Sequence[str]) -> str:
    v = value.strip().lower()
    if v not in choices:
        raise ConfigError(f"{source}: {value!r} must be one of {', '.join(choices)}")
    return v


def _parse_prefer(value: str, source: str) -> tuple[str, ...]:
    kinds = tuple(k.strip().lower() for k in value.split(",") if k.strip())
    unknown = [k for k in kinds if k not in ACCELERATOR_KINDS]
    if unknown or not kinds:
        raise ConfigError(f"{source}: {value!r} must be a comma list of {', '.join(ACCELERATOR_KINDS)}")
    if len(set(kinds)) != len(kinds):
        raise ConfigError(f"{source}: {value!r} lists an accelerator twice")
    return kinds


def _parse_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    keys = []
    for secret in ModuleSecret:
        value = env.get(secret.env)
        if value is None or value == "":
            continue
        if not re.match(SCORING_KEY_PATTERN, value):  # never quote the value: it is a secret
            raise ConfigError(f"{secret.env}: not a scoring key (16-256 characters of A-Z a-z 0-9 . _ ~ + / = -)")
        keys.append(value)
    return tuple(keys)


def parse_config(argv: Sequence[str], env: Mapping[str, str]) -> ServerConfig:
    """Pure: command line and environment in, validated configuration out (no file system access)."""
    args, unknown = build_parser().parse_known_args(list(argv))
    _check_identification_args(unknown)
    values: dict[str, tuple[str, str]] = {}  # dest -> (raw value, where it came from)
    for option in (*ModuleOption, *ServingOption):
        cli = getattr(args, option.dest)
        if cli is not None:
            values[option.dest] = (cli, option.flag)
        elif option.env in env:
            values[option.dest] = (env[option.env], option.env)

    def given(option: ModuleOption | ServingOption) -> tuple[str, str] | None:
        return values.get(option.dest)

    def raw(option: ModuleOption | ServingOption) -> str | None:
        found = given(option)
        return found[0] if found else None

    opt = ModuleOption
    model_dir = raw(opt.MODEL_DIR)
    if not model_dir:
        raise ConfigError(f"no model directory: pass {opt.MODEL_DIR.flag} DIR or set {opt.MODEL_DIR.env}")
    source_dir = raw(opt.SOURCE_DIR)
    port, prefer = given(opt.PORT), given(opt.ACCELERATOR)
    required, max_bytes = given(opt.ACCELERATOR_REQUIRED), given(opt.MAX_REQUEST_BYTES)
    status_file = raw(opt.STATUS_FILE)
    entry = given(opt.ENTRY_SCRIPT)
    entry_script = entry[0] if entry and entry[0] else None
    if entry and entry_script:
        try:
            check_relative_path(entry_script, "the entry script")
        except ValueError as exc:
            raise ConfigError(f"{entry[1]}: {exc} (it is relative to {opt.SOURCE_DIR.flag})") from None
    tls_cert, tls_key = raw(opt.TLS_CERT) or None, raw(opt.TLS_KEY) or None
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError(f"HTTPS needs both {opt.TLS_CERT.flag} and {opt.TLS_KEY.flag} (or neither, for HTTP)")
    return ServerConfig(
        # absolute: the server changes its working directory to an entry script's source directory
        model_dir=Path(model_dir).absolute(),
        source_dir=Path(source_dir).absolute() if source_dir else None,
        entry_script=entry_script,
        model_name=raw(opt.MODEL_NAME) or None,
        model_version=raw(opt.MODEL_VERSION) or "1",
        host=raw(opt.HOST) or "127.0.0.1",
        port=_parse_int(*port, 0, 65535) if port else DEFAULT_PORT,
        accelerator_prefer=_parse_prefer(*prefer) if prefer and prefer[0] else ("cpu",),
        accelerator_required=_parse_bool(*required) if required else False,
        status_file=Path(status_file).absolute() if status_file else None,
        max_request_bytes=_parse_int(*max_bytes, 1024, 2**40) if max_bytes else DEFAULT_MAX_REQUEST_BYTES,
        log_level=(raw(opt.LOG_LEVEL) or "INFO").upper(),
        tls_cert=Path(tls_cert).absolute() if tls_cert else None,
        tls_key=Path(tls_key).absolute() if tls_key else None,
        auth_keys=_parse_keys(env),
        **_serving(given),
    )


def _serving(given: Any) -> dict[str, Any]:
    """The ServingOption fields that were given (the dataclass has the defaults)."""
    parsers: dict[ModuleOption | ServingOption, Any] = {
        ServingOption.TRANSPORT: lambda v, src: _parse_choice(v, src, TRANSPORTS),
        ServingOption.WORKERS: lambda v, src: _parse_int(v, src, 1, MAX_WORKERS),
        ModuleOption.CPU: _parse_cpu,  # the agent passes the deployment's cpu
        ServingOption.MAX_CONCURRENT_REQUESTS: lambda v, src: _parse_int(v, src, 1, 1_000_000),
        ServingOption.MAX_QUEUE_WAIT_MS: lambda v, src: _parse_int(v, src, 1, 3_600_000),
    }
    fields = {}
    for option, parse in parsers.items():
        found = given(option)
        if found is not None and found[0].strip():  # an empty variable is no setting
            fields[option.dest] = parse(*found)
    return fields
