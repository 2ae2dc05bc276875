from __future__ import annotations

import pytest

from edgefleet.simulators.errors import UnknownBoard
from edgefleet.simulators.fpga.boards import BOARDS, get_board


def test_catalogue_has_an_edge_board_and_a_datacenter_card_with_sources() -> None:
    categories = {b.category for b in BOARDS.values()}
    assert categories == {"edge", "datacenter"}
    for board in BOARDS.values():
        assert board.source and board.shell_id
        assert 0 < board.shell_fraction < 1


def test_kv260_figures_are_the_k26_part() -> None:
    kv260 = get_board("KV260")
    assert (kv260.dsp, kv260.bram36, kv260.uram, kv260.luts) == (1248, 144, 64, 117_120)
    assert kv260.pcie_bandwidth_gbs is None  # a SoC: the fabric shares the host DDR


def test_u250_has_pcie_gen3_x16() -> None:
    assert get_board("u250").pcie_bandwidth_gbs == pytest.approx(15.75)


def test_available_resources_leave_the_shell_share() -> None:
    u250 = get_board("u250")
    assert u250.available()["dsp"] == int(12_288 * 0.8)


def test_unknown_board_names_the_known_ones() -> None:
    with pytest.raises(UnknownBoard, match="kv260"):
        get_board("zcu102")
