from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.docker_engine import EngineWithImage, docker_engine_fixture


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[EngineWithImage]:
    """A private dockerd for the whole session, with the busybox test image imported."""
    yield from docker_engine_fixture()
