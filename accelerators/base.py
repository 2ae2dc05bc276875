"""The one small interface every inference backend implements.

    Backend.probe()          -> the devices this backend can use here, as protocol.AcceleratorInfo
                                (the same record the agent reports to the hub; empty: unavailable)
    Backend.supports(model)  -> Support(ok, reason): can it run this ONNX graph at all?
    Backend.load(path)       -> LoadedModel, ready to run
    LoadedModel.run(feeds)   -> outputs by name (numpy arrays)
    LoadedModel.close()

onnxruntime on the CPU is the reference and is always available; selection (``selection.py``)
verifies every other backend against it before trusting it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnx

from edgefleet.protocol.models import AcceleratorInfo


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # numpy dtype name, e.g. "float32", "uint8"
    shape: tuple[int | None, ...]  # None for a symbolic dimension (usually the batch)


@dataclass(frozen=True)
class Support:
    ok: bool
    reason: str = ""


class LoadedModel(ABC):
    """A model loaded on one backend. ``run`` must be safe to call from several threads."""

    backend: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]

    @abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def device_time_ms(self) -> float | None:
        """Execution time of the last ``run`` as the device itself reports it (kernel plus transfers).

        None means the device reports nothing and selection measures wall-clock time instead. A
        simulator reports its *modelled* time here, because the host time of a functional
        simulation says nothing about the hardware it stands in for.
        """
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release device resources."""


class Backend(ABC):
    kind: ClassVar[str]

    @abstractmethod
    def probe(self) -> list[AcceleratorInfo]: ...

    @abstractmethod
    def supports(self, model: onnx.ModelProto) -> Support: ...

    @abstractmethod
    def load(self, model_path: Path) -> LoadedModel: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release backend-wide resources (contexts, programs)."""
