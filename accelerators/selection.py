"""Choose the backend a model runs on.

The preference list comes from the deployment config (e.g. ["fpga", "opencl", "cpu"]).
onnxruntime CPU is always the reference and, unless ``required`` is set, the guaranteed last
resort. Each candidate must pass a numeric check (a golden input through it and through
onnxruntime) before it is trusted; among verified candidates within the preference the fastest
measured one wins (median of a few runs at the deployment's batch size).

Steps with side effects (probe, load, run, time) live in ``select_backend``; the decisions
(``compare_outputs``, ``choose``) are pure functions over plain data so they are tested directly.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from edgefleet.accelerators.base import Backend, LoadedModel, TensorInfo
from edgefleet.accelerators.cpu import CpuBackend
from edgefleet.accelerators.errors import NoVerifiedAccelerator, NumericMismatch

log = logging.getLogger(__name__)

TIMED_RUNS = 5
# int8 tolerance: an accelerator may differ from onnxruntime by rounding (1 LSB of the output
# quantization), never by more than a few percent of the output's range, and never in the argmax.
ELEMENT_TOLERANCE = 0.02  # of the reference output's range, for float outputs
LSB_TOLERANCE = 1  # for integer outputs
MIN_MATCHING_FRACTION = 0.99


@dataclass(frozen=True)
class CandidateReport:
    kind: str
    verified: bool
    latency_ms: float | None = None
    reason: str = ""
    device_timed: bool = False  # latency as the device reports it (e.g. modelled by a simulator), not wall-clock

    def latency_text(self) -> str:
        return f"{self.latency_ms:.3g} ms" + (" (device-reported)" if self.device_timed else "")


@dataclass
class Selection:
    loaded: LoadedModel
    backend: str  # the kind chosen: "fpga" | "opencl" | "cpu"
    reason: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    candidates: list[CandidateReport] = field(default_factory=list)


# -- registry -------------------------------------------------------------------------------------------

_FACTORIES: dict[str, Callable[[], Backend]] = {}
_INSTANCES: dict[str, Backend] = {}
_REGISTRY_LOCK = threading.Lock()


def register_backend(kind: str, factory: Callable[[], Backend]) -> None:
    """Make a backend kind available to selection (instances are created once, lazily)."""
    with _REGISTRY_LOCK:
        _FACTORIES[kind] = factory
        _INSTANCES.pop(kind, None)


def _opencl_factory() -> Backend:
    from edgefleet.accelerators.opencl import OpenCLBackend

    return OpenCLBackend()


def _fpga_factory() -> Callable[[], Backend] | None:
    """The FPGA backend class from edgefleet.accelerators.fpga, when that module exists."""
    if importlib.util.find_spec("edgefleet.accelerators.fpga") is None:
        return None
    module = importlib.import_module("edgefleet.accelerators.fpga")
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if issubclass(obj, Backend) and not inspect.isabstract(obj) and getattr(obj, "kind", None) == "fpga":
            return obj
    log.warning("edgefleet.accelerators.fpga defines no concrete Backend with kind 'fpga'; FPGA selection disabled")
    return None


def available_backends() -> dict[str, Backend]:
    """Backends by kind, created once per process. A backend whose probe finds no device is still
    listed: selection then reports "no device" as that candidate's reason."""
    with _REGISTRY_LOCK:
        if not _FACTORIES:
            _FACTORIES["cpu"] = CpuBackend
            _FACTORIES["opencl"] = _opencl_factory
            try:
                fpga = _fpga_factory()
            except Exception as exc:  # a broken FPGA module must not take CPU inference down with it
                log.warning("FPGA backend unavailable: importing edgefleet.accelerators.fpga failed: %s", exc)
                fpga = None
            if fpga is not None:
                _FACTORIES["fpga"] = fpga
        for kind, factory in _FACTORIES.items():
            if kind not in _INSTANCES:
                try:
                    _INSTANCES[kind] = factory()
                except Exception as exc:
                    log.warning("backend %s could not be created: %s", kind, exc)
        return dict(_INSTANCES)


# -- pure decisions -------------------------------------------------------------------------------------


def golden_input(inputs: list[TensorInfo], batch_size: int, seed: int = 20240) -> dict[str, np.ndarray]:
    """A deterministic random input of the model's shapes/dtypes; the first symbolic dim is the batch."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for info in inputs:
        shape, batch_used = [], False
        for dim in info.shape:
            if dim is None:
                shape.append(1 if batch_used else batch_size)
                batch_used = True
            else:
                shape.append(dim)
        dtype = np.dtype(info.dtype)
        if dtype.kind == "f":
            feeds[info.name] = rng.random(shape, dtype=np.float32).astype(dtype)
        elif dtype.kind in "iu":
            lo, hi = (0, 256) if dtype == np.uint8 else (-128, 128)
            feeds[info.name] = rng.integers(lo, hi, shape).astype(dtype)
        else:
            feeds[info.name] = rng.random(shape) > 0.5
    return feeds


def compare_outputs(candidate: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> str | None:
    """None when the candidate matches the reference within int8 tolerance, else what differs."""
    for name, ref in reference.items():
        if name not in candidate:
            return f"output {name!r} missing"
        got = np.asarray(candidate[name])
        if got.shape != ref.shape:
            return f"output {name!r} has shape {got.shape}, onnxruntime {ref.shape}"
        diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        if ref.dtype.kind == "f":
            span = float(ref.max() - ref.min()) if ref.size else 0.0
            tol = ELEMENT_TOLERANCE * span + 1e-6
        else:
            tol = LSB_TOLERANCE
        if not np.all(np.isfinite(got)):
            return f"output {name!r} has non-finite values"
        matching = float(np.mean(diff <= tol)) if diff.size else 1.0
        if matching < MIN_MATCHING_FRACTION:
            return f"output {name!r}: only {matching:.1%} of elements within {tol:.3g} (max diff {diff.max():.3g})"
        if ref.ndim >= 2 and ref.shape[-1] > 1 and not np.array_equal(got.argmax(-1), ref.argmax(-1)):
            return f"output {name!r}: argmax differs from onnxruntime"
    return None


def choose(
    reports: list[CandidateReport], prefer: list[str], required: bool, batch_size: int
) -> tuple[str | None, str]:
    """(kind, reason) for the fastest verified candidate within the preference.

    CPU counts as a candidate when it is in ``prefer``; it is the fall-back when nothing else
    verified, unless ``required`` (then kind is None and the reason lists every candidate's).
    """
    allowed = [k for k in prefer if not (required and k == "cpu")]
    verified = [r for r in reports if r.verified and r.kind in allowed and r.latency_ms is not None]
    if verified:
        best = min(verified, key=lambda r: (r.latency_ms, allowed.index(r.kind)))
        others = ", ".join(f"{r.kind} {r.latency_text()}" for r in verified if r is not best)
        vs = f" vs {others}" if others else ""
        failed = "; ".join(f"{r.kind}: {r.reason}" for r in reports if not r.verified)
        rejected = f" (not verified: {failed})" if failed else ""
        return best.kind, f"{best.kind}: verified, {best.latency_text()}{vs} at batch {batch_size}{rejected}"
    failures = "; ".join(f"{r.kind}: {r.reason}" for r in reports if not r.verified)
    if required:
        wanted = ", ".join(k for k in prefer if k != "cpu") or "none"
        return None, f"accelerator required ({wanted}) but none verified: {failures or 'no candidates'}"
    if failures:
        return "cpu", f"fell back to cpu: {failures}"
    return "cpu", "cpu (onnxruntime) is the reference"


# -- side effects ---------------------------------------------------------------------------------------


def _median_ms(loaded: LoadedModel, feeds: Mapping[str, np.ndarray], runs: int = TIMED_RUNS) -> float:
    """Median latency: the device's own report when it gives one, else host wall-clock time."""
    loaded.run(feeds)  # warm-up: plans, caches
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        loaded.run(feeds)
        wall_ms = (time.perf_counter() - start) * 1000.0
        device_ms = loaded.device_time_ms()
        samples.append(wall_ms if device_ms is None else device_ms)
    return statistics.median(samples)


def _try_candidate(
    kind: str, backend: Backend | None, model: onnx.ModelProto, model_path: Path, feeds: dict, reference: dict
) -> tuple[CandidateReport, LoadedModel | None]:
    if backend is None:
        return CandidateReport(kind, False, reason=f"no {kind} backend on this device"), None
    try:
        if not backend.probe():
            return CandidateReport(kind, False, reason=f"no {kind} device found"), None
        support = backend.supports(model)
        if not support.ok:
            return CandidateReport(kind, False, reason=f"unsupported: {support.reason}"), None
        loaded = backend.load(model_path)
    except Exception as exc:
        return CandidateReport(kind, False, reason=f"load failed: {exc}"), None
    try:
        mismatch = compare_outputs(loaded.run(feeds), reference)
        if mismatch:
            raise NumericMismatch(f"golden input differs from onnxruntime: {mismatch}")
        latency = _median_ms(loaded, feeds)
    except Exception as exc:  # wrong results, timeouts, device faults: all mean "not trusted"
        loaded.close()
        reason = str(exc) if isinstance(exc, NumericMismatch) else f"run failed: {type(exc).__name__}: {exc}"
        return CandidateReport(kind, False, reason=reason), None
    return CandidateReport(kind, True, latency, "verified", device_timed=loaded.device_time_ms() is not None), loaded


def select_backend(model_path: Path, prefer: list[str], required: bool = False, batch_size: int = 1) -> Selection:
    """Verify, time and pick a backend for ``model_path``; raises NoVerifiedAccelerator when
    ``required`` and no preferred accelerator passes."""
    model_path = Path(model_path)
    backends = available_backends()
    model = onnx.load(str(model_path), load_external_data=False)
    cpu = backends.get("cpu") or CpuBackend()
    reference_model = cpu.load(model_path)
    feeds = golden_input(reference_model.inputs, batch_size)
    reference = reference_model.run(feeds)

    reports: list[CandidateReport] = []
    loaded: dict[str, LoadedModel] = {}
    for kind in prefer:
        if kind == "cpu":
            if not required:
                reports.append(CandidateReport("cpu", True, _median_ms(reference_model, feeds), "reference"))
            continue
        report, candidate = _try_candidate(kind, backends.get(kind), model, model_path, feeds, reference)
        log.info("backend candidate %s for %s: %s", kind, model_path.name, report.reason)
        reports.append(report)
        if candidate is not None:
            loaded[kind] = candidate

    chosen_kind, reason = choose(reports, prefer, required, batch_size)
    timings = {r.kind: round(r.latency_ms, 4) for r in reports if r.latency_ms is not None}
    for k, model_loaded in loaded.items():
        if k != chosen_kind:
            model_loaded.close()
    if chosen_kind is None:
        reference_model.close()
        raise NoVerifiedAccelerator(reason)
    chosen = reference_model if chosen_kind == "cpu" else loaded[chosen_kind]
    if chosen_kind != "cpu":
        reference_model.close()
    log.info("backend for %s: %s", model_path.name, reason)
    return Selection(loaded=chosen, backend=chosen_kind, reason=reason, timings_ms=timings, candidates=reports)
