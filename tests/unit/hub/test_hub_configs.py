from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgefleet.hub.configs import (
    load_deployment_config,
    load_inference_config,
    parse_deployment_config,
    parse_inference_config,
)
from edgefleet.hub.errors import ConfigError
from edgefleet.protocol.models import RestartPolicy


def test_full_deployment_config_is_read_under_azure_and_edgefleet_names() -> None:
    dc = parse_deployment_config(
        {
            "computeType": "edge",
            "containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 1},
            "port": 9001,
            "target": {"labels": {"site": "a"}, "devices": ["dev-1"], "accelerators": ["fpga"]},
            "accelerator": {"prefer": ["fpga", "cpu"], "required": True},
            "runtime": "docker",
            "image": "scoring:1",
            "restartPolicy": "on-unhealthy",
            "healthProbe": {"path": "/", "periodSeconds": 1, "failureThreshold": 2},
            "startupOrder": 3,
        }
    )
    assert dc.container_resource_requirements.memory_in_gb == 1
    assert dc.target.accelerators == ["fpga"]
    assert dc.restart_policy is RestartPolicy.ON_UNHEALTHY
    assert dc.health_probe.period_seconds == 1


def test_scoring_endpoint_settings_loopback_by_default_keys_when_opened() -> None:
    dc = parse_deployment_config({})
    assert (dc.auth_enabled, dc.listen_address, dc.tls) == (False, "127.0.0.1", None)
    opened = parse_deployment_config(
        {"authEnabled": True, "listenAddress": "0.0.0.0", "tls": {"certificate": "scoring.crt", "key": "scoring.key"}}
    )
    assert opened.auth_enabled and opened.listen_address == "0.0.0.0" and opened.tls is not None
    assert opened.tls.certificate == "scoring.crt"
    # open to the network without keys only when the config says so
    assert parse_deployment_config({"listenAddress": "0.0.0.0", "authEnabled": False}).auth_enabled is False
    assert parse_deployment_config({"listenAddress": "::1"}).listen_address == "::1"  # loopback: no keys needed


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"containerResourceRequirements": {"cpu": 1, "memoryInGb": 1}},
            "deploymentconfig.json: containerResourceRequirements.memoryInGb: unknown field (did you mean memoryInGB?)",
        ),
        ({"prot": 80}, "deploymentconfig.json: prot: unknown field (did you mean port?)"),
        ({"computeType": "AmlCompute"}, 'deploymentconfig.json: computeType: computeType must be "edge", or the local'),
        ({"port": 70000}, "deploymentconfig.json: port: Input should be less than or equal to 65535"),
        ({"accelerator": {"prefer": ["gpu"]}}, "deploymentconfig.json: accelerator.prefer[0]: Input should be"),
        ({"accelerator": {"prefer": ["cpu", "cpu"]}}, "lists an accelerator kind twice"),
        ({"target": {"devices": ["bad/id"]}}, "deploymentconfig.json: target.devices: invalid device id 'bad/id'"),
        ({"runtime": "docker"}, 'deploymentconfig.json: (top level): runtime "docker" needs an "image"'),
        ({"restartPolicy": "sometimes"}, "deploymentconfig.json: restartPolicy: Input should be"),
        ({"authEnabled": "maybe"}, "deploymentconfig.json: authEnabled: Input should be a valid boolean"),
        ({"listenAddress": "device.lan"}, "deploymentconfig.json: listenAddress: must be an IP address"),
        ({"listenAddress": "0.0.0.0"}, 'opens the scoring endpoint to other hosts: set "authEnabled": true'),
        (
            {"authEnabled": True, "healthProbe": {"path": "/v2/models/digits/ready"}},
            "healthProbe.path '/v2/models/digits/ready' needs a key once authEnabled is true",
        ),
        ({"tls": {"certificate": "../etc/cert.pem", "key": "k.pem"}}, "deploymentconfig.json: tls.certificate: String"),
        ({"tls": {"certificate": "c.pem"}}, "deploymentconfig.json: tls.key: Field required"),
    ],
)
def test_deployment_config_errors_name_file_and_field(data: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_deployment_config(data)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"entryScript": "../score.py"}, "inferenceconfig.json: entryScript: entryScript must be a relative path"),
        ({"entryscript": "score.py"}, "inferenceconfig.json: entryscript: unknown field (did you mean entryScript?)"),
        ({"runtime": "spark-py"}, "inferenceconfig.json: runtime: Input should be 'python'"),
        (
            {"environment": {"environmentVariables": {"N": 3}}},
            "inferenceconfig.json: environment.environmentVariables.N: Input should be a valid string",
        ),
    ],
)
def test_inference_config_errors_name_file_and_field(data: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_inference_config(data)
    assert expected in str(info.value)


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_deployment_config({"prot": 1, "runtime": "vm"})
    assert len(str(info.value).splitlines()) == 2


def test_no_entry_script_means_no_code() -> None:
    ic = parse_inference_config({})
    assert ic.entry_script is None
    assert parse_inference_config({"entryScript": "./pkg/score.py"}).entry_script == "pkg/score.py"


def test_files_errors_name_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "deploymentconfig.json"
    bad.write_text('{"port": 1,\n "x": }')
    with pytest.raises(ConfigError, match=r"deploymentconfig.json: not valid JSON: .* line 2"):
        load_deployment_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_inference_config(tmp_path / "missing.json")
    listed = tmp_path / "ic.json"
    listed.write_text(json.dumps([1]))
    with pytest.raises(ConfigError, match=r"ic\.json: expected a JSON object"):
        load_inference_config(listed)
    typo = tmp_path / "dc.json"
    typo.write_text(json.dumps({"imgae": "x"}))
    with pytest.raises(ConfigError, match=r"dc.json: imgae: unknown field \(did you mean image\?\)"):
        load_deployment_config(typo)


def test_sample_configs_parse() -> None:
    samples = Path(__file__).resolve().parents[3] / "modules" / "samples" / "digits"
    if not (samples / "deploymentconfig.json").exists():
        pytest.skip("sample configs not present")
    assert load_inference_config(samples / "inferenceconfig.json").entry_script
    load_deployment_config(samples / "deploymentconfig.json")
