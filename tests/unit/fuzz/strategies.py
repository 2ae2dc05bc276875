"""Hypothesis strategies for what arrives from the wire: valid messages, nearly valid ones, and noise.

Most bugs hide one edit away from a valid message (a field deleted, retyped, pushed past a bound,
a byte flipped), so every fuzzed payload starts from a real message of its kind and is mutated;
arbitrary JSON and arbitrary bytes are mixed in for the rest.

How many examples: ``examples(n)`` gives the few hundred of the default run, or 10,000 for the tests
marked ``slow`` (run them with ``pytest --slow`` or ``EDGEFLEET_SLOW=1``; see tests/conftest.py).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

DEFAULT_EXAMPLES = 300
SLOW_EXAMPLES = 10_000

# one default-run and one slow variant of each fuzz test
EXAMPLE_COUNTS = pytest.mark.parametrize(
    "examples",
    [pytest.param(DEFAULT_EXAMPLES, id="default"), pytest.param(SLOW_EXAMPLES, id="10k", marks=pytest.mark.slow)],
)


def fuzz_settings(examples: int) -> settings:
    # no deadline: the test machine is shared, and a slow example is not a failure
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# values chosen to sit on or past the edges the code has: integer widths, the JSON-safe maximum,
# SQLite's int64, time zones and the ends of datetime's range, wildcards and separators in ids
INTERESTING: list[Any] = [
    None, True, False, 0, -1, 1, 2**31, 2**53 - 1, 2**53, 2**63 - 2, 2**63 - 1, 2**63, 2**64, -(2**63) - 1,
    10**400, 0.5, -0.0, 1e308, float("nan"), float("inf"), float("-inf"), "", " ", "\n", "a\n", "x" * 5000,
    "\x00", "\ud800", "+", "#", "dev-1/x", "../..", "sha256:" + "0" * 64, "Healthy", "online",
    "2025-06-01T12:00:00Z", "2025-06-01T12:00:00", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+23:59",
    "1970-01-01T00:00:00Z", [], {}, [[]], {"": None},
]  # fmt: skip


def pick(values: list[Any]) -> st.SearchStrategy[Any]:
    """``sampled_from`` whose repr stays short (some values here are kilobytes long)."""
    return st.integers(0, len(values) - 1).map(values.__getitem__)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and infinities included
    st.text(max_size=16),
    pick(INTERESTING),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)


# the edges of a leaf's own type: a field rarely meets a value of another type in the wild, but
# often a number past its bound or a string with a newline in it
NUMBER_EDGES: list[Any] = [x for x in INTERESTING if isinstance(x, (int, float)) and not isinstance(x, bool)]
TEXT_EDGES: list[Any] = [x for x in INTERESTING if isinstance(x, str)]

NOISE = [
    b"", b"null", b"[" * 100_000, b'{"a":' * 100_000, b"\xff\xfe", b"online", b"offline", b"NaN",
    b'{"generation": 1' + b"0" * 5000 + b"}",  # past Python's 4300-digit int parsing limit
]  # fmt: skip


def _slots(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value (dict keys and list indexes)."""
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _slots(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _slots(v, (*prefix, i))
    return out


def _at(obj: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


@st.composite
def mutated(draw: st.DrawFn, original: Any, max_edits: int = 3) -> Any:
    """``original`` after 1 to ``max_edits`` edits: push a leaf to an edge of its own type (most
    often: one bad field among good ones gets past the first checks), delete, replace, retype, add
    a key, wrap."""
    obj = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, max_edits))):
        slots = _slots(obj)
        # a leaf, mostly, chosen by its type first: the few float fields among many strings get
        # their share of NaN and Infinity
        by_type: dict[type, list[tuple[Any, ...]]] = {}
        for slot in slots:
            if slot and not isinstance(_at(obj, slot), (dict, list)):
                by_type.setdefault(type(_at(obj, slot)), []).append(slot)
        if by_type and draw(st.integers(0, 2)):
            group = by_type[draw(st.sampled_from(sorted(by_type, key=lambda t: t.__name__)))]
            path = draw(st.sampled_from(group))
        else:
            path = draw(st.sampled_from(slots))
        if not path:  # the whole message
            obj = draw(st.one_of(json_values, st.just([obj]), st.just({"wrapped": obj})))
            continue
        parent, key = _at(obj, path[:-1]), path[-1]
        edit = draw(st.sampled_from(["edge", "edge", "edge", "delete", "replace", "interesting", "add", "wrap"]))
        if edit == "edge":
            parent[key] = draw(_edges_of(parent[key]))
        elif edit == "delete":
            del parent[key]
        elif edit == "replace":
            parent[key] = draw(json_values)
        elif edit == "interesting":
            parent[key] = draw(pick(INTERESTING))
        elif edit == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(json_values)
        elif edit == "add" and isinstance(parent, list):
            parent.append(draw(json_values))
        else:
            parent[key] = [parent[key]]
    return obj


FLOAT_EDGES: list[Any] = [float("nan"), float("inf"), float("-inf"), 1e308, -1e308, -0.0, -1.0, 2.0**63]
INT_EDGES: list[Any] = [-1, 0, 2**31, 2**53 - 1, 2**53, 2**63 - 2, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**400, 1.5]


def _edges_of(value: Any) -> st.SearchStrategy[Any]:
    if isinstance(value, bool) or value is None:
        return pick(INTERESTING)
    if isinstance(value, float):
        return pick(FLOAT_EDGES)
    if isinstance(value, int):
        return pick(INT_EDGES)
    if isinstance(value, str):
        return pick([*TEXT_EDGES, value + "\n", value + "/x", value * 50, value.upper()])
    return pick(INTERESTING)


def rarely(edges: st.SearchStrategy[Any], valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``valid``, one time in eight ``edges``: a message with one bad field among good ones
    is the one that gets past the first checks (a message bad everywhere is refused at once)."""
    return st.integers(0, 7).flatmap(lambda i: edges if i == 0 else valid)


edge_floats = pick(FLOAT_EDGES)
edge_ints = pick(INT_EDGES)
edge_texts = pick(TEXT_EDGES)


def to_bytes(obj: Any) -> bytes:
    """JSON as a careless peer writes it: NaN and Infinity included, lone surrogates escaped."""
    return json.dumps(obj, allow_nan=True).encode()


@st.composite
def byte_damage(draw: st.DrawFn, data: bytes) -> bytes:
    """Truncated, a byte flipped, or a byte inserted."""
    if not data:
        return data
    i = draw(st.integers(0, len(data) - 1))
    edit = draw(st.sampled_from(["truncate", "flip", "insert"]))
    if edit == "truncate":
        return data[:i]
    if edit == "flip":
        return data[:i] + bytes([data[i] ^ (1 << draw(st.integers(0, 7)))]) + data[i + 1 :]
    return data[:i] + bytes([draw(st.integers(0, 255))]) + data[i:]


def payloads(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Wire payloads around ``valid`` messages (JSON objects): mostly mutated, some damaged, some noise."""
    return st.one_of(
        valid.map(to_bytes),  # as sent
        valid.flatmap(lambda v: mutated(v, max_edits=1)).map(to_bytes),  # one edit from valid
        valid.flatmap(lambda v: mutated(v, max_edits=1)).map(to_bytes),
        valid.flatmap(mutated).map(to_bytes),  # a few edits
        valid.map(to_bytes).flatmap(byte_damage),  # damaged in transit
        json_values.map(to_bytes),  # some other JSON
        st.binary(max_size=64),  # noise
        pick(NOISE),
    )
