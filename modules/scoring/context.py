"""What an entry script uses from the server: model loading through backend selection, and BadInput.

In ``score.py``::

    from edgefleet.modules.scoring import BadInput, load_model

    def init():
        global model
        model = load_model()              # the single .onnx under AZUREML_MODEL_DIR, on the chosen backend

    def run(raw_data):
        ...
        raise BadInput("data: expected 64 floats per row")   # answered as 400, not 500

``load_model`` applies the deployment's accelerator preference (the same selection as no-code
mode), so an entry script gets the FPGA/OpenCL backend too. The server reports the first model
loaded this way as its backend and serves it on the v2 endpoints. Outside the server (a unit test
of a score.py) the preference comes from EDGEFLEET_ACCELERATOR_* and the directory from AZUREML_MODEL_DIR.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from edgefleet.accelerators.base import LoadedModel
from edgefleet.accelerators.cpu import CpuBackend
from edgefleet.accelerators.selection import Selection, available_backends, register_backend, select_backend
from edgefleet.modules.scoring.errors import ConfigError

log = logging.getLogger(__name__)


class BadInput(ValueError):
    """Raise from an entry script's run() when the request is wrong; the client gets a 400 with the message."""


@dataclass(frozen=True)
class LoadedRecord:
    path: Path
    selection: Selection


def find_model_file(model_dir: Path, path: str | Path | None = None) -> Path:
    """``path`` relative to the model directory, or the one .onnx file under it when ``path`` is None."""
    if path is not None:
        candidate = Path(path) if Path(path).is_absolute() else model_dir / path
        if not candidate.is_file():
            raise ConfigError(f"model file {candidate} does not exist (model directory {model_dir})")
        return candidate
    if not model_dir.is_dir():
        raise ConfigError(f"model directory {model_dir} does not exist or is not a directory")
    found = sorted(p for p in model_dir.rglob("*.onnx") if p.is_file())
    if not found:
        raise ConfigError(f"no .onnx file under the model directory {model_dir}")
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(model_dir)) for p in found)
        raise ConfigError(
            f"several .onnx files under {model_dir} ({names}): serve one per module, or use an entry "
            "script that calls load_model(path)"
        )
    return found[0]


class ScoringContext:
    """The module's model directory and accelerator preference, and the models loaded so far."""

    def __init__(self, model_dir: Path, prefer: tuple[str, ...] = ("cpu",), required: bool = False) -> None:
        self.model_dir = model_dir
        self.prefer = prefer
        self.required = required
        self.loaded: list[LoadedRecord] = []
        self._lock = threading.Lock()

    def load(self, path: str | Path | None = None) -> Selection:
        """Select a backend for the model and load it; NoVerifiedAccelerator propagates (Unschedulable)."""
        model_path = find_model_file(self.model_dir, path)
        selection = select_backend(model_path, list(self.prefer), self.required)
        log.info("loaded %s on %s: %s", model_path, selection.backend, selection.reason)
        with self._lock:
            self.loaded.append(LoadedRecord(model_path, selection))
        return selection

    @property
    def primary(self) -> LoadedRecord | None:
        return self.loaded[0] if self.loaded else None

    def close(self) -> None:
        with self._lock:
            for record in self.loaded:
                record.selection.loaded.close()
            self.loaded.clear()


def set_cpu_threads(threads: int) -> None:
    """onnxruntime's intra-op threads for the models this process loads from now on.

    The server gives each worker its share of the cores: onnxruntime's default is a thread per
    core, whose idle threads spin, so N workers (or the event loop beside one) would fight over
    them; for the digits model one thread per worker doubles the requests per second at 32
    connections (bench/README.md, "Scoring HTTP").
    """
    available_backends()  # the default kinds first: the registry fills itself only while empty
    register_backend("cpu", lambda: CpuBackend(threads))


_active: ScoringContext | None = None


def activate(context: ScoringContext) -> None:
    """Called by the server before the entry script's init()."""
    global _active
    _active = context


def current() -> ScoringContext:
    global _active
    if _active is None:
        model_dir = os.environ.get("AZUREML_MODEL_DIR") or os.environ.get("EDGEFLEET_MODEL_DIR")
        if not model_dir:
            raise ConfigError("load_model() outside the scoring server needs AZUREML_MODEL_DIR set")
        prefer = os.environ.get("EDGEFLEET_ACCELERATOR_PREFER", "cpu")
        required = os.environ.get("EDGEFLEET_ACCELERATOR_REQUIRED", "").strip().lower() in {"1", "true", "yes", "on"}
        _active = ScoringContext(
            Path(model_dir), tuple(k.strip() for k in prefer.split(",") if k.strip()) or ("cpu",), required
        )
    return _active


def load_model(path: str | Path | None = None) -> LoadedModel:
    """Load a model for an entry script: ``path`` relative to AZUREML_MODEL_DIR, or its single .onnx file.

    Returns the backend's LoadedModel: ``.run({input name: array}) -> {output name: array}``,
    ``.inputs`` / ``.outputs`` (TensorInfo: name, dtype, shape).
    """
    return current().load(path).loaded
