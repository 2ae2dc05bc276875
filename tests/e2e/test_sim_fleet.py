"""`edgefleet-sim fleet` brings up simulated devices that the hub sees like real ones."""

from __future__ import annotations

import os
import signal
import subprocess

from tests.e2e.conftest import BIN, Fleet
from tests.support.processes import wait_for


def test_sim_fleet_devices_report_labels_and_simulated_fpga(fleet: Fleet) -> None:
    proc = subprocess.Popen(
        [str(BIN / "edgefleet-sim"), "fleet", "--devices", "2", "--prefix", "sim-", "--hub", fleet.hub_url,
         "--broker", fleet.broker.url, "--fpga", "kv260", "--fpga-every", "2", "--label", "site=lab",
         "--workdir", str(fleet.workdir / "sim")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "EDGEFLEET_TOKEN": fleet.token},  # it registers its devices, as an admin
    )  # fmt: skip
    try:

        def reported() -> dict[str, dict] | None:
            devices = {d["deviceId"]: d for d in fleet.cli_json("device", "list")}
            ready = all(
                (devices.get(i) or {}).get("lastReport", {}) and devices[i]["presence"] == "online"
                for i in ("sim-1", "sim-2")
            )
            # discovery runs once in the background at agent start: wait for its first result
            discovered = ready and any(
                a["kind"] == "fpga" for a in devices["sim-1"]["lastReport"]["capabilities"]["accelerators"]
            )
            return devices if discovered else None

        devices = wait_for(reported, timeout=60, what="simulated devices to report")
        caps = {i: devices[i]["lastReport"]["capabilities"] for i in ("sim-1", "sim-2")}
        # registered by the simulator with their labels: the hub's labels, over a TLS broker with identities
        assert devices["sim-1"]["labels"] == {"site": "lab", "sim": "true", "fpga": "kv260"}
        assert devices["sim-2"]["labels"] == {"site": "lab", "sim": "true"}
        assert devices["sim-1"]["credential"]["kind"] == "certificate"
        fpga = [a for a in caps["sim-1"]["accelerators"] if a["kind"] == "fpga"]
        assert fpga and fpga[0]["board"] == "kv260" and fpga[0]["simulated"] is True
        assert not [a for a in caps["sim-2"]["accelerators"] if a["kind"] == "fpga"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert "sim-1" in out and "kv260" in out
    wait_for(
        lambda: all(
            d["presence"] == "offline" for d in fleet.cli_json("device", "list") if d["deviceId"].startswith("sim-")
        ),
        timeout=30,
        what="simulated devices to go offline after Ctrl-C",
    )


def test_unknown_board_is_refused_before_anything_starts(fleet: Fleet) -> None:
    """And nothing is registered for it."""
    out = subprocess.run(
        [str(BIN / "edgefleet-sim"), "fleet", "--hub", fleet.hub_url, "--broker", fleet.broker.url, "--fpga", "nope"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 1 and "nope" in out.stderr
    assert fleet.cli_json("device", "list") == []
