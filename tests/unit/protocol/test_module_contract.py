"""The agent <-> module contract: the status file's wire form, how the agent reads a file it cannot
trust yet, exit codes, and the flag and environment names both sides use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgefleet.protocol.module import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNSCHEDULABLE,
    MARK_DEVICE,
    MARK_MODULE,
    MARK_PREFIX,
    MARK_SPEC,
    OPEN_ROUTES,
    ModuleOption,
    ModuleRunState,
    ModuleSecret,
    ModuleStatusFile,
    max_request_bytes_for,
    probe_address,
    read_status_file,
    url_host,
    write_status_file,
)


def test_status_round_trips_through_the_file_in_camel_case(tmp_path: Path) -> None:
    status = ModuleStatusFile(
        state=ModuleRunState.READY,
        message="serving no-code, model digits.onnx on opencl",
        backend="opencl",
        backend_reason="fastest verified",
        backend_timings_ms={"cpu": 2.5, "opencl": 1.0},
        pid=123,
        port=5001,
    )
    path = tmp_path / "run" / "status.json"
    write_status_file(path, status)
    assert json.loads(path.read_text()) == {
        "state": "Ready",
        "message": "serving no-code, model digits.onnx on opencl",
        "backend": "opencl",
        "backendReason": "fastest verified",
        "backendTimingsMs": {"cpu": 2.5, "opencl": 1.0},
        "pid": 123,
        "port": 5001,
    }
    assert read_status_file(path) == status
    assert [p.name for p in path.parent.iterdir()] == ["status.json"]  # no temporary file left behind


def test_a_minimal_file_reads_with_defaults_and_unknown_fields_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    path.write_text(json.dumps({"state": "Starting", "port": 7, "fromANewerModule": {"x": 1}}))
    assert read_status_file(path) == ModuleStatusFile(state=ModuleRunState.STARTING, port=7)
    path.write_text(json.dumps({"state": "Ready", "backendTimingsMs": {"cpu": 2}, "pid": 5}))
    status = read_status_file(path)
    assert status is not None and status.backend_timings_ms == {"cpu": 2.0} and status.message == ""


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(None, id="absent"),
        pytest.param("", id="empty"),
        pytest.param('{"state": "Rea', id="half-written"),
        pytest.param("[1, 2]", id="not-an-object"),
        pytest.param('{"state": "Healthy"}', id="unknown-state"),
        pytest.param('{"state": "Ready", "pid": "many"}', id="wrong-type"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
    ],
)
def test_a_file_that_is_not_a_valid_status_reads_as_not_yet(tmp_path: Path, content: str | bytes | None) -> None:
    path = tmp_path / "status.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert read_status_file(path) is None


def test_a_directory_in_place_of_the_file_reads_as_not_yet(tmp_path: Path) -> None:
    (tmp_path / "status.json").mkdir()
    assert read_status_file(tmp_path / "status.json") is None


def test_states_and_exit_codes_agree() -> None:
    assert (EXIT_OK, EXIT_FAILED, EXIT_UNSCHEDULABLE) == (0, 1, 78)
    assert [s.value for s in ModuleRunState] == ["Starting", "Ready", "Unschedulable", "Failed"]
    assert {s: s.exit_code for s in ModuleRunState} == {
        ModuleRunState.STARTING: EXIT_OK,
        ModuleRunState.READY: EXIT_OK,
        ModuleRunState.UNSCHEDULABLE: EXIT_UNSCHEDULABLE,
        ModuleRunState.FAILED: EXIT_FAILED,
    }
    assert ModuleRunState.UNSCHEDULABLE == "Unschedulable"  # a str enum: plain strings compare equal


def test_flag_and_environment_names_are_the_ones_modules_and_images_know() -> None:
    assert {o.flag: o.env for o in ModuleOption} == {
        "--model-dir": "EDGEFLEET_MODEL_DIR",
        "--source-dir": "EDGEFLEET_SOURCE_DIR",
        "--entry-script": "EDGEFLEET_ENTRY_SCRIPT",
        "--name": "EDGEFLEET_MODEL_NAME",
        "--version": "EDGEFLEET_MODEL_VERSION",
        "--host": "EDGEFLEET_HOST",
        "--port": "EDGEFLEET_PORT",
        "--accelerator": "EDGEFLEET_ACCELERATOR_PREFER",
        "--accelerator-required": "EDGEFLEET_ACCELERATOR_REQUIRED",
        "--status-file": "EDGEFLEET_STATUS_FILE",
        "--max-request-bytes": "EDGEFLEET_MAX_REQUEST_BYTES",
        "--log-level": "EDGEFLEET_LOG_LEVEL",
        "--tls-cert": "EDGEFLEET_TLS_CERT",
        "--tls-key": "EDGEFLEET_TLS_KEY",
        "--cpu": "EDGEFLEET_CPU",
    }
    assert ModuleOption.ACCELERATOR_REQUIRED.dest == "accelerator_required"
    marks = (MARK_DEVICE, MARK_MODULE, MARK_SPEC)
    assert marks == ("--edgefleet-device", "--edgefleet-module", "--edgefleet-spec")
    assert all(m.startswith(MARK_PREFIX) for m in marks)
    assert not any(o.flag.startswith(MARK_PREFIX) for o in ModuleOption)  # a module ignores marks, never options


def test_secrets_have_an_environment_name_and_no_flag() -> None:
    assert [s.env for s in ModuleSecret] == ["EDGEFLEET_PRIMARY_KEY", "EDGEFLEET_SECONDARY_KEY"]
    assert not {s.env for s in ModuleSecret} & {o.env for o in ModuleOption}
    assert {"/", "/v2/health/live", "/v2/health/ready"} == OPEN_ROUTES  # what the agent probes without a key


@pytest.mark.parametrize(
    ("memory_gb", "limit"),
    [
        (None, 64 << 20),  # no memory limit: the default
        (4.0, 64 << 20),  # 1/16 would be 256 MiB: capped by the default
        (1.0, 64 << 20),  # exactly the default
        (0.5, 32 << 20),
        (0.25, 16 << 20),
        (0.0001, 64 << 10),  # at least 64 KiB
    ],
)
def test_the_request_limit_is_a_sixteenth_of_the_memory_limit_capped_by_the_default(
    memory_gb: float | None, limit: int
) -> None:
    assert max_request_bytes_for(memory_gb) == limit


def test_probe_address_reaches_a_wildcard_listener_on_loopback() -> None:
    assert probe_address("127.0.0.1") == "127.0.0.1"
    assert probe_address("0.0.0.0") == "127.0.0.1"
    assert probe_address("::") == "::1"
    assert probe_address("192.168.7.2") == "192.168.7.2"
    assert url_host("::1") == "[::1]" and url_host("10.0.0.1") == "10.0.0.1"
