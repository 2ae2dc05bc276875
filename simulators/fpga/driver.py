"""The simulator's FPGA driver plugin: simulated boards for ``edgefleet.accelerators.fpga.FpgaBackend``.

Registered in pyproject.toml under the ``edgefleet.fpga_drivers`` entry point group as
``sim = "edgefleet.simulators.fpga.driver:SimulatedDriver"``. It offers boards only when
``EDGEFLEET_FPGA_SIM`` names some (see ``settings.py``), so installing the package changes nothing
on a device until the setting is made.

A board is a physical singleton: every driver instance in a process shares one
``SimulatedBoard`` per (board, state dir), so a second backend sees what the first programmed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx

from edgefleet.protocol.models import AcceleratorInfo
from edgefleet.simulators.errors import CompileError
from edgefleet.simulators.fpga.boards import get_board
from edgefleet.simulators.fpga.compiler import compile_model
from edgefleet.simulators.fpga.device import RunTiming, SimulatedBoard
from edgefleet.simulators.fpga.faults import FaultInjector
from edgefleet.simulators.fpga.layers import lower
from edgefleet.simulators.fpga.settings import FpgaSimSettings

BINARY_SUFFIX = ".efsim"

_boards: dict[tuple[str, Path | None], SimulatedBoard] = {}
_boards_lock = threading.Lock()


def shared_board(name: str, state_dir: Path | None, faults_spec: str = "", seed: int | None = None) -> SimulatedBoard:
    """The process-wide board, with the current fault settings applied.

    The injector is replaced only when the spec or seed changed, so a partial fault rate keeps
    drawing from one random sequence instead of restarting it on every discovery.
    """
    key = (name, state_dir.resolve() if state_dir else None)
    with _boards_lock:
        board = _boards.get(key)
        if board is None:
            board = _boards[key] = SimulatedBoard(
                get_board(name), FaultInjector.from_spec(faults_spec, seed), state_dir
            )
        elif board.faults.source != (faults_spec, seed):
            board.faults = FaultInjector.from_spec(faults_spec, seed)
        return board


class SimulatedDevice:
    """Adapts a SimulatedBoard to the backend's FpgaDevice protocol."""

    def __init__(self, sim: SimulatedBoard) -> None:
        self.sim = sim
        self.last_timing: RunTiming | None = None

    @property
    def board(self) -> str:
        return self.sim.board.name

    @property
    def shell_id(self) -> str:
        return self.sim.board.shell_id

    def describe(self) -> AcceleratorInfo:
        b = self.sim.board
        return AcceleratorInfo(
            kind="fpga",
            platform="edgefleet FPGA simulator",
            device=b.title,
            device_type="ACCELERATOR",
            compute_units=1,  # one dataflow region
            global_mem_bytes=b.memory_bytes,
            board=b.name,
            shell_id=b.shell_id,
            loaded_binary=self.sim.loaded_binary,
            simulated=True,
            extra={
                "part": b.part,
                "category": b.category,
                "clock_mhz": b.clock_mhz,
                "dsp": b.dsp,
                "bram36": b.bram36,
                "uram": b.uram,
                "luts": b.luts,
            },
        )

    def loaded_binary(self) -> str | None:
        return self.sim.loaded_binary

    def program(self, binary: bytes) -> bool:
        return self.sim.program(binary).reprogrammed

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.sim.run(feeds)
        self.last_timing = result.timing
        return result.outputs

    def last_run_ms(self) -> float | None:
        """The modelled time at the board clock (not the host time of the functional simulation)."""
        return self.last_timing.total_us / 1000.0 if self.last_timing else None


class SimulatedDriver:
    """Without explicit settings, reads the environment at every discovery: a long-lived backend
    (selection keeps one per process) follows changes of EDGEFLEET_FPGA_SIM*."""

    name = "sim"
    binary_suffix = BINARY_SUFFIX

    def __init__(self, settings: FpgaSimSettings | None = None) -> None:
        self._settings = settings

    def devices(self) -> list[SimulatedDevice]:
        settings = self._settings or FpgaSimSettings()
        return [
            SimulatedDevice(shared_board(name, settings.state_dir, settings.faults, settings.seed))
            for name in settings.board_names()
        ]

    def supports(self, model: onnx.ModelProto) -> str | None:
        try:
            lower(model)
        except CompileError as exc:
            return str(exc)
        return None

    def compile(self, model_path: Path, board: str) -> bytes:
        return compile_model(model_path, get_board(board)).binary
