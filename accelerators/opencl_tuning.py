"""Per-device tuning of the int8 GEMM kernel: candidates, choice by measurement, and the cache.

The tile (TM x TN outputs per work-item), the vector width along K (VW int16 lanes) and the
work-group size that run fastest differ between OpenCL devices (PoCL on a CPU wants a register
tile whose TM * TN accumulators fit the 16 AVX registers; a GPU wants more work-items), so they are
measured on the device itself, once, and cached per device in ``~/.cache/edgefleet/opencl_gemm.json`` (override with
``EDGEFLEET_CACHE_DIR``). Small-M problems (batch-1 dense layers) and large-M ones (convolutions,
batched dense layers) are tuned separately: a 4-row tile wastes three quarters of its work at M=1.

The choice itself (``pick_fastest``) is pure; measuring is a callable handed in by the backend.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from edgefleet.protocol.files import write_atomic

log = logging.getLogger(__name__)

CACHE_FILE = "opencl_gemm.json"


@dataclass(frozen=True)
class GemmConfig:
    tm: int  # output rows per work-item
    tn: int  # output columns per work-item
    vw: int  # int16 lanes per vector load along K (8 or 16)
    local: tuple[int, int] = (1, 1)  # work-group size (tiles of rows, tiles of columns)

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["local"] = list(self.local)
        return d

    @staticmethod
    def from_dict(d: dict[str, object]) -> GemmConfig:
        local = d.get("local", [1, 1])
        return GemmConfig(int(d["tm"]), int(d["tn"]), int(d["vw"]), (int(local[0]), int(local[1])))  # type: ignore[index,call-overload]


# Measured on PoCL 3.0 / AVX2 (Zen 3, 2 cores; bench/accel_gemm.py and kernel-only sweeps): with the
# pmaddwd multiply-add the accumulators must stay in the 16 ymm registers (TM * TN + TM + 1 <= 16).
# 1x8 tiles of int16x16 lanes with 16 row tiles per work-group ran fastest on 256x1024x1024
# (~250 GOPS kernel-only, vs 2x5 ~225, 2x6 ~215, 3x4 ~160, 4x4 (spills) ~190), and on the digits
# convolutions (M = 64 * 64 or 64 * 16 rows, N = 8 or 16, K = 9 or 72) within noise of the best.
# Work-groups of 16 row tiles beat single work-item groups by 5-25 % (fewer work-group dispatches in
# PoCL's pthread scheduler); larger groups gained nothing more. At M = 1 the GEMM is launch-bound.
DEFAULT = {"small_m": GemmConfig(1, 8, 16), "large_m": GemmConfig(1, 8, 16, (16, 1))}
CANDIDATES: dict[str, tuple[GemmConfig, ...]] = {
    "small_m": (
        GemmConfig(1, 8, 16),
        GemmConfig(1, 4, 16),
        GemmConfig(1, 8, 8),
        GemmConfig(1, 4, 16, (1, 8)),
    ),
    "large_m": (
        GemmConfig(1, 8, 16, (16, 1)),
        GemmConfig(1, 8, 16),
        GemmConfig(2, 5, 16, (16, 1)),
        GemmConfig(2, 6, 16, (16, 1)),
        GemmConfig(2, 4, 16, (16, 1)),
        GemmConfig(3, 4, 16, (16, 1)),
        GemmConfig(1, 8, 8, (16, 1)),
    ),
}
# Representative problems (M, N, K) each class is measured on.
TUNING_SHAPES = {"small_m": (1, 512, 512), "large_m": (256, 512, 512)}


def shape_class(m: int) -> str:
    return "small_m" if m < 4 else "large_m"


def pick_fastest(seconds: dict[GemmConfig, float]) -> GemmConfig:
    """The config with the lowest measured time; ties go to the earlier (simpler) candidate."""
    if not seconds:
        raise ValueError("no GEMM configuration could be measured")
    return min(seconds, key=lambda c: seconds[c])


def measure(candidates: Iterable[GemmConfig], run_once: Callable[[GemmConfig], float], repeats: int = 3) -> dict:
    """Best-of-``repeats`` seconds per candidate; a candidate that fails to build or run is skipped."""
    seconds: dict[GemmConfig, float] = {}
    for config in candidates:
        try:
            run_once(config)  # warm-up: builds the program
            seconds[config] = min(run_once(config) for _ in range(repeats))
        except Exception as exc:  # a config the device rejects (registers, work-group size) is not a failure
            log.info("GEMM config %s skipped on this device: %s", config, exc)
    return seconds


def cache_path() -> Path:
    base = os.environ.get("EDGEFLEET_CACHE_DIR") or str(Path.home() / ".cache" / "edgefleet")
    return Path(base) / CACHE_FILE


class TuningCache:
    """{device key: {shape class: {"config": ..., "gops": ...}}} in one JSON file, written atomically."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_path()

    def _read(self) -> dict[str, dict[str, dict[str, object]]]:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable GEMM tuning cache %s: %s", self.path, exc)
            return {}

    def get(self, device_key: str, cls: str) -> GemmConfig | None:
        entry = self._read().get(device_key, {}).get(cls)
        if not entry:
            return None
        try:
            return GemmConfig.from_dict(entry["config"])  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, device_key: str, cls: str, config: GemmConfig, gops: float) -> None:
        data = self._read()
        data.setdefault(device_key, {})[cls] = {"config": config.to_dict(), "gops": round(gops, 2)}
        try:
            write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True).encode())
        except OSError as exc:  # a read-only home must not stop inference; we just re-tune next time
            log.warning("could not write GEMM tuning cache %s: %s", self.path, exc)
