"""Server configuration from the command line, with every option also settable by environment.

Environment alone must be enough (a Docker container is configured that way); a command-line
option wins over its environment variable. The agent appends ``--edgefleet-*`` identification
arguments it owns (it finds its processes in /proc by them); they are accepted and ignored.

A dataclass and argparse rather than pydantic-settings: the server must be Ready fast (the agent's
goal is manifest -> Healthy in under 1.5 s), and this parses in microseconds with no import cost.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgefleet.modules.scoring.errors import ConfigError

ACCELERATOR_KINDS = ("fpga", "opencl", "cpu")
DEFAULT_PORT = 5001  # the Azure ML inference server's default
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
IDENTIFICATION_PREFIX = "--edgefleet-"
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

    @property
    def entry_script_path(self) -> Path | None:
        if self.entry_script is None:
            return None
        return (self.source_dir or Path.cwd()) / self.entry_script


# option -> environment variable; the option's dest is derived by argparse
_ENV = {
    "--model-dir": "EDGEFLEET_MODEL_DIR",
    "--source-dir": "EDGEFLEET_SOURCE_DIR",
    "--entry-script": "EDGEFLEET_ENTRY_SCRIPT",
    "--name": "EDGEFLEET_MODEL_NAME",
    "--version": "EDGEFLEET_MODEL_VERSION",
    "--host": "EDGEFLEET_HOST",
    "--port": "EDGEFLEET_PORT",
    "--accelerator": "EDGEFLEET_ACCELERATOR_PREFER",
    "--accelerator-required": "EDGEFLEET_ACCELERATOR_REQUIRED",
    "--status-file": "EDGEFLEET_STATUS_FILE",
    "--max-request-bytes": "EDGEFLEET_MAX_REQUEST_BYTES",
    "--log-level": "EDGEFLEET_LOG_LEVEL",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m edgefleet.modules.scoring",
        description="Serve a model over HTTP: Azure ML /score and Open Inference Protocol v2. "
        "Every option can also be set by the environment variable named in its help.",
    )
    add = p.add_argument
    add("--model-dir", help="directory holding the model file(s); AZUREML_MODEL_DIR is set to it [EDGEFLEET_MODEL_DIR]")
    add("--source-dir", help="directory of the entry script and its helpers [EDGEFLEET_SOURCE_DIR]")
    add("--entry-script", help="entry script relative to --source-dir; absent: no-code mode [EDGEFLEET_ENTRY_SCRIPT]")
    add("--name", help="model name in /v2 paths (default: the model file's stem) [EDGEFLEET_MODEL_NAME]")
    add("--version", help="model version in /v2 metadata (default 1) [EDGEFLEET_MODEL_VERSION]")
    add("--host", help="address to listen on (default 127.0.0.1) [EDGEFLEET_HOST]")
    add("--port", help=f"port to listen on; 0 picks a free one (default {DEFAULT_PORT}) [EDGEFLEET_PORT]")
    add("--accelerator", help="preference, comma list of fpga,opencl,cpu (default cpu) [EDGEFLEET_ACCELERATOR_PREFER]")
    add(
        "--accelerator-required",
        nargs="?",
        const="true",
        help="no fall-back to CPU: without a verified accelerator exit 78 (Unschedulable) "
        "[EDGEFLEET_ACCELERATOR_REQUIRED]",
    )
    add("--status-file", help="where to write the status JSON for the agent [EDGEFLEET_STATUS_FILE]")
    add("--max-request-bytes", help="largest accepted request body [EDGEFLEET_MAX_REQUEST_BYTES]")
    add("--log-level", help="DEBUG, INFO, WARNING, ... (default INFO) [EDGEFLEET_LOG_LEVEL]")
    return p


def _check_identification_args(unknown: Sequence[str]) -> None:
    for token in unknown:
        if token.startswith("-") and not token.startswith(IDENTIFICATION_PREFIX):
            raise ConfigError(
                f"unknown option {token!r}: run `python -m edgefleet.modules.scoring --help` for the options "
                f"(only {IDENTIFICATION_PREFIX}* identification arguments are ignored)"
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


def _parse_prefer(value: str, source: str) -> tuple[str, ...]:
    kinds = tuple(k.strip().lower() for k in value.split(",") if k.strip())
    unknown = [k for k in kinds if k not in ACCELERATOR_KINDS]
    if unknown or not kinds:
        raise ConfigError(f"{source}: {value!r} must be a comma list of {', '.join(ACCELERATOR_KINDS)}")
    if len(set(kinds)) != len(kinds):
        raise ConfigError(f"{source}: {value!r} lists an accelerator twice")
    return kinds


def parse_config(argv: Sequence[str], env: Mapping[str, str]) -> ServerConfig:
    """Pure: command line and environment in, validated configuration out (no file system access)."""
    args, unknown = build_parser().parse_known_args(list(argv))
    _check_identification_args(unknown)
    values: dict[str, tuple[str, str]] = {}  # dest -> (raw value, where it came from)
    for option, var in _ENV.items():
        dest = option[2:].replace("-", "_")
        cli = getattr(args, dest)
        if cli is not None:
            values[dest] = (cli, option)
        elif var in env:
            values[dest] = (env[var], var)

    def raw(dest: str) -> str | None:
        return values[dest][0] if dest in values else None

    model_dir = raw("model_dir")
    if not model_dir:
        raise ConfigError("no model directory: pass --model-dir DIR or set EDGEFLEET_MODEL_DIR")
    source_dir = raw("source_dir")
    entry = raw("entry_script") or None
    port = _parse_int(*values["port"], 0, 65535) if "port" in values else DEFAULT_PORT
    prefer = _parse_prefer(*values["accelerator"]) if raw("accelerator") else ("cpu",)
    required = _parse_bool(*values["accelerator_required"]) if "accelerator_required" in values else False
    max_bytes = (
        _parse_int(*values["max_request_bytes"], 1024, 2**40)
        if "max_request_bytes" in values
        else DEFAULT_MAX_REQUEST_BYTES
    )
    status_file = raw("status_file")
    return ServerConfig(
        model_dir=Path(model_dir),
        source_dir=Path(source_dir) if source_dir else None,
        entry_script=entry,
        model_name=raw("name") or None,
        model_version=raw("version") or "1",
        host=raw("host") or "127.0.0.1",
        port=port,
        accelerator_prefer=prefer,
        accelerator_required=required,
        status_file=Path(status_file) if status_file else None,
        max_request_bytes=max_bytes,
        log_level=(raw("log_level") or "INFO").upper(),
    )
