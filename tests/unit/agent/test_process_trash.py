"""An agent killed while deleting an instance directory leaves trash, never a half-deleted instance."""

from __future__ import annotations

import json
from pathlib import Path

from edgefleet.agent.runtime.process import RECORD_FILE, TRASH_DIR, ProcessRuntime
from edgefleet.protocol import ModuleSpec


def test_trash_left_by_a_killed_agent_is_swept_and_never_adopted(tmp_path: Path) -> None:
    spec = ModuleSpec(name="web", service="web")
    half_deleted = tmp_path / TRASH_DIR / f"web-{spec.spec_hash()}-abcd1234"
    half_deleted.mkdir(parents=True)
    (half_deleted / RECORD_FILE).write_text(
        json.dumps({"module": "web", "specHash": spec.spec_hash(), "port": 20001, "spec": spec.to_wire()})
    )
    runtime = ProcessRuntime(tmp_path, "dev-trash", ["/bin/true"])
    assert runtime.list_instances() == []
    assert not (tmp_path / TRASH_DIR).exists()


def test_remove_leaves_no_instance_directory(tmp_path: Path) -> None:
    spec = ModuleSpec(name="web", service="web")
    runtime = ProcessRuntime(tmp_path, "dev-trash", ["/bin/true"])
    workdir = tmp_path / "web" / spec.spec_hash()
    (workdir / "model").mkdir(parents=True)
    iid = runtime.create(spec, spec.spec_hash(), 20002, workdir)
    runtime.remove(iid)
    assert not (tmp_path / "web").exists()
    assert not (tmp_path / TRASH_DIR).exists()
    assert runtime.list_instances() == []
