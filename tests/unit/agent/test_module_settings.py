"""What the agent tells a module from its spec, the same way in both runtimes: listen address, TLS
files, the request limit derived from the memory limit, and scoring keys by environment only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgefleet.agent.observed import Observed
from edgefleet.agent.plan import ProbeHealth, plan_steps
from edgefleet.agent.report import endpoint_of
from edgefleet.agent.runtime.base import module_environment_secrets
from edgefleet.agent.runtime.docker import CONTAINER_TLS_DIR, container_config
from edgefleet.agent.runtime.process import module_command
from edgefleet.protocol.models import DeviceManifest, ModuleSpec
from tests.unit.agent.test_plan import CTX, inst

PRIMARY, SECONDARY = "primary-key-0123456789abcdef", "secondary-key-0123456789abcdef"
AUTH = {"primaryKey": PRIMARY, "secondaryKey": SECONDARY}


def _spec(**fields: Any) -> ModuleSpec:
    return ModuleSpec.model_validate({"name": "svc", "service": "svc", **fields})


def _flag(cmd: list[str], flag: str) -> str | None:
    return cmd[cmd.index(flag) + 1] if flag in cmd else None


def test_the_command_line_carries_address_limit_and_tls_but_never_a_key() -> None:
    spec = _spec(
        listenAddress="0.0.0.0",
        resources={"memoryInGB": 0.25},
        tls={"certificate": "scoring.crt", "key": "scoring.key"},
        auth=AUTH,
    )
    cmd = module_command(["py"], spec, device_id="dev-1", spec_hash="h", port=2000, workdir=Path("/w"))
    assert _flag(cmd, "--host") == "0.0.0.0"
    assert _flag(cmd, "--max-request-bytes") == str(16 << 20)  # 1/16 of 256 MiB
    assert (_flag(cmd, "--tls-cert"), _flag(cmd, "--tls-key")) == ("/w/tls/cert.pem", "/w/tls/key.pem")
    assert not any(PRIMARY in a or SECONDARY in a for a in cmd)
    plain = module_command(["py"], _spec(), device_id="dev-1", spec_hash="h", port=2000, workdir=Path("/w"))
    assert _flag(plain, "--host") == "127.0.0.1" and "--tls-cert" not in plain
    assert _flag(plain, "--max-request-bytes") == str(64 << 20)


def test_keys_go_by_environment_and_no_other_key_reaches_the_module() -> None:
    inherited = {"PATH": "/bin", "EDGEFLEET_PRIMARY_KEY": "the-agents-own-0123456789", "EDGEFLEET_SECONDARY_KEY": "x"}
    env = module_environment_secrets(inherited, _spec(auth=AUTH))
    assert env == {"PATH": "/bin", "EDGEFLEET_PRIMARY_KEY": PRIMARY, "EDGEFLEET_SECONDARY_KEY": SECONDARY}
    # a deployment without authEnabled gets no key, whatever the environment or its env vars say
    assert module_environment_secrets(inherited, _spec(env={"EDGEFLEET_PRIMARY_KEY": "y" * 20})) == {"PATH": "/bin"}


def test_a_container_gets_the_same_settings_by_environment_and_tls_read_only(tmp_path: Path) -> None:
    spec = _spec(
        runtime="docker",
        image="scoring:1",
        listenAddress="0.0.0.0",
        resources={"memoryInGB": 0.5},
        tls={"certificate": "c.pem", "key": "k.pem"},
        auth=AUTH,
        env={"EDGEFLEET_SECONDARY_KEY": "sneaky-0123456789abcdef"},
    )
    config = container_config(spec, "h", 2000, tmp_path, device_id="dev-1")
    env = config["environment"]
    assert (env["EDGEFLEET_HOST"], env["EDGEFLEET_MAX_REQUEST_BYTES"]) == ("0.0.0.0", str(32 << 20))
    assert (env["EDGEFLEET_PRIMARY_KEY"], env["EDGEFLEET_SECONDARY_KEY"]) == (PRIMARY, SECONDARY)
    assert (env["EDGEFLEET_TLS_CERT"], env["EDGEFLEET_TLS_KEY"]) == (
        f"{CONTAINER_TLS_DIR}/cert.pem",
        f"{CONTAINER_TLS_DIR}/key.pem",
    )
    assert config["volumes"][str(tmp_path / "tls")] == {"bind": CONTAINER_TLS_DIR, "mode": "ro"}
    assert "command" not in config or not any(PRIMARY in a for a in config["command"])
    plain = container_config(_spec(runtime="docker", image="scoring:1"), "h", 2000, tmp_path, device_id="dev-1")
    assert "EDGEFLEET_PRIMARY_KEY" not in plain["environment"] and "EDGEFLEET_TLS_CERT" not in plain["environment"]
    assert str(tmp_path / "tls") not in plain["volumes"]


@pytest.mark.parametrize(
    ("listen", "tls", "probe_host", "endpoint"),
    [
        ("127.0.0.1", False, "127.0.0.1", "http://127.0.0.1:2000"),
        ("0.0.0.0", True, "127.0.0.1", "https://127.0.0.1:2000"),
        ("::", False, "::1", "http://127.0.0.1:2000"),
        ("192.0.2.7", False, "192.0.2.7", "http://192.0.2.7:2000"),  # one address: only it answers
    ],
)
def test_probes_and_endpoints_follow_the_listen_address_and_tls(
    listen: str, tls: bool, probe_host: str, endpoint: str
) -> None:
    tls_files = {"tls": {"certificate": "c.pem", "key": "k.pem"}} if tls else {}
    spec = _spec(listenAddress=listen, **tls_files)
    manifest = DeviceManifest(device_id="dev-1", generation=1, modules=[spec])
    plan = plan_steps(manifest, Observed(instances=(inst(spec, port=2000),)), CTX)  # starting: probed now
    (probe,) = [s for s in plan.steps if isinstance(s, ProbeHealth)]
    assert (probe.host, probe.tls) == (probe_host, tls)
    assert endpoint_of(spec, 2000, "127.0.0.1") == endpoint


def test_the_deployments_cpu_sizes_the_modules_workers_in_both_runtimes(tmp_path: Path) -> None:
    spec = _spec(resources={"cpu": 1.5})
    cmd = module_command(["py"], spec, device_id="dev-1", spec_hash="h", port=2000, workdir=Path("/w"))
    assert _flag(cmd, "--cpu") == "1.5"
    docker = _spec(runtime="docker", image="scoring:1", resources={"cpu": 2})
    assert container_config(docker, "h", 2000, tmp_path, device_id="dev-1")["environment"]["EDGEFLEET_CPU"] == "2"
    # no cpu asked: the module sizes itself by what it may run on
    assert "--cpu" not in module_command(["py"], _spec(), device_id="d", spec_hash="h", port=2000, workdir=Path("/w"))
