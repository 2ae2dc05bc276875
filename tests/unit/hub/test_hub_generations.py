from __future__ import annotations

from typing import Any

import pytest

from edgefleet.hub.server.generations import next_generation, report_refused
from edgefleet.protocol.models import MAX_GENERATION

A: list[dict[str, Any]] = [{"name": "a"}]
B: list[dict[str, Any]] = [{"name": "b"}]


@pytest.mark.parametrize(
    ("published", "published_modules", "rendered", "reported", "expected"),
    [
        (None, None, [], 0, None),  # idle device, nothing ever published
        (None, None, A, 0, 1),  # first manifest
        (None, None, A, 7, 8),  # device already accepted 7 from a hub that lost its database
        (3, A, A, 3, None),  # identical re-render: no new generation
        (3, A, A, 2, None),  # device still converging: nothing new to say
        (3, A, B, 3, 4),  # change
        (3, A, [], 3, 4),  # last service removed: an empty manifest
        (3, A, A, 9, 10),  # device ahead of the hub (first heard after a blind manifest): publish past it
        (3, A, B, MAX_GENERATION - 1, MAX_GENERATION),  # the last generation there is
        (3, A, B, MAX_GENERATION, None),  # at the cap: nothing past it is ever signed
        (MAX_GENERATION, A, B, 3, None),
    ],
)
def test_next_generation(
    published: int | None,
    published_modules: list[dict[str, Any]] | None,
    rendered: list[dict[str, Any]],
    reported: int,
    expected: int | None,
) -> None:
    assert next_generation(published, published_modules, rendered, reported) == expected


@pytest.mark.parametrize(
    ("published", "published_modules", "rendered", "reported", "expected"),
    [
        (None, None, [], 0, 1),  # idle device: an empty manifest carries the announcement
        (3, A, A, 3, 4),  # same modules, re-signed
        (3, A, A, 9, 10),  # past what the device reports
    ],
)
def test_a_key_rotation_re_signs_even_unchanged_modules(
    published: int | None,
    published_modules: list[dict[str, Any]] | None,
    rendered: list[dict[str, Any]],
    reported: int,
    expected: int,
) -> None:
    assert next_generation(published, published_modules, rendered, reported, resign=True) == expected


@pytest.mark.parametrize(
    ("issued", "heard_before", "reported", "refused"),
    [
        (None, False, 7, False),  # nothing issued: the hub lost its database, or the device ran under another hub
        (None, True, 7, False),  # ...also when it reported before (to this hub, while there was nothing to run)
        (1, False, 7, False),  # a manifest issued blind at registration, before its first report: catch up
        (1, False, MAX_GENERATION, False),  # the same (next_generation then stops at the cap)
        (3, True, 2, False),  # behind: still converging
        (3, True, 3, False),  # took what the hub issued
        (3, True, 4, True),  # one past what the hub ever issued: forged, or a database from an older backup
        (3, True, MAX_GENERATION, True),  # a made-up number, to make the hub sign up to the cap
    ],
)
def test_report_refused(issued: int | None, heard_before: bool, reported: int, refused: bool) -> None:
    assert report_refused(issued, heard_before, reported) is refused
