"""The agent's memory on disk, written atomically so a crash at any point leaves the old or the new file.

What survives an agent restart: the last accepted generation and its signed manifest (so the
device keeps converging without the broker), the last-known-good generation and manifest (for
rollback), module ports (endpoints stay stable), restart counters (back-off is not reset by
restarting the agent), when the current generation began replacing modules (its health window
survives an agent restart), and a rollback (so a restarted agent neither retries the failed
generation nor forgets to say it rolled back), and the sequence number of the last direct-method
call run (so a restart does not reopen a captured call to replay).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgefleet.agent.errors import StateError
from edgefleet.protocol.files import write_atomic

log = logging.getLogger(__name__)

STATE_VERSION = 1


class RestartRecord(BaseModel):
    """Restarts of one module's current spec. Times are wall-clock seconds (they survive reboots)."""

    model_config = ConfigDict(frozen=True)

    count: int = 0
    last_restart_at: float | None = None
    healthy_since: float | None = None


class RollbackRecord(BaseModel):
    """The agent rolled back from ``from_generation`` to last-known-good ``to_generation``."""

    model_config = ConfigDict(frozen=True)

    from_generation: int
    to_generation: int
    reason: str
    module_reasons: dict[str, str] = Field(default_factory=dict)
    at: float


class AgentState(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: int = STATE_VERSION
    generation: int = 0
    signed_manifest: dict[str, Any] | None = Field(default=None, description="as received, re-verifiable")
    last_known_good: int | None = None
    last_known_good_manifest: dict[str, Any] | None = None
    ports: dict[str, int] = Field(default_factory=dict)
    restarts: dict[str, RestartRecord] = Field(default_factory=dict)
    applying_since: float | None = Field(default=None, description="generation's artifacts verified, replacing")
    rollback: RollbackRecord | None = None
    method_sequence: int = Field(default=0, description="sequence of the last direct-method call run (replays refused)")


class StateStore:
    """Loads and saves ``AgentState`` at one path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> AgentState:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return AgentState()
        except OSError as exc:
            raise StateError(f"cannot read agent state {self.path}: {exc}") from exc
        try:
            return AgentState.model_validate_json(raw)
        except ValidationError as exc:
            # Only reachable through outside damage (writes are atomic). Keep the evidence.
            broken = self.path.with_suffix(".broken")
            os.replace(self.path, broken)
            log.error("agent state %s is unreadable (%s); moved to %s and starting fresh", self.path, exc, broken)
            return AgentState()

    def save(self, state: AgentState) -> None:
        try:
            # holds signed manifests, and so the scoring keys of modules: the agent's user only
            write_atomic(self.path, json.dumps(state.model_dump(mode="json"), indent=1).encode(), mode=0o600)
        except OSError as exc:
            raise StateError(f"cannot write agent state {self.path}: {exc} (disk full or read-only?)") from exc


class SavedState:
    """The agent's current state, kept in step with its file: every change is saved as it is made."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.current = store.load()

    def replace(self, state: AgentState) -> None:
        self.current = state
        self.store.save(state)

    def keep(self, state: AgentState) -> None:
        """``replace`` when ``state`` differs from the current one (a pure transition's result)."""
        if state != self.current:
            self.replace(state)

    def update(self, **changes: Any) -> None:
        self.replace(self.current.model_copy(update=changes))
