"""A simulated FPGA board: program a compiled binary, run it exactly, report modelled timing.

Behaves like an OpenCL accelerator device that loads precompiled binaries:

- ``program`` refuses a binary built for another board or shell, does nothing when the same
  content id is already loaded, and refuses while kernels are enqueued (DeviceBusy).
- ``enqueue`` starts a run (the board is busy until ``RunHandle.wait``); ``run`` does both.
  Execution is functionally exact: the loaded design's int8 graph runs through the shared numpy
  reference executor (``edgefleet.accelerators.quant``), the arithmetic every int8 backend is held to.
- Timing is modelled, not measured: per-layer cycles from the compile report at the board clock,
  ``latency + (N-1) * II`` cycles for a batch of N, plus host-link transfer of inputs and outputs.
- Injected faults (``faults.py``) make programming fail, runs time out, or outputs wrong.

With a state directory the loaded binary survives the process (written atomically), as a real
board keeps its bitstream: a restarted module or the agent's probe sees what is loaded. Busy
state is per process; concurrent programming from two processes is not modelled.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from edgefleet.accelerators.quant import ReferenceExecutor
from edgefleet.protocol.files import write_atomic
from edgefleet.simulators.errors import BoardMismatch, DeviceBusy, DeviceTimeout, NotProgrammed, ProgrammingFailed
from edgefleet.simulators.fpga.boards import Board
from edgefleet.simulators.fpga.compiler import FpgaBinary, unpack_binary
from edgefleet.simulators.fpga.faults import Fault, FaultInjector, flip_bits
from edgefleet.simulators.fpga.layers import lower

log = logging.getLogger(__name__)

WATCHDOG_MS = 1000.0  # what a timed-out run reports; the simulator raises at once instead of waiting


@dataclass(frozen=True)
class LayerTiming:
    kernel: str
    cycles: int
    latency_us: float


@dataclass(frozen=True)
class RunTiming:
    """Modelled timing of one run at the board clock (not wall-clock time on this host)."""

    batch: int
    layers: list[LayerTiming]
    kernel_cycles: int
    kernel_us: float
    transfer_us: float
    total_us: float
    throughput_fps: float


@dataclass(frozen=True)
class RunResult:
    outputs: dict[str, np.ndarray]
    timing: RunTiming


@dataclass(frozen=True)
class ProgramOutcome:
    content_id: str
    reprogrammed: bool  # False: the same binary was already loaded


def model_timing(binary: FpgaBinary, board: Board, batch: int, transfer_bytes: int) -> RunTiming:
    """Pure: the modelled time of a batch on the loaded design."""
    report = binary.report
    clock_hz = board.clock_mhz * 1e6
    layers = [LayerTiming(e.kernel, e.cycles, e.cycles / clock_hz * 1e6) for e in report.layers if e.cycles]
    cycles = report.latency_cycles + max(batch - 1, 0) * report.ii_cycles
    kernel_us = cycles / clock_hz * 1e6
    link_gbs = board.pcie_bandwidth_gbs or board.memory_bandwidth_gbs
    transfer_us = transfer_bytes / (link_gbs * 1e9) * 1e6
    total_us = kernel_us + transfer_us
    return RunTiming(batch, layers, cycles, kernel_us, transfer_us, total_us, batch / (total_us * 1e-6))


def check_compatible(binary: FpgaBinary, board: Board) -> None:
    """Pure: refuse a binary built for another board or shell."""
    if binary.board != board.name:
        raise BoardMismatch(
            f"FPGA binary {binary.content_id} was built for board {binary.board!r} but this device is "
            f"{board.name!r} ({board.title}); recompile it with `edgefleet-sim fpga compile MODEL --board {board.name}`"
        )
    if binary.shell_id != board.shell_id:
        raise BoardMismatch(
            f"FPGA binary {binary.content_id} targets shell {binary.shell_id!r} but board {board.name!r} runs "
            f"shell {board.shell_id!r}; recompile against the installed shell (or update the board's shell)"
        )


def _batch_of(feeds: Mapping[str, np.ndarray]) -> int:
    return max((int(np.asarray(v).shape[0]) for v in feeds.values() if np.asarray(v).ndim), default=1)


@dataclass
class _Loaded:
    binary: FpgaBinary
    executor: ReferenceExecutor


class RunHandle:
    """An enqueued run; the board stays busy until ``wait`` returns or raises."""

    def __init__(self, device: SimulatedBoard, loaded: _Loaded, feeds: Mapping[str, np.ndarray]) -> None:
        self._device = device
        self._loaded = loaded
        self._feeds = {k: np.asarray(v) for k, v in feeds.items()}
        self._done = False

    def wait(self) -> RunResult:
        if self._done:
            raise RuntimeError("RunHandle.wait called twice")  # programming error in the caller
        self._done = True
        try:
            return self._device._execute(self._loaded, self._feeds)
        finally:
            self._device._finish_run()


@dataclass
class SimulatedBoard:
    board: Board
    faults: FaultInjector = field(default_factory=FaultInjector)
    state_dir: Path | None = None
    _loaded: _Loaded | None = field(default=None, init=False, repr=False)
    _active: int = field(default=0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._restore()

    # -- state -------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.board.name

    @property
    def loaded_binary(self) -> str | None:
        loaded = self._loaded
        return loaded.binary.content_id if loaded else None

    @property
    def busy(self) -> bool:
        return self._active > 0

    def _state_paths(self) -> tuple[Path, Path] | None:
        if self.state_dir is None:
            return None
        return self.state_dir / f"{self.board.name}.json", self.state_dir / f"{self.board.name}.bin"

    def _restore(self) -> None:
        paths = self._state_paths()
        if not paths or not paths[0].exists() or not paths[1].exists():
            return
        try:
            state = json.loads(paths[0].read_text())
            data = paths[1].read_bytes()
            binary = unpack_binary(data, where=str(paths[1]))
            if binary.content_id != state.get("content_id"):
                raise ValueError("state file and stored binary disagree")
            self._loaded = _Loaded(binary, ReferenceExecutor(lower(onnx.load_from_string(binary.model_bytes))))
        except Exception as exc:  # a damaged state file means an empty board, never a crash
            log.warning(
                "board %s: ignoring unreadable state in %s (%s); the board starts empty", self.name, paths[0], exc
            )

    def _persist(self, data: bytes | None, content_id: str | None) -> None:
        paths = self._state_paths()
        if not paths:
            return
        paths[0].parent.mkdir(parents=True, exist_ok=True)
        if data is None:
            for p in paths:
                p.unlink(missing_ok=True)
            return
        write_atomic(paths[1], data)
        write_atomic(paths[0], json.dumps({"board": self.board.name, "content_id": content_id}).encode())

    # -- programming -------------------------------------------------------------------------------
    def program(self, data: bytes) -> ProgramOutcome:
        binary = unpack_binary(data)
        check_compatible(binary, self.board)
        with self._lock:
            if self._loaded and self._loaded.binary.content_id == binary.content_id:
                log.info("board %s: binary %s already loaded; not reprogramming", self.name, binary.content_id)
                return ProgramOutcome(binary.content_id, reprogrammed=False)
            if self._active:
                raise DeviceBusy(
                    f"board {self.name!r} is running {self._active} kernel run(s) of binary "
                    f"{self.loaded_binary}; it can be reprogrammed only when idle: wait for the runs to finish "
                    "(or stop the module using it) and retry"
                )
            if self.faults.strikes(Fault.PROGRAM_FAIL):
                self._loaded = None
                self._persist(None, None)
                raise ProgrammingFailed(
                    f"board {self.name!r}: programming binary {binary.content_id} failed (injected fault "
                    "'program_fail' from EDGEFLEET_FPGA_SIM_FAULTS); the board is empty, retry or use another backend"
                )
            executor = ReferenceExecutor(lower(onnx.load_from_string(binary.model_bytes)))
            self._loaded = _Loaded(binary, executor)
            self._persist(data, binary.content_id)
        log.info(
            "board %s: programmed binary %s (kernels: %s)", self.name, binary.content_id, ", ".join(binary.kernels)
        )
        return ProgramOutcome(binary.content_id, reprogrammed=True)

    # -- execution ---------------------------------------------------------------------------------
    def enqueue(self, feeds: Mapping[str, np.ndarray]) -> RunHandle:
        with self._lock:
            if self._loaded is None:
                raise NotProgrammed(
                    f"board {self.name!r} has no binary loaded; program one first (the fpga backend does this on load)"
                )
            self._active += 1
            return RunHandle(self, self._loaded, feeds)

    def run(self, feeds: Mapping[str, np.ndarray]) -> RunResult:
        return self.enqueue(feeds).wait()

    def _finish_run(self) -> None:
        with self._lock:
            self._active -= 1

    def _execute(self, loaded: _Loaded, feeds: dict[str, np.ndarray]) -> RunResult:
        if self.faults.strikes(Fault.TIMEOUT):
            raise DeviceTimeout(
                f"board {self.name!r}: kernel {loaded.binary.kernels[0] if loaded.binary.kernels else '?'} did not "
                f"complete within the {WATCHDOG_MS:.0f} ms watchdog (injected fault 'timeout' from "
                "EDGEFLEET_FPGA_SIM_FAULTS); the run was abandoned"
            )
        outputs = loaded.executor.run(feeds)
        if self.faults.strikes(Fault.WRONG_RESULTS):
            log.debug("board %s: injecting wrong results", self.name)
            outputs = flip_bits(outputs, self.faults.rng)
        transfer = sum(v.nbytes for v in feeds.values()) + sum(np.asarray(v).nbytes for v in outputs.values())
        timing = model_timing(loaded.binary, self.board, _batch_of(feeds), transfer)
        return RunResult(outputs, timing)
