"""The runtime interface the reconcile loop drives, and helpers every runtime shares.

A runtime owns instances of modules. Instances carry the device id, module name and spec hash
as labels (process: command-line marks; container: labels), so ``list_instances()`` finds them again after
the agent restarts and the agent adopts them instead of starting duplicates.

Instance lifecycle: create (prepared, not running) -> start -> (exits | stop) -> start ... -> remove.

What a module is told and what it answers (flags, environment, status file, exit codes) is the
contract in ``edgefleet.protocol.module``; every runtime reads module status through it. Secrets
(the scoring keys) go by environment in every runtime (``module_environment_secrets``), never on a
command line, and a secret the agent itself was started with never reaches a module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

from edgefleet.agent.observed import Instance
from edgefleet.protocol.models import ModuleSpec
from edgefleet.protocol.module import ModuleSecret, read_status_file  # read_status_file: re-exported

__all__ = [
    "TLS_CERT_FILE",
    "TLS_DIR",
    "TLS_KEY_FILE",
    "Runtime",
    "instance_id_for",
    "module_environment_secrets",
    "read_status_file",
    "tail_lines",
]

TLS_DIR = "tls"  # in the instance directory: the certificate and key the agent copied for the module
TLS_CERT_FILE = "cert.pem"
TLS_KEY_FILE = "key.pem"


def module_environment_secrets(env: Mapping[str, str], spec: ModuleSpec) -> dict[str, str]:
    """``env`` without any ``ModuleSecret`` name, plus the secrets of ``spec`` (its scoring keys).

    Stripping first: neither the agent's own environment nor a deployment's environment variables
    may hand a module a key the hub did not issue for it.
    """
    names = {s.env for s in ModuleSecret}
    out = {k: v for k, v in env.items() if k not in names}
    if spec.auth is not None:
        primary, secondary = spec.auth.keys()
        out[ModuleSecret.PRIMARY_KEY.env] = primary
        out[ModuleSecret.SECONDARY_KEY.env] = secondary
    return out


def instance_id_for(module: str, spec_hash: str) -> str:
    return f"{module}@{spec_hash}"


class Runtime(ABC):
    kind: str

    @abstractmethod
    def list_instances(self) -> list[Instance]:
        """Every instance of this device's modules, running or exited, including adopted ones."""

    @abstractmethod
    def create(self, spec: ModuleSpec, spec_hash: str, port: int, workdir: Path) -> str:
        """Prepare an instance from the populated ``workdir`` (model/, src/); return its id."""

    @abstractmethod
    def start(self, instance_id: str) -> None:
        """Start (or start again) a created instance."""

    @abstractmethod
    def stop(self, instance_id: str, grace_s: float) -> None:
        """Ask the instance to stop; kill it after ``grace_s``. Stopping a stopped instance is fine."""

    @abstractmethod
    def remove(self, instance_id: str) -> None:
        """Forget a stopped instance and delete what ``create`` made."""

    @abstractmethod
    def logs(self, module: str, tail: int) -> list[str]:
        """The last ``tail`` lines of output of the module's current instance."""

    def available_kinds(self) -> list[str]:
        """The ``spec.runtime`` values this runtime can run now (a composite lists several)."""
        return [self.kind]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and watcher threads; running modules keep running."""

    def stop_all(self, grace_s: float) -> None:
        for inst in self.list_instances():
            if inst.running:
                self.stop(inst.instance_id, grace_s)

    def set_exit_listener(self, listener: Callable[[str], None]) -> None:  # noqa: B027 - optional hook
        """Called with the instance id when an instance exits (wakes the reconcile loop)."""


def tail_lines(path: Path, count: int) -> list[str]:
    try:
        with open(path, errors="replace") as f:
            return [line.rstrip("\n") for line in deque(f, maxlen=max(count, 0))]
    except FileNotFoundError:
        return []
