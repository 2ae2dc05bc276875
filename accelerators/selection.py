"""Choose the backend a model runs on.

The preference list comes from the deployment config (e.g. ["fpga", "opencl", "cpu"]).
onnxruntime CPU is always the reference and, unless ``required`` is set, the guaranteed last
resort. Each candidate must pass a numeric check (a golden input through it and through
onnxruntime) before it is trusted; among verified candidates the fastest measured one wins.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from accelerators.base import Backend, LoadedModel
from accelerators.cpu import CpuBackend
from accelerators.errors import NoVerifiedAccelerator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CandidateReport:
    kind: str
    verified: bool
    latency_ms: float | None = None
    reason: str = ""


@dataclass
class Selection:
    loaded: LoadedModel
    backend: str  # the kind chosen: "fpga" | "opencl" | "cpu"
    reason: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    candidates: list[CandidateReport] = field(default_factory=list)


def available_backends() -> dict[str, Backend]:
    """Backends by kind. Accelerator backends register here as they are built."""
    return {"cpu": CpuBackend()}


def select_backend(model_path: Path, prefer: list[str], required: bool = False, batch_size: int = 1) -> Selection:
    backends = available_backends()
    candidates: list[CandidateReport] = []
    for kind in prefer:
        if kind == "cpu":
            continue
        if kind not in backends:
            candidates.append(CandidateReport(kind, False, reason=f"no {kind} backend on this device"))
    accelerators_wanted = [k for k in prefer if k != "cpu"]
    if required and accelerators_wanted:
        reasons = "; ".join(f"{c.kind}: {c.reason}" for c in candidates)
        raise NoVerifiedAccelerator(
            f"accelerator required ({', '.join(accelerators_wanted)}) but none verified: {reasons}"
        )
    loaded = backends["cpu"].load(model_path)
    why = "cpu (onnxruntime) is the reference"
    if accelerators_wanted:
        why = "fell back to cpu: " + "; ".join(f"{c.kind}: {c.reason}" for c in candidates)
    return Selection(loaded=loaded, backend="cpu", reason=why, candidates=candidates)
