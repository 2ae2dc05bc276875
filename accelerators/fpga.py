"""The FPGA backend: boards that load precompiled binaries, found through driver plugins.

A driver is a class registered under the entry point group ``edgefleet.fpga_drivers`` and built
with no arguments. It lists the boards it can reach (``devices``), says whether it can compile a
model at all (``supports``), compiles one for a board (``compile``; a driver for real boards
without a toolchain raises, and the binary must then be shipped next to the model), and each board
programs a binary (skipping one already loaded) and runs it. The FPGA simulator is one such
driver (``edgefleet.simulators.fpga.driver:SimulatedDriver``, enabled by ``EDGEFLEET_FPGA_SIM``); this
package never imports it, so a simulated board is found and used exactly like a real one.

Which binary ``load`` programs, in order of preference:

1. a precompiled binary next to the model: ``<model stem>.<board><driver.binary_suffix>``;
2. the compile cache: ``<cache dir>/<model sha256>-<board>-<shell id><suffix>`` (cache dir from
   ``EDGEFLEET_FPGA_CACHE_DIR``, default ``~/.cache/edgefleet/fpga``);
3. ``driver.compile``, whose result is written to the cache.

Boards are tried in discovery order; the first one that accepts a binary for the model wins, and
when none does, the error names every board and why.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import onnx

from edgefleet.accelerators.base import Backend, LoadedModel, Support, TensorInfo
from edgefleet.accelerators.errors import AcceleratorError
from edgefleet.protocol.files import write_atomic
from edgefleet.protocol.models import AcceleratorInfo

log = logging.getLogger(__name__)

DRIVER_GROUP = "edgefleet.fpga_drivers"
_NP_TYPES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64",
}


@runtime_checkable
class FpgaDevice(Protocol):
    """One board as a driver exposes it."""

    @property
    def board(self) -> str: ...

    @property
    def shell_id(self) -> str: ...

    def describe(self) -> AcceleratorInfo: ...

    def loaded_binary(self) -> str | None: ...

    def program(self, binary: bytes) -> bool:
        """Load ``binary``; False when it was already loaded (nothing done). Raises when refused."""
        ...

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def last_run_ms(self) -> float | None:
        """Device-reported time of the last run (kernel + host transfers), if the board reports it."""
        ...


@runtime_checkable
class FpgaDriver(Protocol):
    name: str
    binary_suffix: str  # file name ending of the binaries this driver loads, e.g. ".efsim"

    def devices(self) -> list[FpgaDevice]: ...

    def supports(self, model: onnx.ModelProto) -> str | None:
        """None when the driver can build this model; else the reason it cannot."""
        ...

    def compile(self, model_path: Path, board: str) -> bytes: ...


def discover_drivers() -> list[FpgaDriver]:
    """Every installed driver plugin; one that fails to load is logged and skipped."""
    drivers: list[FpgaDriver] = []
    for ep in entry_points(group=DRIVER_GROUP):
        try:
            drivers.append(ep.load()())
        except Exception as exc:
            log.warning("FPGA driver %r (%s) could not be loaded and is skipped: %s", ep.name, ep.value, exc)
    return drivers


def _tensor_infos(values: list[onnx.ValueInfoProto], skip: set[str]) -> list[TensorInfo]:
    infos = []
    for v in values:
        if v.name in skip:
            continue
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
        infos.append(TensorInfo(v.name, _NP_TYPES.get(t.elem_type, str(t.elem_type)), dims))
    return infos


def _default_cache_dir() -> Path:
    configured = os.environ.get("EDGEFLEET_FPGA_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "edgefleet" / "fpga"


class FpgaLoadedModel(LoadedModel):
    backend = "fpga"

    def __init__(self, device: FpgaDevice, model: onnx.ModelProto, content_id: str | None) -> None:
        self.device = device
        self.content_id = content_id
        inits = {t.name for t in model.graph.initializer}
        self.inputs = _tensor_infos(list(model.graph.input), inits)
        self.outputs = _tensor_infos(list(model.graph.output), set())

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return self.device.run(feeds)
        except Exception as exc:
            raise AcceleratorError(f"fpga board {self.device.board!r}: run failed: {exc}") from exc

    def device_time_ms(self) -> float | None:
        return self.device.last_run_ms()


class FpgaBackend(Backend):
    kind = "fpga"

    def __init__(self, drivers: list[FpgaDriver] | None = None, cache_dir: Path | None = None) -> None:
        self.drivers = discover_drivers() if drivers is None else drivers
        self.cache_dir = cache_dir or _default_cache_dir()

    def _devices(self) -> list[tuple[FpgaDriver, FpgaDevice]]:
        found: list[tuple[FpgaDriver, FpgaDevice]] = []
        for driver in self.drivers:
            try:
                found.extend((driver, device) for device in driver.devices())
            except Exception as exc:
                log.warning("FPGA driver %r failed to list its boards: %s", driver.name, exc)
        return found

    def probe(self) -> list[AcceleratorInfo]:
        return [device.describe() for _, device in self._devices()]

    def supports(self, model: onnx.ModelProto) -> Support:
        devices = self._devices()
        if not devices:
            return Support(False, "no FPGA board found (for the simulator set EDGEFLEET_FPGA_SIM=<board>)")
        reasons = []
        for driver in {id(d): d for d, _ in devices}.values():
            reason = driver.supports(model)
            if reason is None:
                return Support(True, f"driver {driver.name!r} can build this model")
            reasons.append(f"{driver.name}: {reason}")
        return Support(False, "; ".join(reasons))

    def load(self, model_path: Path) -> LoadedModel:
        model_path = Path(model_path)
        model_bytes = model_path.read_bytes()
        model = onnx.load_from_string(model_bytes)
        digest = hashlib.sha256(model_bytes).hexdigest()
        devices = self._devices()
        if not devices:
            raise AcceleratorError("no FPGA board found (for the simulator set EDGEFLEET_FPGA_SIM=<board>)")
        failures = []
        for driver, device in devices:
            try:
                binary = self._binary_for(driver, device, model_path, digest)
                reprogrammed = device.program(binary)
            except Exception as exc:
                log.info("fpga board %s cannot take %s: %s", device.board, model_path.name, exc)
                failures.append(f"board {device.board!r}: {exc}")
                continue
            log.info(
                "fpga board %s: %s %s",
                device.board,
                "programmed" if reprogrammed else "already holds",
                device.loaded_binary(),
            )
            return FpgaLoadedModel(device, model, device.loaded_binary())
        raise AcceleratorError(f"no FPGA board could load {model_path}: " + "; ".join(failures))

    def _binary_for(self, driver: FpgaDriver, device: FpgaDevice, model_path: Path, digest: str) -> bytes:
        shipped = model_path.with_name(f"{model_path.stem}.{device.board}{driver.binary_suffix}")
        if shipped.is_file():
            return shipped.read_bytes()
        cached = self.cache_dir / f"{digest}-{device.board}-{device.shell_id}{driver.binary_suffix}"
        if cached.is_file():
            return cached.read_bytes()
        binary = driver.compile(model_path, device.board)
        try:
            write_atomic(cached, binary)
        except OSError as exc:  # a read-only cache costs a recompile next time, nothing more
            log.warning("could not write the FPGA compile cache %s: %s", cached, exc)
        return binary
