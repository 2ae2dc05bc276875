"""Fuzzing what devices send the hub: reports, presence, telemetry, direct-method responses, topics.

The hub here is the real one (store, controller, API app) without a broker: messages go in through
``Controller.ingest``, exactly what the MQTT callback calls. Properties, after every message:
ingesting raises nothing; the store still reads back, and it holds a device's report only under
that device's own id; a reconcile pass raises nothing and never signs a generation past
``MAX_GENERATION`` (a report of 2**63-2 once led to 2**63-1, then OverflowError in SQLite); the API
answers the fleet's pages with 200, never 500; and topic parsing gives only well-formed device ids.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import event, given
from hypothesis import strategies as st

from edgefleet.hub.configs import parse_deployment_config
from edgefleet.hub.schemas import Role, TokenCreate
from edgefleet.hub.server.api import create_app
from edgefleet.hub.server.core import Hub
from edgefleet.hub.server.settings import HubSettings
from edgefleet.hub.server.store import CredentialRecord, FileEntry, ServiceRecord
from edgefleet.protocol import (
    MAX_GENERATION,
    TOPIC_ROOT,
    AcceleratorInfo,
    DeviceCapabilities,
    DirectMethodResponse,
    ModelRef,
    ModuleState,
    ModuleStatus,
    Presence,
    PresenceState,
    ReportedState,
    Telemetry,
    TopicKind,
    parse_topic,
)
from edgefleet.protocol.topics import check_device_id
from tests.unit.fuzz.strategies import (
    EXAMPLE_COUNTS,
    INTERESTING,
    edge_floats,
    edge_ints,
    edge_texts,
    fuzz_settings,
    json_values,
    payloads,
    rarely,
)

DEVICES = ["dev-1", "dev-2"]
devices = st.sampled_from(["dev-1", "dev-1", "dev-1", "dev-2"])  # mostly the topic's own device
T0 = datetime(2025, 6, 1, tzinfo=timezone.utc)

generations = st.one_of(st.integers(0, 20), st.sampled_from([MAX_GENERATION - 1, MAX_GENERATION, 2**63 - 2]))
statuses = st.builds(
    ModuleStatus,
    name=st.just("svc"),
    service=st.just("svc"),
    state=st.sampled_from(list(ModuleState)),
    endpoint=st.sampled_from([None, "http://127.0.0.1:9"]),
    backend=st.sampled_from([None, "cpu", "fpga"]),
    backend_timings_ms=st.dictionaries(st.sampled_from(["load", "check"]), st.floats(0, 1e6), min_size=1, max_size=2),
    restarts=st.integers(0, 30),
)
accelerators = st.builds(
    AcceleratorInfo,
    kind=st.sampled_from(["fpga", "opencl", "cpu"]),
    compute_units=st.integers(0, 64),
    extra=st.sampled_from([{}, {"part": "xck26"}]),
)
capabilities = st.builds(
    DeviceCapabilities,
    labels=st.sampled_from([{"site": "lab"}, {"site": "lab", "tier": "a"}, {}]),
    accelerators=st.lists(accelerators, max_size=2),
    runtimes=st.sampled_from([["process"], ["process", "docker"]]),
)


def _wire(model: Any) -> dict[str, Any]:
    return dict(model.to_wire())


reports = st.builds(
    lambda device, generation, modules, caps: (
        _wire(
            ReportedState(
                device_id=device,
                generation=min(generation, MAX_GENERATION),
                converged=True,
                modules=modules,
                capabilities=caps,
            )
        )
        | ({"generation": generation} if generation > MAX_GENERATION else {})
    ),  # as a device could send it
    devices,
    generations,
    st.lists(statuses, max_size=2),
    capabilities,
)
# Raw reports whose every leaf is now and then pushed to an edge of its type (NaN for a float, 2**63
# for a count, a newline in a name): the generator a careless or hostile agent would be.
wide_float = rarely(edge_floats, st.floats(0, 1e6))
wide_int = rarely(edge_ints, st.integers(0, 100))
wide_time = rarely(edge_texts, st.just("2025-06-01T12:00:00Z"))
wide_statuses = st.fixed_dictionaries(
    {
        "name": rarely(edge_texts, st.just("svc")),
        "service": rarely(edge_texts, st.just("svc")),
        "state": rarely(edge_texts, st.sampled_from([s.value for s in ModuleState])),
        "backendTimingsMs": st.dictionaries(st.sampled_from(["load", "check"]), wide_float, min_size=1, max_size=2),
        "restarts": wide_int,
        "since": wide_time,
    },
    optional={"endpoint": rarely(edge_texts, st.just("http://127.0.0.1:9")), "instance": edge_texts},
)
wide_capabilities = st.fixed_dictionaries(
    {
        "labels": st.sampled_from([{"site": "lab"}, {"site": "lab", "x": "\n"}, {}]),
        "accelerators": st.lists(
            st.fixed_dictionaries(
                {
                    "kind": st.sampled_from(["fpga", "opencl", "cpu"]),
                    "computeUnits": wide_int,
                    "globalMemBytes": wide_int,
                    "extra": rarely(st.dictionaries(st.text(max_size=4), json_values, max_size=2), st.just({})),
                }
            ),
            max_size=2,
        ),
        "cpuCount": wide_int,
        "memoryBytes": wide_int,
    }
)
wide_reports = st.fixed_dictionaries(
    {
        "deviceId": devices,
        "generation": rarely(edge_ints, st.integers(0, 20)),
        "converged": st.booleans(),
        "modules": st.lists(wide_statuses, max_size=2),
        "capabilities": wide_capabilities,
        "reportedAt": wide_time,
        "seq": wide_int,
    },
    optional={
        "lastKnownGood": wide_int,
        "rolledBackFrom": wide_int,
        "rejected": edge_texts,
        "agentVersion": rarely(edge_texts, st.just("0.1.0")),
    },
)
presences = st.builds(
    lambda device, state: _wire(Presence(device_id=device, state=state, agent_version="0.1.0", at=T0)),
    st.sampled_from(DEVICES),
    st.sampled_from(list(PresenceState)),
)
telemetry = st.builds(
    lambda device, rss: _wire(Telemetry(device_id=device, rss_bytes=rss, modules={"svc": {"rssBytes": 1.0}})),
    st.sampled_from(DEVICES),
    st.integers(0, 2**40),
)
responses = st.builds(
    lambda cid, status: _wire(DirectMethodResponse(correlation_id=cid, status=status, payload={"lines": ["x"]})),
    st.sampled_from(["c-1", "abc"]),
    st.sampled_from([200, 404]),
)
messages = st.one_of(
    st.tuples(st.just(TopicKind.REPORTED), payloads(reports)),
    st.tuples(st.just(TopicKind.REPORTED), payloads(wide_reports)),
    st.tuples(st.just(TopicKind.PRESENCE), payloads(presences)),
    st.tuples(st.just(TopicKind.TELEMETRY), payloads(telemetry)),
    st.tuples(st.just(TopicKind.RESPONSES), payloads(responses)),
)


def _hub(tmp_path: Path) -> tuple[Hub, TestClient]:
    hub = Hub(HubSettings(data_dir=tmp_path / "hub", port=9, broker_url="mqtt://127.0.0.1:9"))
    hub.controller._client.publish = lambda *_a, **_k: None  # type: ignore[method-assign,assignment]  # no broker
    model = hub.store.create_model("digits", [FileEntry(path="m.onnx", digest="sha256:" + "a" * 64, size=3)], {}, "")
    hub.store.put_service(
        ServiceRecord(
            name="svc",
            models=[ModelRef(name=model.name, version=model.version)],
            deployment_config=parse_deployment_config({"target": {"labels": {"site": "lab"}}}),
            created=T0,
            updated=T0,
        )
    )
    for serial, device in enumerate(("dev-1", "dev-2")):  # devices exist by registration, labels from the operator
        credential = CredentialRecord(
            device_id=device, kind="certificate", serial=f"{serial + 1:x}", fingerprint="sha256:x",
            issued_at=T0, not_after=T0,
        )  # fmt: skip
        hub.store.register_device(device, {"site": "lab"}, credential, T0)
    token = hub.auth.issue(TokenCreate(name="fuzz", role=Role.READ)).token
    return hub, TestClient(create_app(hub), headers={"Authorization": f"Bearer {token}"})


@EXAMPLE_COUNTS
def test_nothing_a_device_sends_breaks_ingest_reconcile_or_the_api(examples: int, tmp_path: Path) -> None:
    hub, api = _hub(tmp_path)
    controller, store = hub.controller, hub.store

    @fuzz_settings(examples)
    @given(devices, messages)
    def check(device_id: str, message: tuple[TopicKind, bytes]) -> None:
        kind, payload = message
        controller.ingest(device_id, kind, payload)  # what the MQTT callback calls: must not raise
        for device in store.list_devices():  # the store reads back what it took
            assert device.last_report is None or device.last_report.device_id == device.device_id
            assert device.last_report is None or device.last_report.generation <= MAX_GENERATION
        published = controller.reconcile()
        assert all(g <= MAX_GENERATION for g in published.values())
        event("published" if published else "nothing published")
        assert all(d.generation <= MAX_GENERATION for d in store.list_desired())
        for path in ["/api/v1/devices", "/api/v1/services", *[f"/api/v1/devices/{d}" for d in DEVICES]]:
            answer = api.get(path)
            assert answer.status_code in (200, 404), (path, answer.status_code, answer.text)
        assert api.get("/api/v1/devices").status_code == 200

    try:
        check()
    finally:
        api.close()
        hub.store.close()


def test_a_report_of_generation_2_63_minus_2_makes_the_hub_sign_nothing_past_the_cap(tmp_path: Path) -> None:
    """The unit case of the fuzz above: no OverflowError, no generation 2**63-1, no pass held up."""
    hub, api = _hub(tmp_path)
    lab = DeviceCapabilities(labels={"site": "lab"}).to_wire()

    def report(device: str, generation: int) -> bytes:
        return json.dumps({"deviceId": device, "generation": generation, "capabilities": lab}).encode()

    try:
        hub.controller.ingest("dev-1", TopicKind.REPORTED, report("dev-1", 2**63 - 2))
        hub.controller.ingest("dev-2", TopicKind.REPORTED, report("dev-2", 0))
        reports = {d.device_id: d.last_report for d in hub.store.list_devices()}
        assert reports["dev-1"] is None  # the impossible report was refused
        assert reports["dev-2"] is not None and reports["dev-2"].generation == 0
        hub.controller.ingest("dev-1", TopicKind.REPORTED, report("dev-1", MAX_GENERATION))  # possible, at the cap
        assert hub.controller.reconcile() == {"dev-2": 1}  # dev-1 gets nothing past the cap; dev-2 is served
        assert hub.store.get_desired("dev-1") is None
        assert api.get("/api/v1/devices").status_code == 200
    finally:
        api.close()
        hub.store.close()


topics = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda device, kind: f"{TOPIC_ROOT}/{device}/{kind}",
        st.one_of(
            st.sampled_from(DEVICES),
            st.text(max_size=12),
            st.sampled_from([x for x in INTERESTING if isinstance(x, str)]),
        ),
        st.one_of(st.sampled_from([k.value for k in TopicKind]), st.text(max_size=10)),
    ),
)


@EXAMPLE_COUNTS
def test_topics_parse_only_to_well_formed_device_ids(examples: int) -> None:
    @fuzz_settings(examples)
    @given(topics)
    def check(name: str) -> None:
        parsed = parse_topic(name)
        if parsed is not None:
            device_id, _kind = parsed
            assert check_device_id(device_id) == device_id and device_id.isprintable()
            assert not set(device_id) & set("/+#\n")

    check()
