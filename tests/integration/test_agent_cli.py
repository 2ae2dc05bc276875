"""`edgefleet-agent accelerators` prints what discovery reports, and survives a failing discovery."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.agent_harness import REPO, agent_env

FPGA = {"kind": "fpga", "platform": "sim", "device": "board-a", "board": "edge-s", "computeUnits": 2, "simulated": True}


def run_cli(*args: str, discovery: list[str]) -> subprocess.CompletedProcess[str]:
    env = agent_env(discovery__command=discovery)
    return subprocess.run(
        [sys.executable, "-m", "agent", "accelerators", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_accelerators_table_and_json() -> None:
    discovery = [sys.executable, "-c", f"import json; print(json.dumps([{FPGA!r}]))"]
    table = run_cli(discovery=discovery)
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split()[:3] == ["KIND", "PLATFORM", "DEVICE"] and row.split()[:3] == ["fpga", "sim", "board-a"]
    as_json = run_cli("--output", "json", discovery=discovery)
    (item,) = json.loads(as_json.stdout)
    assert item["kind"] == "fpga" and item["board"] == "edge-s" and item["computeUnits"] == 2


def test_failing_discovery_reports_none() -> None:
    result = run_cli("--output", "json", discovery=[sys.executable, "-c", "raise SystemExit(3)"])
    assert result.returncode == 0 and json.loads(result.stdout) == []
    assert "exited with code 3" in result.stderr
