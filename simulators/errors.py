"""Errors of the simulators package.

SimulatorError                     base
└── FpgaSimError                   anything the FPGA simulator refuses or fails at
    ├── UnknownBoard               a board name that is not in the catalogue (names the known ones)
    ├── FaultSpecError             EDGEFLEET_FPGA_SIM_FAULTS cannot be parsed
    ├── CompileError               the model cannot be compiled for the board
    │   ├── UnsupportedLayer       an op the dataflow compiler has no kernel for (names op and node)
    │   └── DesignDoesNotFit       even the most folded design exceeds the board (carries the report)
    ├── BinaryFormatError          a file is not a simulator FPGA binary, or it is corrupt
    └── DeviceError                the simulated board refused or failed an operation
        ├── BoardMismatch          binary built for another board or shell
        ├── DeviceBusy             reprogramming requested while kernels are running
        ├── ProgrammingFailed      programming failed (injected fault)
        ├── NotProgrammed          run requested before any binary was loaded
        └── DeviceTimeout          a kernel run did not finish (injected fault)
"""

from __future__ import annotations

from typing import Any


class SimulatorError(Exception):
    """Base of simulator errors."""


class FpgaSimError(SimulatorError):
    """Base of FPGA simulator errors."""


class UnknownBoard(FpgaSimError):
    """The board name is not in the simulator's catalogue."""


class FaultSpecError(FpgaSimError):
    """The fault injection setting is malformed."""


class CompileError(FpgaSimError):
    """The model cannot be compiled for the board."""


class UnsupportedLayer(CompileError):
    """The graph has an op the simulated dataflow compiler has no kernel for."""


class DesignDoesNotFit(CompileError):
    """The design needs more resources than the board offers, even fully folded.

    ``report`` is the ``CompileReport`` of the most folded design tried, so callers can show it.
    """

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class BinaryFormatError(FpgaSimError):
    """The bytes are not a valid simulator FPGA binary."""


class DeviceError(FpgaSimError):
    """The simulated board refused or failed an operation."""


class BoardMismatch(DeviceError):
    """The binary was built for another board or shell."""


class DeviceBusy(DeviceError):
    """The board is running kernels and cannot be reprogrammed now."""


class ProgrammingFailed(DeviceError):
    """Programming the board failed."""


class NotProgrammed(DeviceError):
    """No binary is loaded on the board."""


class DeviceTimeout(DeviceError):
    """A kernel run did not complete within the watchdog time."""
