from __future__ import annotations

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
