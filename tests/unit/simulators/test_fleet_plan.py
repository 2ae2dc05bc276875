from pathlib import Path

from edgefleet.simulators.fleet import plan_fleet


def test_every_nth_device_gets_the_board_and_only_those_get_faults() -> None:
    devices = plan_fleet(4, "sim-", {"site": "lab"}, "kv260", 2, "wrong_results")
    assert [d.device_id for d in devices] == ["sim-1", "sim-2", "sim-3", "sim-4"]
    assert [d.fpga_board for d in devices] == ["kv260", None, "kv260", None]
    assert [d.faults for d in devices] == ["wrong_results", None, "wrong_results", None]
    assert devices[0].labels == {"site": "lab", "sim": "true", "fpga": "kv260"}
    assert devices[1].labels == {"site": "lab", "sim": "true"}


def test_devices_get_the_board_through_the_agent_setting_and_faults_through_the_environment() -> None:
    with_board, without = plan_fleet(2, "d", {"site": "lab"}, "u250", 2, "program_fail")
    assert with_board.agent_args() == ["--fpga-sim", "u250"]
    assert with_board.env() == {"EDGEFLEET_FPGA_SIM_FAULTS": "program_fail"}
    assert without.agent_args() == []
    assert without.env() == {}


def test_labels_are_given_at_registration_not_by_the_agent() -> None:
    (dev,) = plan_fleet(1, "d", {"site": "lab"}, "u250", 1, None)
    assert dev.register_args(Path("b.json")) == ["device", "register", "d1", "--out", "b.json", "--force",
                                                 "--label", "site=lab", "--label", "sim=true",
                                                 "--label", "fpga=u250"]  # fmt: skip
