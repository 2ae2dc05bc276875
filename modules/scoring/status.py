"""The status the server reports to the agent: a JSON file (and the same JSON at GET /edgefleet/status).

Contract with the agent (it reads the file; it never imports this package)::

    {"state": "Starting" | "Ready" | "Unschedulable" | "Failed",
     "message": str, "backend": str | null, "backendReason": str | null,
     "backendTimingsMs": {kind: ms}, "pid": int, "port": int}

Written "Starting" once the port is bound and again when initialisation ends; the process exit code
agrees with the final state: 0 after a graceful stop, 78 Unschedulable, 1 Failed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from edgefleet.protocol.files import write_atomic


class ServerState(str, Enum):
    STARTING = "Starting"
    READY = "Ready"
    UNSCHEDULABLE = "Unschedulable"
    FAILED = "Failed"


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNSCHEDULABLE = 78  # EX_CONFIG from sysexits.h: the device cannot satisfy the deployment


@dataclass(frozen=True)
class ServerStatus:
    state: ServerState
    message: str
    pid: int
    port: int
    backend: str | None = None
    backend_reason: str | None = None
    backend_timings_ms: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "message": self.message,
            "backend": self.backend,
            "backendReason": self.backend_reason,
            "backendTimingsMs": dict(self.backend_timings_ms),
            "pid": self.pid,
            "port": self.port,
        }


def write_status_file(path: Path, status: ServerStatus) -> None:
    """Atomic (edgefleet.protocol.files.write_atomic): the agent never reads half a status file."""
    write_atomic(path, json.dumps(status.to_json(), indent=2).encode())
