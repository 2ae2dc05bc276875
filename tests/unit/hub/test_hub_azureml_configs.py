"""Config files written for Azure ML, read as the hub reads them: real published ones (tests/data/azureml,
see its README for where each comes from), then one field at a time.

A field with a meaning on a device is applied; a cloud-only one is accepted with one warning line
naming it and saying why it does not apply (silently when it asks for nothing); a misspelt one is
an error with a suggestion. Warnings are compared as whole lines where the wording is the point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.hub.configs import (
    DeploymentConfig,
    read_deployment_config,
    read_inference_config,
    read_json_file,
)
from edgefleet.hub.errors import ConfigError

DATA = Path(__file__).resolve().parents[2] / "data" / "azureml"
KEY_A, KEY_B = "a" * 32, "b" * 32


def fields_warned(warnings: tuple[str, ...], source: str) -> list[str]:
    """The field each warning line names (``<source>: <field>: <why>``)."""
    assert all(w.startswith(f"{source}: ") and "\n" not in w for w in warnings), warnings
    return [w.removeprefix(f"{source}: ").split(": ", 1)[0] for w in warnings]


def deployment(data: dict[str, Any]) -> tuple[DeploymentConfig, list[str]]:
    read = read_deployment_config(data)
    return read.config, fields_warned(read.warnings, "deploymentconfig.json")


def refused(data: dict[str, Any], inference: bool = False) -> str:
    with pytest.raises(ConfigError) as info:
        (read_inference_config if inference else read_deployment_config)(data)
    return str(info.value)


# real files, as published ------------------------------------------------------------------------
def test_the_published_files_are_all_here() -> None:
    listed = (DATA / "README.md").read_text()
    files = sorted(p.name for p in DATA.glob("*.json"))
    assert len(files) == 10 and all(f"`{name}`" in listed for name in files)


@pytest.mark.parametrize(
    ("name", "applied", "warned"),
    [
        ("local-deploymentconfig.json", {"port": 32267}, ["computeType"]),
        (
            "aci-deploymentconfig.json",
            {"containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 1.0}, "authEnabled": True},
            ["computeType"],  # sslEnabled and appInsightsEnabled are false: they ask for nothing
        ),
        (
            "aci-deploymentconfig-notebooks.json",
            {"containerResourceRequirements": {"cpu": 1.0, "memoryInGB": 1.0}},
            ["computeType"],
        ),
        (
            "aks-deploymentconfig.json",
            {"containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 1.0}, "authEnabled": True},
            ["computeType", "autoScaler", "dataCollection"],
        ),
        (
            "aks-triton-deploymentconfig.json",
            {"containerResourceRequirements": {"cpu": 1.0, "memoryInGB": 4.0}, "authEnabled": True},  # AKS's default
            ["computeType", "gpuCores"],
        ),
    ],
)
def test_published_deployment_configs_for_local_aci_and_aks_are_accepted_with_warnings(
    name: str, applied: dict[str, Any], warned: list[str]
) -> None:
    read = read_deployment_config(read_json_file(DATA / name), name)
    assert read.config.model_dump(by_alias=True, exclude_defaults=True) == applied
    assert read.config.compute_type == "edge"
    assert fields_warned(read.warnings, name) == warned
    assert (read.primary_key, read.secondary_key) == (None, None)


def test_the_warnings_of_the_aks_example_say_what_does_not_apply_and_why() -> None:
    name = "aks-deploymentconfig.json"
    read = read_deployment_config(read_json_file(DATA / name), name)
    assert read.warnings == (
        f"{name}: computeType: 'aks' is an Azure ML compute target; edgefleet runs the service on every registered "
        "device (no 'target' given)",
        f"{name}: autoScaler: not applied: one module runs on each device 'target' selects; to run more copies, "
        "target more devices",
        f"{name}: dataCollection: not applied: model inputs and predictions are not collected to Azure Blob storage",
    )
    triton = read_deployment_config(read_json_file(DATA / "aks-triton-deploymentconfig.json"))
    assert triton.warnings[0].endswith('; "authEnabled" is true, as it is by default on AKS')
    assert "schedules no GPUs; ask for an FPGA or OpenCL device" in triton.warnings[1]


def test_a_published_file_with_a_field_the_cli_never_read_is_refused_with_a_suggestion() -> None:
    # Azure ML's CLI ignored this file's "ComputeTarget" (the target came from --ct); a field edgefleet
    # would ignore must not pass silently
    path = DATA / "aks-cli-deploy.json"
    with pytest.raises(ConfigError) as info:
        read_deployment_config(read_json_file(path), path.name)
    assert str(info.value) == "aks-cli-deploy.json: ComputeTarget: unknown field (did you mean computeTargetName?)"


@pytest.mark.parametrize(
    ("name", "applied", "warned"),
    [
        (
            "inferenceconfig-deploy-local.json",
            {
                "entryScript": "score.py",
                "sourceDirectory": "./source_dir",
                "environment": {"environmentVariables": {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE"}},
            },
            ["environment.name", "environment.python.condaDependencies", "environment.docker.baseImage"],
        ),
        (
            "inferenceconfig-cli-reference.json",
            {"entryScript": "score.py", "environment": {"environmentVariables": {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE"}}},
            ["environment.name", "environment.python.condaDependencies", "environment.docker.baseImage"],
        ),
        ("inferenceconfig-deploy-to-cloud.json", {"entryScript": "score.py"}, ["condaFile"]),
        ("inferenceconfig-cli.json", {"entryScript": "score.py"}, ["condaFile"]),
    ],
)
def test_published_inference_configs_are_accepted_with_warnings(
    name: str, applied: dict[str, Any], warned: list[str]
) -> None:
    read = read_inference_config(read_json_file(DATA / name), name)
    assert read.config.model_dump(by_alias=True, exclude_defaults=True) == applied
    assert fields_warned(read.warnings, name) == warned


def test_an_environments_packages_are_named_in_the_warning_that_they_are_not_installed() -> None:
    name = "inferenceconfig-deploy-local.json"
    read = read_inference_config(read_json_file(DATA / name), name)
    assert read.warnings[1].startswith(
        f"{name}: environment.python.condaDependencies: not installed (python=3.6.2, azureml-defaults, nltk, numpy, "
        "onnxruntime): the module runs with the Python packages already on the device"
    )
    assert read.warnings[2].startswith(
        f'{name}: environment.docker.baseImage: not applied ("mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04"): '
        'edgefleet builds no images; to run in a container, set deploymentconfig.json "runtime": "docker"'
    )


# one field at a time: applied ---------------------------------------------------------------------
def test_the_sdks_keyword_names_are_read_as_the_json_names_they_stand_for() -> None:
    config, warned = deployment(
        {"computeType": "ACI", "cpu_cores": 1.5, "memory_gb": 2, "auth_enabled": True, "port": 8890,
         "enable_app_insights": True, "replica_max_concurrent_requests": 4, "period_seconds": 7}
    )  # fmt: skip
    assert config.container_resource_requirements.cpu == 1.5
    assert config.container_resource_requirements.memory_in_gb == 2
    assert (config.auth_enabled, config.port, config.health_probe.period_seconds) == (True, 8890, 7)
    assert config.max_concurrent_requests_per_container == 4
    assert warned == ["computeType", "replica_max_concurrent_requests", "enable_app_insights"]  # as written
    read = read_inference_config({"entry_script": "score.py", "source_directory": "src", "conda_file": "env.yml"})
    assert (read.config.entry_script, read.config.source_directory) == ("score.py", "src")
    assert fields_warned(read.warnings, "inferenceconfig.json") == ["conda_file"]


def test_errors_name_a_translated_field_as_it_was_written() -> None:
    assert refused({"cpu_cores": -1}) == "deploymentconfig.json: cpu_cores: Input should be greater than 0 (got -1)"
    assert refused({"livenessProbeRequirements": {"failureThreshold": 0}}) == (
        "deploymentconfig.json: livenessProbeRequirements.failureThreshold: Input should be greater than or equal "
        "to 1 (got 0)"
    )
    assert refused({"cpu_cores": 1, "containerResourceRequirements": {"cpu": 2}}) == (
        "deploymentconfig.json: cpu_cores: given twice, as cpu_cores and as containerResourceRequirements.cpu: keep one"
    )


def test_the_liveness_probe_becomes_the_agents_health_probe() -> None:
    config, warned = deployment(
        {"livenessProbeRequirements": {"periodSeconds": 10, "initialDelaySeconds": 310, "timeoutSeconds": 2,
                                       "successThreshold": 1, "failureThreshold": 3}}
    )  # fmt: skip
    probe = config.health_probe
    assert (probe.period_seconds, probe.timeout_seconds, probe.failure_threshold) == (10, 2, 3)
    # Kubernetes gives up after the initial delay and failureThreshold failed probes: so long may it take
    assert probe.startup_timeout_seconds == 310 + 3 * 10
    assert probe.path == "/v2/health/ready" and warned == []
    _config, warned = deployment({"livenessProbeRequirements": {"successThreshold": 2}})
    assert warned == ["livenessProbeRequirements.successThreshold"]
    assert "the health probe is set twice" in refused(
        {"livenessProbeRequirements": {"periodSeconds": 1}, "healthProbe": {"periodSeconds": 2}}
    )


def test_ssl_becomes_tls_with_files_named_on_each_device_never_uploaded() -> None:
    read = read_deployment_config(
        {"computeType": "aci", "sslEnabled": True, "sslCertificate": "certs/server.pem", "sslKey": "certs\\key.pem",
         "cname": "score.example.com"}
    )  # fmt: skip
    assert read.config.tls is not None
    assert (read.config.tls.certificate, read.config.tls.key) == ("server.pem", "key.pem")
    assert fields_warned(read.warnings, "deploymentconfig.json") == ["computeType", "sslEnabled", "cname"]
    assert read.warnings[1] == (
        "deploymentconfig.json: sslEnabled: each device serves HTTPS with server.pem and key.pem from its agent's "
        "TLS directory (<agent data dir>/tls/), put there by the device's owner; they are not uploaded from here"
    )
    assert refused({"sslEnabled": True, "sslCertificate": "c.pem"}) == (
        "deploymentconfig.json: sslKey: needed with sslEnabled: the name of a PEM file in each device's agent TLS "
        "directory"
    )
    assert "HTTPS is set twice" in refused(
        {"sslEnabled": True, "sslCertificate": "c.pem", "sslKey": "k.pem", "tls": {"certificate": "c", "key": "k"}}
    )
    assert "ssl_cert_pem_file: String should match pattern" in refused(
        {"ssl_enabled": True, "ssl_cert_pem_file": "bad name.pem", "ssl_key_pem_file": "k.pem"}
    )
    config, warned = deployment({"sslEnabled": False, "sslCertificate": "c.pem"})
    assert config.tls is None and warned == ["sslCertificate"]


def test_scoring_keys_given_are_the_services_keys_and_never_part_of_its_config() -> None:
    read = read_deployment_config({"computeType": "aks", "keys": {"primaryKey": KEY_A, "secondaryKey": KEY_B}})
    assert (read.primary_key, read.secondary_key) == (KEY_A, KEY_B)
    assert KEY_A not in read.config.model_dump_json() and KEY_A not in repr(read)
    by_keyword = read_deployment_config({"auth_enabled": True, "primary_key": KEY_A})
    assert (by_keyword.primary_key, by_keyword.secondary_key) == (KEY_A, None)
    unused = read_deployment_config({"computeType": "aci", "keys": {"primaryKey": KEY_A}})  # ACI: no auth by default
    assert unused.primary_key is None
    assert unused.warnings[-1] == 'deploymentconfig.json: keys: not used: scoring keys apply with "authEnabled": true'
    message = refused({"authEnabled": True, "keys": {"primaryKey": "short", "secondaryKey": KEY_A, "tertiary": 1}})
    assert message.splitlines() == [
        "deploymentconfig.json: keys.tertiary: unknown field",
        "deploymentconfig.json: keys.primaryKey: a scoring key is 16-256 characters of A-Z a-z 0-9 . _ ~ + / = -",
    ]
    assert "short" not in message  # a key, even a bad one, is not repeated back
    assert "must differ" in refused({"authEnabled": True, "keys": {"primaryKey": KEY_A, "secondaryKey": KEY_A}})
    assert refused({"authEnabled": True, "keys": KEY_A}) == "deploymentconfig.json: keys: must be an object"


def test_request_limits_are_kept_and_said_not_to_be_enforced_yet() -> None:
    config, warned = deployment({"scoringTimeoutMs": 5000, "maxConcurrentRequestsPerContainer": 2, "maxQueueWaitMs": 0})
    assert (config.scoring_timeout_ms, config.max_concurrent_requests_per_container, config.max_queue_wait_ms) == (
        5000, 2, 0
    )  # fmt: skip
    assert warned == ["scoringTimeoutMs", "maxConcurrentRequestsPerContainer", "maxQueueWaitMs"]
    read = read_deployment_config({"scoringTimeoutMs": 5000})
    assert read.warnings == (
        "deploymentconfig.json: scoringTimeoutMs: kept with the service (5000), not enforced yet: this version's "
        "scoring module has no scoring timeout",
    )
    assert "scoringTimeoutMs: Input should be greater than 0" in refused({"scoringTimeoutMs": 0})


# one field at a time: compute targets, cloud-only fields, typos ---------------------------------
def test_compute_types() -> None:
    config, warned = deployment({"computeType": "AKS", "authEnabled": False})  # said in so many words: kept
    assert not config.auth_enabled and warned == ["computeType"]
    read = read_deployment_config({"computeType": "local", "target": {"labels": {"site": "lab"}}})
    assert read.warnings[0].endswith("edgefleet runs the service on the devices 'target' selects")
    assert deployment({"computeType": "edge"})[1] == []
    assert deployment({"computeType": "AKSENDPOINT", "versionName": "v2", "trafficPercentile": 20})[1] == [
        "computeType", "versionName", "trafficPercentile"
    ]  # fmt: skip


def test_cloud_only_fields_warn_once_each_and_not_when_they_ask_for_nothing() -> None:
    config, warned = deployment(
        {"computeType": "aks", "appInsightsEnabled": True, "numReplicas": 3, "location": "westeurope",
         "dnsNameLabel": "svc", "namespace": "ml", "computeTargetName": "aks-1", "tags": {"team": "a"},
         "description": "x", "vnetName": "v", "containerResourceRequirements": {"cpu": 1, "cpuLimit": 2, "gpu": 1}}
    )  # fmt: skip
    assert config.container_resource_requirements.cpu == 1
    assert warned == ["computeType", "containerResourceRequirements.cpuLimit", "containerResourceRequirements.gpu",
                      "appInsightsEnabled", "numReplicas", "location", "dnsNameLabel", "namespace",
                      "computeTargetName", "tags", "description", "vnetName"]  # fmt: skip
    _config, warned = deployment(
        {"appInsightsEnabled": False, "sslEnabled": False, "numReplicas": None, "gpuCores": 0, "tokenAuthEnabled": False,
         "autoScaler": {"autoscaleEnabled": False, "minReplicas": 1}, "dataCollection": {"storageEnabled": False}}
    )  # fmt: skip
    assert warned == []
    read = read_inference_config(
        {"entryScript": "score.py", "sourceDirectory": None, "runtime": None, "enableGpu": False, "baseImage": None,
         "environment": {"python": {"userManagedDependencies": True, "interpreterPath": "python"},
                         "docker": {"enabled": False, "sharedVolumes": True, "arguments": [],
                                    "baseImageRegistry": {"address": None, "username": None, "password": None}},
                         "spark": {"repositories": [], "packages": [], "precachePackages": True},
                         "inferencingStackVersion": None, "environmentVariables": None}}
    )  # fmt: skip
    assert read.warnings == () and read.config.entry_script == "score.py"


def test_a_registry_password_is_never_repeated_back() -> None:
    read = read_inference_config(
        {"environment": {"docker": {"baseImageRegistry": {"address": "r.io", "username": "u", "password": "hunter22"}}}}
    )
    assert read.warnings and "hunter22" not in " ".join(read.warnings)


def test_what_cannot_run_on_a_device_and_would_weaken_it_is_refused() -> None:
    assert refused({"tokenAuthEnabled": True}) == (
        "deploymentconfig.json: tokenAuthEnabled: Azure AD token authentication is not available on devices: use "
        "authEnabled (key authentication) instead"
    )
    assert "runtime: Input should be 'python'" in refused({"runtime": "spark-py"}, inference=True)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"authEnable": True}, "deploymentconfig.json: authEnable: unknown field (did you mean authEnabled?)"),
        ({"autoscaler": {}}, "deploymentconfig.json: autoscaler: unknown field (did you mean autoScaler?)"),
        ({"memory_gbs": 1}, "deploymentconfig.json: memory_gbs: unknown field (did you mean memory_gb?)"),
        ({"appInsightEnabled": True}, "appInsightEnabled: unknown field (did you mean appInsightsEnabled?)"),
        ({"autoScaler": {"minReplica": 1}}, "autoScaler.minReplica: unknown field (did you mean minReplicas?)"),
        ({"livenessProbeRequirements": {"periodSecond": 1}}, "(did you mean periodSeconds?)"),
        ({"containerResourceRequirements": {"cpuLimits": 1}}, "(did you mean cpuLimit?)"),
        ({"keys": {"primarykey": KEY_A}}, "keys.primarykey: unknown field (did you mean primaryKey?)"),
        ({"scoringTimeOutMs": 1}, "scoringTimeOutMs: unknown field (did you mean scoringTimeoutMs?)"),
    ],
)
def test_misspelt_azure_fields_stay_errors_with_a_suggestion(data: dict[str, Any], expected: str) -> None:
    assert expected in refused(data)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"entryscript": "s.py"}, "inferenceconfig.json: entryscript: unknown field (did you mean entryScript?)"),
        ({"condaFiles": "e.yml"}, "condaFiles: unknown field (did you mean condaFile?)"),
        ({"environment": {"pyhton": {}}}, "environment.pyhton: unknown field (did you mean python?)"),
        ({"environment": {"docker": {"baseimage": "x"}}}, "environment.docker.baseimage: unknown field (did you mean"),
        ({"environment": {"python": {"condaDependency": {}}}}, "(did you mean condaDependencies?)"),
        ({"environment": {"environmentVariable": {}}}, "(did you mean environmentVariables?)"),
    ],
)
def test_misspelt_inference_fields_stay_errors_with_a_suggestion(data: dict[str, Any], expected: str) -> None:
    assert expected in refused(data, inference=True)


def test_every_problem_is_reported_at_once_translated_or_not() -> None:
    lines = refused({"autoScaler": {"minReplica": 1}, "prot": 1, "cpu_cores": -1}).splitlines()
    assert sorted(line.split(": ")[1] for line in lines) == ["autoScaler.minReplica", "cpu_cores", "prot"]


# anything at all ------------------------------------------------------------------------------------
_NAMES = sorted(
    {"computeType", "containerResourceRequirements", "cpu", "memoryInGB", "cpuLimit", "gpu", "port", "authEnabled",
     "keys", "primaryKey", "secondaryKey", "sslEnabled", "sslCertificate", "sslKey", "tls", "certificate", "key",
     "livenessProbeRequirements", "periodSeconds", "initialDelaySeconds", "failureThreshold", "successThreshold",
     "healthProbe", "autoScaler", "autoscaleEnabled", "scoringTimeoutMs", "tokenAuthEnabled", "cpu_cores",
     "primary_key", "ssl_enabled", "period_seconds", "entryScript", "sourceDirectory", "runtime", "environment",
     "name", "version", "python", "docker", "condaDependencies", "dependencies", "pip", "baseImage",
     "environmentVariables", "spark", "packages", "condaFile", "entry_script", "target", "labels"}
)  # fmt: skip
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 400) | st.floats(-1, 1e3, allow_nan=False) | st.sampled_from(
        ["", "aks", "ACI", "local", "edge", "python", "x.pem", "a" * 20, "score.py", "../x"]
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_NAMES), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_NAMES), _JSON, max_size=6))
def test_any_json_object_is_read_or_refused_in_words_never_a_crash(data: dict[str, Any]) -> None:
    for read in (read_deployment_config, read_inference_config):
        try:
            result = read(data)
        except ConfigError as exc:
            assert str(exc) and all(line.count(": ") >= 2 for line in str(exc).splitlines()), str(exc)
        else:
            assert all(w.count(": ") >= 2 and "\n" not in w for w in result.warnings)
