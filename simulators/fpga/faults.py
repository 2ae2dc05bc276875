"""Fault injection for the simulated board: what can go wrong on real hardware, on demand.

Spec (``EDGEFLEET_FPGA_SIM_FAULTS``): comma-separated fault names, each optionally with a rate in
[0, 1] after ``:`` or ``=`` (default 1.0, i.e. every time), e.g. ``wrong_results`` or
``program_fail:0.5,timeout:0.1``.

    program_fail    programming the board fails (the board is left without a design)
    timeout         a kernel run never completes; the watchdog reports a timeout
    wrong_results   outputs come back with flipped bits (as from a marginal timing path or a bad
                    DDR write-back): the selector's numeric check must catch it
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from edgefleet.simulators.errors import FaultSpecError


class Fault(str, Enum):
    PROGRAM_FAIL = "program_fail"
    TIMEOUT = "timeout"
    WRONG_RESULTS = "wrong_results"


def parse_faults(spec: str) -> dict[Fault, float]:
    """Pure: the spec string -> rate per fault."""
    faults: dict[Fault, float] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, _, rate_text = item.replace("=", ":").partition(":")
        try:
            fault = Fault(name.strip().lower())
        except ValueError:
            raise FaultSpecError(
                f"EDGEFLEET_FPGA_SIM_FAULTS: unknown fault {name.strip()!r} in {spec!r}; "
                f"known faults: {', '.join(f.value for f in Fault)} (optionally 'name:rate', rate in [0, 1])"
            ) from None
        try:
            rate = float(rate_text) if rate_text.strip() else 1.0
        except ValueError:
            rate = -1.0
        if not 0.0 <= rate <= 1.0:
            raise FaultSpecError(
                f"EDGEFLEET_FPGA_SIM_FAULTS: rate of {fault.value!r} must be a number in [0, 1], got {rate_text!r}"
            )
        faults[fault] = rate
    return faults


@dataclass
class FaultInjector:
    """Decides, per operation, whether a fault strikes; seeded so a test run is reproducible."""

    rates: dict[Fault, float] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)
    source: tuple[str, int | None] = ("", None)  # (spec, seed) it was built from

    @classmethod
    def from_spec(cls, spec: str, seed: int | None = None) -> FaultInjector:
        return cls(parse_faults(spec), random.Random(seed), (spec, seed))

    def strikes(self, fault: Fault) -> bool:
        rate = self.rates.get(fault, 0.0)
        return rate >= 1.0 or (rate > 0.0 and self.rng.random() < rate)


def flip_bits(outputs: dict[str, np.ndarray], rng: random.Random) -> dict[str, np.ndarray]:
    """Copies of ``outputs`` with a high bit flipped in about 1% of the elements (at least one each).

    Integers get bit 6 flipped (64 LSB off); float32 gets exponent bit 30 flipped, which moves
    every value (0.0 becomes 2.0, 1.0 becomes ~1.7e38), so the damage is always visible.
    """
    corrupted: dict[str, np.ndarray] = {}
    for name, value in outputs.items():
        out = np.array(value, copy=True)
        flat = out.reshape(-1)
        if flat.size:
            count = max(1, flat.size // 100)
            idx = np.array(rng.sample(range(flat.size), count))
            if out.dtype == np.float32:
                bits = flat.view(np.uint32)
                bits[idx] ^= np.uint32(1 << 30)
            elif np.issubdtype(out.dtype, np.integer):
                flat[idx] ^= np.array(0x40, dtype=out.dtype)
            else:
                flat[idx] = -flat[idx] + 1
        corrupted[name] = out
    return corrupted
