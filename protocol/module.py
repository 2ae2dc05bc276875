"""The agent <-> module contract: how the agent starts a module and how the module answers.

The agent never imports a module's code and a module never imports the agent, so the seam
between them is written here, once, and both sides (and test stand-ins) use these names:

- settings: ``ModuleOption``, each one a command-line flag (the process runtime passes flags) and
  an environment variable (the Docker runtime configures a container by environment alone); a
  flag wins over its variable. Lists are comma-separated (``fpga,opencl,cpu``), booleans
  ``true``/``false``; ``--accelerator-required`` may also stand alone;
- identification marks: ``--edgefleet-device/-module/-spec VALUE`` on a process's command line
  let a restarted agent find and adopt its running modules; a module accepts and ignores every
  ``--edgefleet-*`` argument (``MARK_PREFIX``), so the agent may add more;
- the status file: ``ModuleStatusFile``, written atomically by the module as Starting once its port
  is bound and again with the outcome (Ready before it answers ready), read by the agent on every
  observation; its JSON is camelCase like the other wire models;
- exit codes: 0 after a graceful stop, 1 Failed, 78 Unschedulable (``EXIT_*``; the agent never
  restarts a module that exited 78);
- secrets: ``ModuleSecret``, environment variables only (a command line is visible to every user
  in /proc and ``ps``), never logged: the scoring keys a request must carry when ``authEnabled``;
- ``OPEN_ROUTES``: what the module answers without a key (the agent's health probes);
- ``max_request_bytes_for``: the request-size limit the agent derives from the memory limit;
- ``AZUREML_MODEL_DIR``: where entry scripts find their model (the Azure ML name), set by the
  agent and by the module itself.
"""

from __future__ import annotations

import ipaddress
import math
from enum import Enum
from pathlib import Path

from pydantic import Field, ValidationError

from edgefleet.protocol.files import write_atomic
from edgefleet.protocol.models import TolerantWireModel

STATUS_FILE_NAME = "status.json"  # in the instance's directory (process) or its run/ mount (Docker)
LOG_FILE_NAME = "module.log"  # the process runtime's capture of the module's stdout and stderr

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNSCHEDULABLE = 78  # EX_CONFIG from sysexits.h: this device cannot satisfy the deployment

MARK_PREFIX = "--edgefleet-"
MARK_DEVICE = "--edgefleet-device"
MARK_MODULE = "--edgefleet-module"
MARK_SPEC = "--edgefleet-spec"

AZUREML_MODEL_DIR = "AZUREML_MODEL_DIR"

# GET routes answered without a key when scoring keys are set: the agent probes them (and
# deploymentconfig's healthProbe.path must be one of them); everything else needs a key.
OPEN_ROUTES = frozenset({"/", "/v2/health/live", "/v2/health/ready"})

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024  # the module's limit without a memory limit, and the cap
MIN_MAX_REQUEST_BYTES = 64 * 1024
REQUEST_MEMORY_FRACTION = 16  # a body may take 1/16 of the memory limit


def max_request_bytes_for(memory_gb: float | None) -> int:
    """The largest request body a module with ``memoryInGB`` accepts: 1/16 of its memory limit,
    capped by the default (64 MiB) and at least 64 KiB.

    Why a sixteenth: the server holds the raw body, its decoded form and the parsed tensors at once,
    and JSON numbers parse into Python objects several times their text size, so one request of
    ``limit`` bytes may cost several ``limit``s of memory; a sixteenth leaves the model and a few
    concurrent requests room under the limit instead of an out-of-memory kill.
    """
    if memory_gb is None:
        return DEFAULT_MAX_REQUEST_BYTES
    share = math.floor(memory_gb * 1024**3 / REQUEST_MEMORY_FRACTION)
    return max(MIN_MAX_REQUEST_BYTES, min(DEFAULT_MAX_REQUEST_BYTES, share))


def probe_address(listen_address: str) -> str:
    """Where the agent reaches a module listening on ``listen_address``: loopback for a wildcard
    (``0.0.0.0`` / ``::``), else the address itself."""
    address = ipaddress.ip_address(listen_address)
    if address.is_unspecified:
        return "::1" if address.version == 6 else "127.0.0.1"
    return listen_address


def url_host(address: str) -> str:
    """``address`` as the host part of a URL (IPv6 literals in brackets)."""
    return f"[{address}]" if ":" in address else address


class FlagOption(Enum):
    """A setting given as a command-line flag or an environment variable: members are (flag, env)."""

    @property
    def flag(self) -> str:
        flag: str = self.value[0]
        return flag

    @property
    def env(self) -> str:
        env: str = self.value[1]
        return env

    @property
    def dest(self) -> str:
        """The attribute argparse derives from the flag (``--model-dir`` -> ``model_dir``)."""
        return self.flag[2:].replace("-", "_")


class ModuleOption(FlagOption):
    """One module setting of the agent<->module contract: its command-line flag and its environment variable."""

    MODEL_DIR = ("--model-dir", "EDGEFLEET_MODEL_DIR")
    SOURCE_DIR = ("--source-dir", "EDGEFLEET_SOURCE_DIR")
    ENTRY_SCRIPT = ("--entry-script", "EDGEFLEET_ENTRY_SCRIPT")  # absent: no-code mode
    MODEL_NAME = ("--name", "EDGEFLEET_MODEL_NAME")
    MODEL_VERSION = ("--version", "EDGEFLEET_MODEL_VERSION")
    HOST = ("--host", "EDGEFLEET_HOST")
    PORT = ("--port", "EDGEFLEET_PORT")
    ACCELERATOR = ("--accelerator", "EDGEFLEET_ACCELERATOR_PREFER")
    ACCELERATOR_REQUIRED = ("--accelerator-required", "EDGEFLEET_ACCELERATOR_REQUIRED")
    STATUS_FILE = ("--status-file", "EDGEFLEET_STATUS_FILE")
    MAX_REQUEST_BYTES = ("--max-request-bytes", "EDGEFLEET_MAX_REQUEST_BYTES")
    LOG_LEVEL = ("--log-level", "EDGEFLEET_LOG_LEVEL")
    TLS_CERT = ("--tls-cert", "EDGEFLEET_TLS_CERT")  # PEM certificate (chain); with TLS_KEY: serve HTTPS
    TLS_KEY = ("--tls-key", "EDGEFLEET_TLS_KEY")  # PEM private key of TLS_CERT
    # the deployment's cpu cores (resources.cpu): the module sizes its worker processes by it
    # instead of by what it may run on (affinity is whole cores, so 1.5 cores would look like 2)
    CPU = ("--cpu", "EDGEFLEET_CPU")


class ModuleSecret(str, Enum):
    """A secret the module reads from its environment only: there is no flag, so it never shows on
    a command line (``ps``, /proc/PID/cmdline); the module takes it out of its environment at start
    so an entry script's subprocesses do not inherit it."""

    PRIMARY_KEY = "EDGEFLEET_PRIMARY_KEY"  # scoring keys: Authorization: Bearer <either one>
    SECONDARY_KEY = "EDGEFLEET_SECONDARY_KEY"

    @property
    def env(self) -> str:
        return str(self.value)


class ModuleRunState(str, Enum):
    """The module's own view of its run, as its status file says (the agent turns it, with exit
    codes and health probes, into the Azure ML ``ModuleState`` it reports)."""

    STARTING = "Starting"
    READY = "Ready"
    UNSCHEDULABLE = "Unschedulable"
    FAILED = "Failed"

    @property
    def exit_code(self) -> int:
        """The exit code that goes with ending in this state."""
        return {ModuleRunState.FAILED: EXIT_FAILED, ModuleRunState.UNSCHEDULABLE: EXIT_UNSCHEDULABLE}.get(self, EXIT_OK)


class ModuleStatusFile(TolerantWireModel):
    """The status file (and ``GET /edgefleet/status``): what the module says of itself.

    Tolerant of fields a newer module adds; every field has a default so the agent's planner and
    tests can state just what they need.
    """

    state: ModuleRunState = ModuleRunState.STARTING
    message: str = ""
    backend: str | None = Field(default=None, description="the inference backend chosen: fpga, opencl or cpu")
    backend_reason: str | None = Field(default=None, description="why that backend (or why none)")
    backend_timings_ms: dict[str, float] = Field(default_factory=dict, description="per-backend check time")
    pid: int | None = None
    port: int | None = Field(default=None, description="the port bound (0 on the command line picks one)")


def write_status_file(path: Path, status: ModuleStatusFile) -> None:
    """Atomic (``write_atomic``): the agent reads the old status or the new, never half of one."""
    write_atomic(path, status.model_dump_json(by_alias=True, indent=2).encode())


def read_status_file(path: Path) -> ModuleStatusFile | None:
    """The status file, or None while there is none yet or it is not a valid status (half written
    by a module that does not write atomically, an unknown state): the agent reads again on its
    next observation, so this never raises."""
    try:
        return ModuleStatusFile.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        return None
