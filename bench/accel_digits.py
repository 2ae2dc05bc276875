"""End to end on the digits int8 model: latency and throughput per backend at batch 1 and 64, and
which backend the selector picked (it must be the fastest verified one).

    python -m bench.accel_digits                        # writes bench/results/accel_digits.json
    EDGEFLEET_FPGA_SIM=kv260 python -m bench.accel_digits   # with a simulated FPGA board

A simulated board's host time is the functional simulation on this CPU and says nothing about the
hardware; its "device ms" column is the modelled time at the board clock (kernel + transfers),
which is also what the selector compares.
"""

from __future__ import annotations

import logging
import sys
from functools import partial
from typing import Any

import numpy as np

from bench.accel_common import median_ms, write_results
from edgefleet.accelerators.selection import available_backends, compare_outputs, select_backend
from tests.support.quant_models import DIGITS_INT8, DIGITS_TEST_SET

BATCHES = (1, 64)
PREFER = ["fpga", "opencl", "cpu"]


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    if not DIGITS_INT8.exists():
        print(f"missing {DIGITS_INT8}: run modules/samples/digits/train.py first")
        return 1
    images = np.load(DIGITS_TEST_SET)["images"]
    backends = {k: b for k, b in available_backends().items() if k == "cpu" or b.probe()}
    loaded = {k: b.load(DIGITS_INT8) for k, b in backends.items()}
    rows: list[dict[str, Any]] = []
    for batch in BATCHES:
        feeds = {"input": np.ascontiguousarray(images[:batch])}
        reference = loaded["cpu"].run(feeds)
        measured = {}
        for kind, model in loaded.items():
            ms = median_ms(partial(model.run, feeds), repeats=30 if batch == 1 else 10)
            device_ms = model.device_time_ms()  # of the last run; None: the device reports nothing
            measured[kind] = ms if device_ms is None else device_ms
            ok = compare_outputs(model.run(feeds), reference) is None
            rows.append(
                {
                    "batch": batch,
                    "backend": kind,
                    "latency_ms": ms,
                    "device_ms": device_ms,
                    "images_per_s": batch / measured[kind] * 1000,
                    "matches_cpu": ok,
                }
            )
        chosen = select_backend(DIGITS_INT8, PREFER, batch_size=batch)
        fastest = min(chosen.timings_ms, key=lambda k: chosen.timings_ms[k])
        rows.append(
            {
                "batch": batch,
                "selected": chosen.backend,
                "reason": chosen.reason,
                "selector_timings_ms": chosen.timings_ms,
                "picked_fastest_verified": chosen.backend == fastest,
            }
        )
        chosen.loaded.close()

    print(f"digits int8 ({DIGITS_INT8.name}), backends available: {', '.join(loaded)}")
    print(f"{'batch':>5} {'backend':<8} {'host ms':>9} {'device ms':>10} {'images/s':>10}  matches cpu")
    for r in rows:
        if "backend" in r:
            device = "-" if r["device_ms"] is None else f"{r['device_ms']:.4f}"
            print(
                f"{r['batch']:>5} {r['backend']:<8} {r['latency_ms']:9.3f} {device:>10} {r['images_per_s']:10.0f}  "
                f"{r['matches_cpu']}"
            )
        else:
            print(
                f"{r['batch']:>5} selector -> {r['selected']} (fastest verified: {r['picked_fastest_verified']}): {r['reason']}"
            )
    print(f"wrote {write_results('accel_digits', {'model': str(DIGITS_INT8.name), 'rows': rows})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
