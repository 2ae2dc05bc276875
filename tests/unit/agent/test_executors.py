"""The executor table: one executor per step type, checked by mypy, dispatched by step type."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from edgefleet.agent.context import AgentContext
from edgefleet.agent.executors import Executors
from edgefleet.agent.plan import CreateModule, FetchArtifact, ProbeHealth, RemoveModule, StartModule, Step, StopModule
from edgefleet.protocol import ModuleSpec

REPO = Path(__file__).resolve().parents[3]
ONE_OF_EACH: dict[str, Step] = {  # table field -> a step of its type
    "fetch_artifact": FetchArtifact("sha256:" + "0" * 64, "http://h/a", 1),
    "create_module": CreateModule("m", "1", ModuleSpec(name="m", service="s")),
    "start_module": StartModule("m", "1"),
    "stop_module": StopModule("m", "m@1"),
    "remove_module": RemoveModule("m", "m@1"),
    "probe_health": ProbeHealth("m", "m@1", 20001, "/", 1.0),
}


def recording_table() -> tuple[Executors, list[tuple[str, Step]]]:
    calls: list[tuple[str, Step]] = []

    def recorder(name: str):  # type: ignore[no-untyped-def]
        return lambda step, _ctx: calls.append((name, step))

    return Executors(**{f.name: recorder(f.name) for f in dataclasses.fields(Executors)}), calls


def test_every_step_type_goes_to_its_own_executor() -> None:
    assert {type(s) for s in ONE_OF_EACH.values()} == set(typing.get_args(Step))  # each member of the union
    assert [f.name for f in dataclasses.fields(Executors)] == list(ONE_OF_EACH)
    table, calls = recording_table()
    for step in ONE_OF_EACH.values():
        table.run(step, typing.cast(AgentContext, object()))  # the recorders never touch the context
    assert calls == list(ONE_OF_EACH.items())


def test_a_step_outside_the_union_is_a_programming_error() -> None:
    @dataclasses.dataclass(frozen=True)
    class ResizeModule:
        module: str

    table, calls = recording_table()
    with pytest.raises(TypeError, match="no executor for step type ResizeModule"):
        table.run(ResizeModule("m"), typing.cast(AgentContext, object()))  # type: ignore[arg-type]
    assert calls == []


def test_a_table_without_an_executor_for_a_step_type_is_a_mypy_error(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    snippet = tmp_path / "table.py"
    snippet.write_text(
        "from edgefleet.agent.executors import (\n"
        "    Executors, create_module, fetch_artifact, remove_module, start_module, stop_module,\n"
        ")\n"
        "TABLE = Executors(fetch_artifact=fetch_artifact, create_module=create_module, start_module=start_module,\n"
        "                  stop_module=stop_module, remove_module=remove_module)\n"
    )
    out, err, status = api.run(["--config-file", str(REPO / "pyproject.toml"), str(snippet)])
    assert status == 1, out + err
    assert 'Missing positional argument "probe_health" in call to "Executors"' in out
