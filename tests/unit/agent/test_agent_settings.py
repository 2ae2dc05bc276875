"""Settings precedence, groups, environment names and validation; module command line, status-file parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgefleet.agent.errors import SettingsError
from edgefleet.agent.runtime.base import read_status_file
from edgefleet.agent.runtime.process import module_command
from edgefleet.agent.settings import (
    ENV_PREFIX,
    GROUPS,
    LEGACY_NAMES,
    AgentSettings,
    environment_names,
    environment_settings,
    load_settings,
)
from edgefleet.protocol import ModuleSpec


def test_flags_beat_environment_beat_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text('device_id = "from-file"\nhub_url = "http://file:1"\nbroker_url = "mqtt://file:1883"\n')
    monkeypatch.setenv("EDGEFLEET_AGENT_HUB_URL", "http://env:2/")
    monkeypatch.setenv("EDGEFLEET_AGENT_LABELS", '{"site": "lab"}')
    s = load_settings(cfg, device_id="dev-9", hub_url=None)
    assert (s.device_id, s.hub_url, s.mqtt.broker_url, s.labels) == (
        "dev-9",
        "http://env:2",
        "mqtt://file:1883",
        {"site": "lab"},
    )
    assert s.mqtt.host == "file" and s.mqtt.port == 1883
    assert s.resolved_data_dir == (Path(".edgefleet") / "agent" / "dev-9").resolve()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"device_id": "bad/id"}, "invalid device id"),
        ({"device_id": "d", "broker_url": "http://x"}, "broker URL must look like mqtt://"),
        ({"device_id": "d", "port_range": (5000, 10)}, "port_range"),
        ({"device_id": "d", "modules": {"port_range": (5000, 10)}}, "port_range"),
        ({"device_id": "d", "typo_setting": 1}, "typo_setting"),
        ({"device_id": "d", "restart": {"max_restart": 1}}, r"restart\.max_restart"),
        (
            {"device_id": "d", "max_restarts": 1, "restart": {"max_restarts": 2}},
            "max_restarts and restart.max_restarts",
        ),
    ],
)
def test_invalid_settings_say_what_and_where(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(None, **overrides)


def test_unreadable_settings_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"missing\.json"):
        load_settings(tmp_path / "missing.json", device_id="d")


def test_groups_from_a_file_the_environment_and_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        'device_id = "dev-1"\n[restart]\nmax_restarts = 5\nbackoff_base_s = 2.5\n[cache]\nmax_bytes = 1000\n'
    )
    monkeypatch.setenv("EDGEFLEET_AGENT_RESTART__MAX_RESTARTS", "7")  # beats the file, group by group
    monkeypatch.setenv("EDGEFLEET_AGENT_MODULES__COMMAND", '["python3", "-m", "mine"]')
    monkeypatch.setenv("EDGEFLEET_AGENT_REPORTING", '{"heartbeat_s": 9, "telemetry_interval_s": 4}')
    s = load_settings(cfg, mqtt={"broker_url": "mqtt://flag:1"}, modules={"stop_on_exit": True, "docker_url": None})
    assert (s.restart.max_restarts, s.restart.backoff_base_s, s.restart.backoff_max_s) == (7, 2.5, 300.0)
    assert s.cache.max_bytes == 1000 and s.modules.command == ["python3", "-m", "mine"]
    assert (s.reporting.heartbeat_s, s.reporting.telemetry_interval_s) == (9.0, 4.0)
    assert s.mqtt.broker_url == "mqtt://flag:1" and s.modules.stop_on_exit and s.modules.docker_url is None


LEGACY = [
    ("BROKER_URL", "mqtt://old:1883", ("mqtt", "broker_url"), "mqtt://old:1883"),
    ("MODULE_COMMAND", '["py", "m.py"]', ("modules", "command"), ["py", "m.py"]),
    ("STOP_MODULES_ON_EXIT", "true", ("modules", "stop_on_exit"), True),
    ("MAX_RESTARTS", "3", ("restart", "max_restarts"), 3),
    ("STEP_RETRY_BASE_S", "0.25", ("retry", "base_s"), 0.25),
    ("ROLLBACK_WINDOW_S", "2", ("rollback", "window_s"), 2.0),
    ("REPORT_HEARTBEAT_S", "5", ("reporting", "heartbeat_s"), 5.0),
    ("CACHE_MAX_BYTES", "40000", ("cache", "max_bytes"), 40000),
    ("HTTP_TIMEOUT_S", "12", ("cache", "download_timeout_s"), 12.0),
    ("DISCOVERY_COMMAND", '["true"]', ("discovery", "command"), ["true"]),
    ("FPGA_SIM", "kv260", ("discovery", "fpga_sim"), "kv260"),
]


@pytest.mark.parametrize(("name", "raw", "path", "value"), LEGACY, ids=[case[0] for case in LEGACY])
def test_older_flat_names_keep_working(
    name: str, raw: str, path: tuple[str, str], value: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_PREFIX + name, raw)
    from_env = load_settings(None, device_id="d")
    assert getattr(getattr(from_env, path[0]), path[1]) == value
    monkeypatch.delenv(ENV_PREFIX + name)
    cfg = tmp_path / "old.json"
    cfg.write_text(json.dumps({"device_id": "d", name.lower(): json.loads(raw) if raw[0] in "[" else raw}))
    from_file = load_settings(cfg)
    assert getattr(getattr(from_file, path[0]), path[1]) == value
    assert AgentSettings(device_id="d", **{name.lower(): value}) == from_env  # in code, too


def test_every_older_name_maps_to_a_setting() -> None:
    for old, (group, name) in LEGACY_NAMES.items():
        assert name in GROUPS[group].model_fields, old


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"EDGEFLEET_AGENT_MAX_RESTART": "3"}, r"EDGEFLEET_AGENT_MAX_RESTART: not an agent setting \(did you mean "),
        ({"EDGEFLEET_AGENT_RESTART__MAX": "3"}, "EDGEFLEET_AGENT_RESTART__MAX: not an agent setting"),
        ({"EDGEFLEET_AGENT_RESTART": "3"}, "EDGEFLEET_AGENT_RESTART: a group of settings, give it as a JSON object"),
        ({"EDGEFLEET_AGENT_LABELS": "{oops"}, "EDGEFLEET_AGENT_LABELS: not valid JSON"),
        (
            {"EDGEFLEET_AGENT_MAX_RESTARTS": "3", "EDGEFLEET_AGENT_RESTART__MAX_RESTARTS": "4"},
            "EDGEFLEET_AGENT_MAX_RESTARTS and EDGEFLEET_AGENT_RESTART__MAX_RESTARTS are the same setting",
        ),
    ],
    ids=["typo", "unknown-in-a-group", "group-not-json", "bad-json", "given-twice"],
)
def test_environment_mistakes_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        environment_settings(environ)


def test_a_near_miss_is_suggested_and_a_lenient_read_skips_unknown_names() -> None:
    with pytest.raises(SettingsError, match="did you mean EDGEFLEET_AGENT_RESTART__MAX_RESTARTS"):
        environment_settings({"EDGEFLEET_AGENT_RESTART__MAX_RESTART": "3"})
    assert environment_settings({"EDGEFLEET_AGENT_NOPE": "1", "OTHER": "x"}, strict=False) == {}


def test_readme_documents_every_setting_with_its_environment_variable() -> None:
    readme = (Path(__file__).resolve().parents[3] / "agent" / "README.md").read_text()
    rows = [line.split("|")[1:-1] for line in readme.splitlines() if line.startswith("| ") and "_AGENT_" in line]
    documented = {cells[4].strip().strip("`") for cells in rows}
    assert documented == set(environment_names())
    older = {cells[5].strip().strip("`") for cells in rows} - {""}
    assert older == set(LEGACY_NAMES)
    for cells in rows:
        group, name, env = (c.strip().strip("`") for c in (cells[0], cells[1], cells[4]))
        assert env == ENV_PREFIX + (f"{group}__{name}" if group else name).upper()


def test_module_command_carries_the_contract_and_the_adoption_marks() -> None:
    spec = ModuleSpec.model_validate(
        {
            "name": "digits",
            "service": "s",
            "models": [{"name": "digits-model", "version": 2}],
            "entryScript": "score.py",
            "artifacts": [{"path": "src/score.py", "digest": "sha256:" + "0" * 64, "size": 1, "url": "http://h/b"}],
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
        "--accelerator", "fpga,opencl,cpu", "--max-request-bytes", str(64 << 20), "--accelerator-required",
        "--status-file", "/w/status.json",
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


def test_hub_key_configured_pinned_or_refused_without_a_fingerprint(tmp_path: Path) -> None:
    from edgefleet.agent.errors import HubKeyUnavailable
    from edgefleet.agent.hubkey import resolve_hub_key
    from edgefleet.protocol import HubKey

    hub_key = HubKey.generate()
    key = hub_key.public_key_b64
    assert resolve_hub_key(key, tmp_path, "http://127.0.0.1:9") == key
    with pytest.raises(SettingsError, match="hub_public_key"):
        resolve_hub_key("not-a-key", tmp_path, "http://127.0.0.1:9")
    # no key, nothing pinned, no fingerprint: never trust whoever answers the hub URL
    with pytest.raises(SettingsError, match=r"no hub key: start the agent with --bootstrap FILE"):
        resolve_hub_key(None, tmp_path, "http://127.0.0.1:9", timeout_s=2)
    with pytest.raises(SettingsError, match=r"expected sha256:<64 hex digits>"):
        resolve_hub_key(None, tmp_path, "http://127.0.0.1:9", fingerprint="sha256:abc")
    with pytest.raises(HubKeyUnavailable, match=r"127\.0\.0\.1:9/api/v1/hub"):  # asked, not there yet: retried
        resolve_hub_key(None, tmp_path, "http://127.0.0.1:9", timeout_s=2, fingerprint=hub_key.fingerprint)
    (tmp_path / "hub-key.json").write_text(json.dumps({"publicKey": key}))
    assert resolve_hub_key(None, tmp_path, "http://127.0.0.1:9") == key  # pinned: the hub is not asked
