from __future__ import annotations

import random

import numpy as np
import pytest

from edgefleet.simulators.errors import FaultSpecError
from edgefleet.simulators.fpga.faults import Fault, FaultInjector, flip_bits, parse_faults


def test_parse_names_and_rates() -> None:
    assert parse_faults("") == {}
    assert parse_faults("wrong_results") == {Fault.WRONG_RESULTS: 1.0}
    assert parse_faults("program_fail:0.5, timeout=0.25") == {Fault.PROGRAM_FAIL: 0.5, Fault.TIMEOUT: 0.25}


@pytest.mark.parametrize("spec", ["melt", "timeout:2", "timeout:x"])
def test_bad_specs_are_refused_with_the_known_faults(spec: str) -> None:
    with pytest.raises(FaultSpecError, match="EDGEFLEET_FPGA_SIM_FAULTS"):
        parse_faults(spec)


def test_rates_zero_and_one_are_certain() -> None:
    injector = FaultInjector({Fault.TIMEOUT: 1.0, Fault.PROGRAM_FAIL: 0.0})
    assert all(injector.strikes(Fault.TIMEOUT) for _ in range(20))
    assert not any(injector.strikes(Fault.PROGRAM_FAIL) for _ in range(20))
    assert not injector.strikes(Fault.WRONG_RESULTS)


def test_a_partial_rate_is_reproducible_with_a_seed() -> None:
    a = FaultInjector.from_spec("timeout:0.5", seed=7)
    b = FaultInjector.from_spec("timeout:0.5", seed=7)
    assert [a.strikes(Fault.TIMEOUT) for _ in range(50)] == [b.strikes(Fault.TIMEOUT) for _ in range(50)]


def test_flip_bits_always_changes_integer_and_float_outputs_and_leaves_the_input_alone() -> None:
    logits = np.zeros((2, 10), np.float32)
    codes = np.full((300,), 128, np.uint8)
    out = flip_bits({"logits": logits, "codes": codes}, random.Random(0))
    assert np.count_nonzero(out["logits"] != logits) >= 1
    changed = out["codes"] != codes
    assert changed.sum() == 3 and set(np.abs(out["codes"][changed].astype(int) - 128)) == {64}
    assert not logits.any() and (codes == 128).all()
