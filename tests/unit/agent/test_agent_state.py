"""State file: round trip, atomic replacement, damaged file kept aside."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgefleet.agent.state import AgentState, RestartRecord, StateStore
from edgefleet.protocol.files import write_atomic


def test_round_trip(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json")
    assert store.load() == AgentState()
    state = AgentState(
        generation=7,
        signed_manifest={"manifest": {"generation": 7}, "signature": "x", "keyId": "k"},
        last_known_good=6,
        ports={"digits": 20001},
        restarts={"digits": RestartRecord(count=2, last_restart_at=5.0)},
    )
    store.save(state)
    assert StateStore(tmp_path / "state.json").load() == state


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    write_atomic(path, b"old")

    def crash(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_save_error_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgefleet.agent.errors import StateError

    monkeypatch.setattr(os, "fsync", lambda _fd: (_ for _ in ()).throw(OSError("EIO")))
    with pytest.raises(StateError, match=r"state\.json.*EIO"):
        StateStore(tmp_path / "state.json").save(AgentState())


def test_damaged_file_is_kept_aside_and_state_starts_fresh(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    assert StateStore(path).load() == AgentState()
    assert (tmp_path / "state.broken").read_text() == "{not json"
