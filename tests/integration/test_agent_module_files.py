"""A module's files are its own copies inside its own directory, and its secrets stay off the
command line: a real agent (in a thread), Mosquitto, the artifact server and fake module processes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import psutil
import pytest

from edgefleet.protocol import sha256_file
from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.models import SignedManifest, utcnow
from tests.integration.test_agent_reconcile import RunningAgent, env, fast_settings, get_json, healthy, spec
from tests.support.agent_harness import TestHub, module_pids
from tests.support.artifact_server import ArtifactServer
from tests.support.processes import Mosquitto

__all__ = ["env"]  # the fixture, shared with the reconcile tests

SCORE = b"def init():\n    pass\n\ndef run(raw):\n    return raw\n"
MODEL = b"onnx-model-bytes" * 2000
PRIMARY, SECONDARY = "primary-key-0123456789abcdef", "secondary-key-0123456789abcdef"


def _workdir(data_dir: Path, module: str) -> Path:
    (found,) = [p for p in (data_dir / "modules" / module).iterdir() if not p.name.startswith(".")]
    return found


def _publish_raw(hub: TestHub, generation: int, modules: list[dict[str, Any]]) -> None:
    """A manifest the hub signed, as it is: not validated here, as a broken or hostile hub's would not be."""
    body = {
        "schemaVersion": 1,
        "deviceId": hub.device_id,
        "generation": generation,
        "issuedAt": utcnow().isoformat(),
        "modules": modules,
    }
    signed = SignedManifest(manifest=body, signature=hub.key.sign(canonical_json(body)), key_id=hub.key.key_id)
    hub.publish_raw(signed.model_dump_json(by_alias=True).encode())


def test_a_module_that_overwrites_its_files_cannot_change_the_next_deployment(
    env: tuple[TestHub, ArtifactServer], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    hub, artifacts = env
    score = artifacts.add("score.py", SCORE, path="src/score.py")
    model = artifacts.add("model.onnx", MODEL, path="model/model.onnx")
    data_dir = tmp_path / "agent"
    running = RunningAgent(fast_settings(hub.device_id, mosquitto, data_dir, hub.key.public_key_b64))
    try:
        writer = spec(
            "writer",
            [score, model],
            entryScript="score.py",
            env={"FAKE_MODULE_OVERWRITE": "src/score.py,model/model.onnx"},
        )
        hub.publish(1, [writer])
        hub.wait_report(healthy("writer", 1), what="writer Healthy")
        written = _workdir(data_dir, "writer")
        assert (written / "src" / "score.py").read_bytes() == b"tampered"  # it did write its own files
        assert (written / "model" / "model.onnx").read_bytes() == b"tampered"
        blobs = data_dir / "cache" / "blobs"
        for ref in (score, model):  # the cache still holds what the manifest signed
            blob = blobs / ref.digest.split(":")[1]
            assert sha256_file(blob) == ref.digest
            assert blob.stat().st_ino not in {p.stat().st_ino for p in written.rglob("*") if p.is_file()}

        reader = spec("reader", [score, model], entryScript="score.py", resources={"memoryInGB": 0.25})
        hub.publish(2, [writer, reader])
        report = hub.wait_report(healthy("reader", 2), what="reader Healthy")
        fresh = _workdir(data_dir, "reader")
        assert (fresh / "src" / "score.py").read_bytes() == SCORE
        assert (fresh / "model" / "model.onnx").read_bytes() == MODEL
        # the request limit follows the memory limit: 1/16 of 256 MiB
        endpoint = next(m.endpoint for m in report.modules if m.name == "reader")
        assert get_json(f"{endpoint}/info")["args"]["max_request_bytes"] == str(16 << 20)
    finally:
        running.stop()


def test_files_named_outside_the_module_are_refused_and_running_modules_stay(
    env: tuple[TestHub, ArtifactServer], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    hub, artifacts = env
    score = artifacts.add("score.py", SCORE, path="src/score.py")
    data_dir = tmp_path / "agent"
    running = RunningAgent(fast_settings(hub.device_id, mosquitto, data_dir, hub.key.public_key_b64))
    try:
        keeper = spec("keeper", [score], entryScript="score.py")
        hub.publish(1, [keeper])
        hub.wait_report(healthy("keeper", 1), what="keeper Healthy")
        (pid,) = module_pids(hub.device_id, "keeper")
        good = keeper.to_wire()
        outside = tmp_path / "outside"
        outside.mkdir()
        attempts = [
            ({"entryScript": "/etc/passwd"}, "entryScript must be a relative path"),
            ({"entryScript": "../../../../etc/passwd"}, "entryScript must be a relative path"),
            ({"entryScript": "other.py"}, "entryScript 'other.py' is not one of its src/ artifacts"),
            ({"artifacts": [{**score.to_wire(), "path": "src/../../escape.py"}]}, "artifact path must be a relative"),
            ({"artifacts": [{**score.to_wire(), "path": "/tmp/escape.py"}]}, "artifact path must be a relative"),
            ({"artifacts": [{**score.to_wire(), "path": "instance.json"}]}, "artifact path must lie under"),
        ]
        for generation, (change, reason) in enumerate(attempts, start=2):
            bad = {**good, "name": "intruder", "service": "intruder", **change}
            _publish_raw(hub, generation, [good, bad])
            report = hub.wait_report(lambda r, why=reason: why in (r.rejected or ""), what=f"rejected: {reason}")
            assert report.generation == 1 and "signed but invalid" in (report.rejected or "")
            assert module_pids(hub.device_id, "keeper") == [pid]  # undisturbed
        assert not (data_dir / "modules" / "intruder").exists()
        assert list(outside.iterdir()) == []

        # a symlink where the new module's directory goes: refused with the reason, nothing written through it
        (data_dir / "modules" / "linked").symlink_to(outside, target_is_directory=True)
        linked = spec("linked", [score], entryScript="score.py")
        hub.publish(len(attempts) + 2, [keeper, linked])
        report = hub.wait_report(
            lambda r: any(m.name == "linked" and "symlink" in m.message for m in r.modules), what="linked refused"
        )
        message = next(m.message for m in report.modules if m.name == "linked")
        assert str(data_dir / "modules" / "linked") in message
        assert list(outside.iterdir()) == []
        assert module_pids(hub.device_id, "keeper") == [pid]
        assert next(m for m in report.modules if m.name == "keeper").state.value == "Healthy"
    finally:
        running.stop()


def test_scoring_keys_reach_the_module_by_environment_only(
    env: tuple[TestHub, ArtifactServer], mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub, artifacts = env
    model = artifacts.add("model.onnx", MODEL, path="model/model.onnx")
    data_dir = tmp_path / "agent"
    running = RunningAgent(fast_settings(hub.device_id, mosquitto, data_dir, hub.key.public_key_b64))
    try:
        keyed = spec("keyed", [model], auth={"primaryKey": PRIMARY, "secondaryKey": SECONDARY})
        hub.publish(1, [keyed])
        report = hub.wait_report(healthy("keyed", 1), what="keyed Healthy")
        endpoint = next(m.endpoint for m in report.modules if m.name == "keyed")
        assert get_json(f"{endpoint}/info")["keysSet"] == ["EDGEFLEET_PRIMARY_KEY", "EDGEFLEET_SECONDARY_KEY"]
        (pid,) = module_pids(hub.device_id, "keyed")
        cmdline = " ".join(psutil.Process(pid).cmdline())  # what `ps` shows every user
        assert PRIMARY not in cmdline and SECONDARY not in cmdline
        record = _workdir(data_dir, "keyed") / "instance.json"
        state = data_dir / "state.json"
        for holder in (record, state):  # files holding the spec are the agent's user's alone
            assert stat.S_IMODE(holder.stat().st_mode) == 0o600, holder
        assert PRIMARY in json.dumps(json.loads(record.read_text()))
        logged = caplog.text + "".join(str(r.args) for r in caplog.records)
        assert PRIMARY not in logged and SECONDARY not in logged
        assert PRIMARY not in json.dumps(report.to_wire())
        assert os.environ.get("EDGEFLEET_PRIMARY_KEY") is None
    finally:
        running.stop()
