"""Settings precedence and validation, module command line, status-file parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgefleet.agent.errors import SettingsError
from edgefleet.agent.runtime.base import read_status_file
from edgefleet.agent.runtime.process import module_command
from edgefleet.agent.settings import load_settings
from edgefleet.protocol import ModuleSpec


def test_flags_beat_environment_beat_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text('device_id = "from-file"\nhub_url = "http://file:1"\nbroker_url = "mqtt://file:1883"\n')
    monkeypatch.setenv("EDGEFLEET_AGENT_HUB_URL", "http://env:2/")
    monkeypatch.setenv("EDGEFLEET_AGENT_LABELS", '{"site": "lab"}')
    s = load_settings(cfg, device_id="dev-9", hub_url=None)
    assert (s.device_id, s.hub_url, s.broker_url, s.labels) == (
        "dev-9",
        "http://env:2",
        "mqtt://file:1883",
        {"site": "lab"},
    )
    assert s.broker_host == "file" and s.broker_port == 1883
    assert s.resolved_data_dir == (Path(".edgefleet") / "agent" / "dev-9").resolve()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"device_id": "bad/id"}, "invalid device id"),
        ({"device_id": "d", "broker_url": "http://x"}, "broker URL must look like mqtt://"),
        ({"device_id": "d", "port_range": (5000, 10)}, "port_range"),
        ({"device_id": "d", "typo_setting": 1}, "typo_setting"),
    ],
)
def test_invalid_settings_say_what_and_where(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(None, **overrides)


def test_unreadable_settings_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"missing\.json"):
        load_settings(tmp_path / "missing.json", device_id="d")


def test_module_command_carries_the_contract_and_the_adoption_marks() -> None:
    spec = ModuleSpec.model_validate(
        {
            "name": "digits",
            "service": "s",
            "models": [{"name": "digits-model", "version": 2}],
            "entryScript": "score.py",
            "accelerator": {"prefer": ["fpga", "opencl", "cpu"], "required": True},
        }
    )
    cmd = module_command(
        ["py", "-m", "edgefleet.modules.scoring"],
        spec,
        device_id="dev-1",
        spec_hash="abc",
        port=2000,
        workdir=Path("/w"),
    )
    assert cmd == [
        "py", "-m", "edgefleet.modules.scoring", "--model-dir", "/w/model", "--source-dir", "/w/src",
        "--entry-script", "score.py", "--name", "digits-model", "--port", "2000", "--host", "127.0.0.1",
        "--accelerator", "fpga,opencl,cpu", "--accelerator-required", "--status-file", "/w/status.json",
        "--edgefleet-device", "dev-1", "--edgefleet-module", "digits", "--edgefleet-spec", "abc",
    ]  # fmt: skip


def test_status_file_parsing_tolerates_partial_writes(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    assert read_status_file(path) is None
    path.write_text('{"state": "Rea')
    assert read_status_file(path) is None
    path.write_text(
        json.dumps(
            {
                "state": "Ready",
                "backend": "opencl",
                "backendReason": "fastest",
                "backendTimingsMs": {"cpu": 2, "opencl": 1},
                "pid": 5,
            }
        )
    )
    status = read_status_file(path)
    assert (
        status is not None and status.backend == "opencl" and status.backend_timings_ms == {"cpu": 2.0, "opencl": 1.0}
    )


def test_hub_key_configured_pinned_or_unavailable(tmp_path: Path) -> None:
    from edgefleet.agent.errors import HubKeyUnavailable
    from edgefleet.agent.hubkey import resolve_hub_key
    from edgefleet.protocol import HubKey

    key = HubKey.generate().public_key_b64
    assert resolve_hub_key(key, tmp_path, "http://127.0.0.1:9") == key
    with pytest.raises(SettingsError, match="hub_public_key"):
        resolve_hub_key("not-a-key", tmp_path, "http://127.0.0.1:9")
    with pytest.raises(HubKeyUnavailable, match=r"127\.0\.0\.1:9/api/v1/hub"):
        resolve_hub_key(None, tmp_path, "http://127.0.0.1:9", timeout_s=2)
    (tmp_path / "hub-key.json").write_text(json.dumps({"publicKey": key}))
    assert resolve_hub_key(None, tmp_path, "http://127.0.0.1:9") == key  # pinned: the hub is not asked
