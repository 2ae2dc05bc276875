from pathlib import Path

from simulators.fleet import plan_fleet


def test_every_nth_device_gets_the_board_and_only_those_get_faults() -> None:
    devices = plan_fleet(4, "sim-", {"site": "lab"}, "kv260", 2, "wrong_results")
    assert [d.device_id for d in devices] == ["sim-1", "sim-2", "sim-3", "sim-4"]
    assert [d.fpga_board for d in devices] == ["kv260", None, "kv260", None]
    assert [d.faults for d in devices] == ["wrong_results", None, "wrong_results", None]
    assert devices[0].labels == {"site": "lab", "sim": "true", "fpga": "kv260"}
    assert devices[1].labels == {"site": "lab", "sim": "true"}


def test_device_environment_enables_the_simulated_board_with_its_own_state(tmp_path: Path) -> None:
    with_board, without = plan_fleet(2, "d", {}, "u250", 2, None)
    env = with_board.env(tmp_path)
    assert env == {"EDGEFLEET_FPGA_SIM": "u250", "EDGEFLEET_FPGA_SIM_STATE_DIR": str(tmp_path / "fpga")}
    assert without.env(tmp_path) == {}
