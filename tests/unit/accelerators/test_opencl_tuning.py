from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.accelerators.opencl_tuning import GemmConfig, TuningCache, measure, pick_fastest, shape_class


def test_pick_fastest_takes_lowest_time_and_first_on_ties() -> None:
    a, b, c = GemmConfig(4, 8, 16), GemmConfig(2, 8, 16), GemmConfig(1, 8, 16)
    assert pick_fastest({a: 2.0, b: 1.0, c: 3.0}) == b
    assert pick_fastest({a: 1.0, b: 1.0}) == a
    with pytest.raises(ValueError):
        pick_fastest({})


def test_measure_skips_configs_the_device_rejects() -> None:
    good, bad = GemmConfig(4, 8, 16), GemmConfig(8, 8, 32)

    def run_once(config: GemmConfig) -> float:
        if config == bad:
            raise RuntimeError("CL_OUT_OF_RESOURCES")
        return 0.5

    assert measure([good, bad], run_once) == {good: 0.5}


def test_cache_round_trips_per_device_and_class(tmp_path: Path) -> None:
    cache = TuningCache(tmp_path / "sub" / "gemm.json")
    assert cache.get("dev", "large_m") is None
    cache.put("dev", "large_m", GemmConfig(4, 8, 16, (8, 1)), 31.4)
    cache.put("other", "small_m", GemmConfig(1, 8, 16), 5.0)
    fresh = TuningCache(tmp_path / "sub" / "gemm.json")
    assert fresh.get("dev", "large_m") == GemmConfig(4, 8, 16, (8, 1))
    assert fresh.get("dev", "small_m") is None and fresh.get("other", "small_m") == GemmConfig(1, 8, 16)


def test_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "gemm.json"
    path.write_text("{not json")
    assert TuningCache(path).get("dev", "large_m") is None


def test_shape_class_separates_batch_one() -> None:
    assert shape_class(1) == "small_m" and shape_class(64) == "large_m"
