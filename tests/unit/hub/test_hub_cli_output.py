"""The CLI's one output switch (table or JSON) and the readable forms of the API schemas."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from edgefleet.hub.cli.main import main
from edgefleet.hub.cli.output import FORMATS, Result, render, table
from edgefleet.hub.cli.tables import model_table, service_detail, short_time
from edgefleet.hub.schemas import DeviceServiceState, FileEntry, ModelView, ServiceView
from edgefleet.protocol.models import ModelRef, ModuleState

AT = datetime(2024, 5, 1, 12, 30, 45, 123456, tzinfo=timezone.utc)
MODEL = ModelView(
    name="digits",
    version=2,
    tags={"task": "digits"},
    created=AT,
    files=[FileEntry(path="m.onnx", digest="d", size=3000)],
)


def test_json_is_the_data_in_the_api_json_names_and_table_its_readable_form() -> None:
    result = Result(MODEL, lambda m: f"{m.name}:{m.version}")
    assert render(result, "table") == "digits:2"
    assert render(result, "json") == json.dumps(MODEL.model_dump(mode="json", by_alias=True), indent=2)
    assert json.loads(render(Result([MODEL], model_table), "json"))[0]["created"] == "2024-05-01T12:30:45.123456Z"
    assert json.loads(render(Result({"deleted": "svc"}, str), "json")) == {"deleted": "svc"}


def test_text_that_is_not_json_prints_as_it_is_in_either_format() -> None:
    for fmt in FORMATS:
        assert render(Result("plain answer", str), fmt) == "plain answer"


def test_table_pads_columns_and_prints_none_empty() -> None:
    assert table(["A", "LONGER"], [["xyz", None], [1, "b"]]) == "A    LONGER\nxyz\n1    b"
    assert table(["NAME", "STATE"], []) == "NAME  STATE"


def test_readable_forms_of_schemas() -> None:
    assert short_time(AT) == "2024-05-01 12:30:45" and short_time(None) == ""
    assert model_table([MODEL]).splitlines()[1].split() == ["digits", "2", "1", "2.9", "KiB", "task=digits", "2024-05-01",
                                                            "12:30:45"]  # fmt: skip
    service = ServiceView(
        name="svc",
        models=[ModelRef(name="digits", version=2)],
        created=AT,
        updated=AT,
        state=ModuleState.HEALTHY,
        reason="1 Healthy of 1 device(s)",
        target="any device",
        devices=[
            DeviceServiceState(device="dev-1", state=ModuleState.HEALTHY, endpoint="http://e", backend="cpu",
                               reason="cpu: verified", generation=3, desired_generation=3, online=True)
        ],
    )  # fmt: skip
    assert service_detail(service).splitlines() == [
        "service: svc",
        "state:   Healthy  (1 Healthy of 1 device(s))",
        "models:  digits:2",
        "entry:   (no-code)",
        "target:  any device",
        "DEVICE  STATE    ONLINE  GEN  DESIRED  ENDPOINT  BACKEND  MESSAGE",
        "dev-1   Healthy  yes     3    3        http://e  cpu",
        "backend choice (measured on each device when the module loaded):",
        "  dev-1: cpu: verified",
    ]


def test_user_errors_are_one_line_and_status_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "delete", "digits"]) == 1  # a delete names its version: "the latest" is no guess to delete
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "error: model reference 'digits': expected NAME:VERSION, e.g. digits:1\n"
    assert main(["model", "show", "digits:0"]) == 1  # refused before the CLI looks for a hub or a token
    assert capsys.readouterr().err == (
        "error: model reference 'digits:0': expected NAME or NAME:VERSION, e.g. digits (its latest version) or "
        "digits:1\n"
    )


def test_the_cli_loads_neither_the_server_nor_fastapi() -> None:
    probe = (
        "import sys, edgefleet.hub.cli.main, edgefleet.hub.cli.demo, edgefleet.hub.client\n"
        "edgefleet.hub.cli.main.build_parser()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('edgefleet.hub.server', 'fastapi', 'starlette',"
        " 'uvicorn', 'paho'))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
