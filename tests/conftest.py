from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import Mosquitto

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A real Mosquitto process on a free loopback port, private to the test."""
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def secure_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A real Mosquitto locked down by `edgefleet hub broker-config` for the hub in tmp_path/"hub":
    TLS, client certificates from that hub's CA, the generated ACL and CRL."""
    broker = Mosquitto(tmp_path / "mosquitto", hub_data_dir=tmp_path / "hub")
    broker.start()
    yield broker
    broker.stop()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow",
        action="store_true",
        help="also run the tests marked slow (as does EDGEFLEET_SLOW=1 in the environment)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` (the 10,000-example fuzz runs) are skipped unless asked for: ``pytest --slow`` or ``EDGEFLEET_SLOW=1 make test``."""
    if config.getoption("--slow") or os.environ.get("EDGEFLEET_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --slow or EDGEFLEET_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
