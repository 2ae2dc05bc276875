from __future__ import annotations

import functools
from datetime import datetime, timezone

import pytest

from edgefleet.hub.configs import parse_deployment_config, parse_inference_config
from edgefleet.hub.errors import InvalidRequest, NotFound
from edgefleet.hub.server.grants import BlobGrants
from edgefleet.hub.server.registry import keys_for_deployment, rotated
from edgefleet.hub.server.render import DeviceView, index_models, render_device, render_module, targets
from edgefleet.hub.server.store import DeviceRecord, FileEntry, ModelRecord, ServiceRecord
from edgefleet.hub.server.store.records import ScoringKeys
from edgefleet.protocol.models import DeviceCapabilities, ModelRef, RestartPolicy

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
BASE = "http://hub:8080"
GRANTS = BlobGrants(b"g" * 32, BASE)
URL = functools.partial(GRANTS.url, "dev-1")  # dev-1's artifact URLs
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def model(name: str = "digits", version: int = 1, files: list[FileEntry] | None = None) -> ModelRecord:
    return ModelRecord(
        name=name,
        version=version,
        created=T0,
        files=files or [FileEntry(path="digits.onnx", digest=D1, size=10)],
    )


def service(
    name: str = "svc",
    models: list[ModelRef] | None = None,
    ic: dict | None = None,
    dc: dict | None = None,
    sources: list[FileEntry] | None = None,
) -> ServiceRecord:  # type: ignore[type-arg]
    return ServiceRecord(
        name=name,
        models=models or [ModelRef(name="digits", version=1)],
        inference_config=parse_inference_config(ic or {}),
        deployment_config=parse_deployment_config(dc or {}),
        source_files=sources or [],
        created=T0,
        updated=T0,
    )


def device(device_id: str = "dev-1", labels: dict[str, str] | None = None, accels: tuple[str, ...] = ()) -> DeviceView:
    return DeviceView(device_id, labels or {}, frozenset(accels))


@pytest.mark.parametrize(
    ("target", "dev", "expected"),
    [
        ({}, device(), True),
        ({"devices": ["dev-2"]}, device(), False),
        ({"devices": ["dev-1", "dev-2"]}, device(), True),
        ({"labels": {"site": "a"}}, device(labels={"site": "a", "x": "y"}), True),
        ({"labels": {"site": "a"}}, device(labels={"site": "b"}), False),
        ({"labels": {"site": "a"}}, device(), False),
        ({"accelerators": ["fpga"]}, device(accels=("cpu", "fpga")), True),
        ({"accelerators": ["fpga", "opencl"]}, device(accels=("fpga",)), False),
        ({"labels": {"site": "a"}, "accelerators": ["fpga"]}, device(labels={"site": "a"}), False),
    ],
)
def test_target_selector(target: dict, dev: DeviceView, expected: bool) -> None:  # type: ignore[type-arg]
    assert targets(service(dc={"target": target}), dev) is expected


def test_device_view_takes_the_operators_labels_and_the_reported_accelerators() -> None:
    caps = DeviceCapabilities.model_validate({"labels": {"a": "evil"}, "accelerators": [{"kind": "fpga"}]})
    record = DeviceRecord(
        device_id="dev-9", labels={"a": "b"}, capabilities=caps, registered_at=datetime(2024, 1, 1, tzinfo=timezone.utc)
    )
    view = DeviceView.of(record)
    assert view.labels == {"a": "b"} and view.accelerator_kinds == {"fpga"}


def test_module_spec_carries_configs_artifacts_and_urls() -> None:
    svc = service(
        ic={"entryScript": "score.py", "environment": {"environmentVariables": {"B": "2", "A": "1"}}},
        dc={
            "containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 0.25},
            "accelerator": {"prefer": ["opencl", "cpu"], "required": False},
            "restartPolicy": "on-failure",
            "port": 9100,
            "healthProbe": {"periodSeconds": 1.5},
        },
        sources=[FileEntry(path="score.py", digest=D2, size=5), FileEntry(path="lib/util.py", digest=D3, size=7)],
    )
    spec = render_module(svc, index_models([model()]), URL)
    assert spec.name == spec.service == "svc"
    assert [(a.path, a.digest) for a in spec.artifacts] == [
        ("model/digits.onnx", D1),
        ("src/lib/util.py", D3),
        ("src/score.py", D2),
    ]
    assert spec.artifacts[0].url == GRANTS.url("dev-1", D1)
    assert spec.artifacts[0].url.startswith(f"{BASE}/api/v1/blobs/{D1}?device=dev-1&grant=")
    assert spec.entry_script == "score.py"
    assert spec.env == {"A": "1", "B": "2"}
    assert spec.resources.cpu == 0.5 and spec.resources.memory_gb == 0.25
    assert spec.accelerator.prefer == ["opencl", "cpu"]
    assert spec.restart_policy is RestartPolicy.ON_FAILURE
    assert spec.port == 9100
    assert spec.health.interval_s == 1.5
    assert spec.models == [ModelRef(name="digits", version=1)]


def test_no_entry_script_renders_no_code_module() -> None:
    spec = render_module(service(), index_models([model()]), URL)
    assert spec.entry_script is None
    assert [a.path for a in spec.artifacts] == ["model/digits.onnx"]


def test_several_models_get_their_own_folders() -> None:
    svc = service(models=[ModelRef(name="digits", version=1), ModelRef(name="other", version=2)])
    other = model("other", 2, [FileEntry(path="digits.onnx", digest=D2, size=1)])
    spec = render_module(svc, index_models([model(), other]), URL)
    assert [a.path for a in spec.artifacts] == ["model/digits/1/digits.onnx", "model/other/2/digits.onnx"]


def test_render_device_selects_and_orders_services() -> None:
    services = [
        service("zeta"),
        service("alpha"),
        service("fpga-only", dc={"target": {"accelerators": ["fpga"]}}),
    ]
    modules = render_device(services, device(), index_models([model()]), GRANTS)
    assert [m.name for m in modules] == ["alpha", "zeta"]
    # each device's URLs carry its own grants
    assert modules[0].artifacts[0].url == GRANTS.url("dev-1", D1)
    other = render_device(services, device("dev-2"), index_models([model()]), GRANTS)
    assert other[0].artifacts[0].url == GRANTS.url("dev-2", D1) != modules[0].artifacts[0].url
    # equal input, equal output: what makes "publish only on change" work
    assert modules == render_device(list(reversed(services)), device(), index_models([model()]), GRANTS)


def test_missing_model_is_an_error_naming_it() -> None:
    with pytest.raises(NotFound, match="digits:1"):
        render_module(service(), {}, URL)


def test_scoring_endpoint_settings_and_keys_reach_the_module_spec() -> None:
    fresh = iter(["k" * 43, "j" * 43, "n" * 43])
    keys = keys_for_deployment(True, None, lambda: next(fresh))
    assert keys == ScoringKeys(primary_key="k" * 43, secondary_key="j" * 43)
    assert keys_for_deployment(True, keys) is keys  # deployed again: the clients' keys stay
    assert keys_for_deployment(False, keys) is None  # auth switched off: no keys kept
    assert rotated(keys, "primary", "n" * 43) == ScoringKeys(primary_key="n" * 43, secondary_key="j" * 43)
    assert rotated(keys, "secondary", "n" * 43) == ScoringKeys(primary_key="k" * 43, secondary_key="n" * 43)

    svc = service(
        dc={"authEnabled": True, "listenAddress": "0.0.0.0", "tls": {"certificate": "s.crt", "key": "s.key"}}
    ).model_copy(update={"keys": keys})
    spec = render_module(svc, index_models([model()]), URL)
    assert spec.listen_address == "0.0.0.0"
    assert spec.tls is not None and (spec.tls.certificate, spec.tls.key) == ("s.crt", "s.key")
    assert spec.auth is not None and spec.auth.keys() == ("k" * 43, "j" * 43)
    plain = render_module(service(), index_models([model()]), URL)
    assert (plain.listen_address, plain.tls, plain.auth) == ("127.0.0.1", None, None)
    rotated_spec = render_module(
        svc.model_copy(update={"keys": rotated(keys, "primary", "n" * 43)}), index_models([model()]), URL
    )
    assert rotated_spec.spec_hash() != spec.spec_hash()  # a regenerated key rolls out as a new spec


def test_keys_a_deployment_config_gives_replace_the_services_own_one_each() -> None:
    fresh = iter(["k" * 43, "j" * 43])
    given = keys_for_deployment(True, None, lambda: next(fresh), given=("a" * 20, None))
    assert given == ScoringKeys(primary_key="a" * 20, secondary_key="k" * 43)  # the other one is made
    kept = ScoringKeys(primary_key="p" * 43, secondary_key="s" * 43)
    again = keys_for_deployment(True, kept, given=(None, "b" * 20))
    assert again == ScoringKeys(primary_key="p" * 43, secondary_key="b" * 20)  # the primary stays for its clients
    assert keys_for_deployment(False, kept, given=("a" * 20, "b" * 20)) is None
    with pytest.raises(InvalidRequest, match="the two must differ"):
        keys_for_deployment(True, kept, given=("s" * 43, None))
