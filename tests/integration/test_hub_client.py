"""The typed client against a real hub and Mosquitto: the API's schemas in, the API's errors out.

What the CLI prints with ``-o json`` is the client's schema dumped again, so each answer must dump
to exactly the JSON the API sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edgefleet.hub.cli.bootstrap import provision
from edgefleet.hub.cli.output import to_json
from edgefleet.hub.client import HubClient
from edgefleet.hub.errors import Conflict, Forbidden, InvalidRequest, MethodTimeout, NotFound, Unauthenticated
from edgefleet.hub.schemas import DeviceView, FileEntry, Health, HubInfo, ModelView, Role, ServiceView, TokenView
from edgefleet.hub.server.runner import HubServer
from edgefleet.hub.server.settings import HubSettings
from edgefleet.protocol.digests import sha256_bytes
from edgefleet.protocol.models import DirectMethodResponse, ModuleState, ModuleStatus
from tests.integration.test_hub_api import token_in
from tests.integration.test_hub_controller import FakeDevice
from tests.support.processes import Mosquitto, wait_for

MODEL = b"onnx" * 500


@pytest.fixture
def admin_token(tmp_path: Path) -> str:
    return token_in(tmp_path / "hub")


@pytest.fixture
def hub_url(tmp_path: Path, mosquitto: Mosquitto, admin_token: str) -> Iterator[str]:
    settings = HubSettings(data_dir=tmp_path / "hub", port=0, broker_url=mosquitto.url)
    with HubServer(settings) as server:
        assert server.hub is not None
        wait_for(server.hub.controller.connected.is_set, 15, what="hub connected to the broker")
        yield server.url


@pytest.fixture
def client(hub_url: str, admin_token: str) -> Iterator[HubClient]:
    with HubClient(hub_url, admin_token) as c:
        yield c


def _same_json(answer: object, api_json: object) -> None:
    assert json.loads(to_json(answer)) == api_json


def test_every_answer_is_its_schema_and_dumps_to_the_api_json(
    tmp_path: Path, client: HubClient, hub_url: str, mosquitto: Mosquitto, admin_token: str
) -> None:
    provision(client, "dev-1", {"site": "lab"}, tmp_path / "dev-1.bootstrap.json")
    device = FakeDevice(mosquitto, "dev-1", {"site": "lab"})
    raw = httpx.Client(base_url=hub_url + "/api/v1", timeout=20, headers={"Authorization": f"Bearer {admin_token}"})
    try:
        device.report(0)
        wait_for(lambda: client.get_device("dev-1").last_seen, 15, what="the device's first report")
        blob = tmp_path / "m.onnx"
        blob.write_bytes(MODEL)
        digest = sha256_bytes(MODEL)
        assert not client.blob_exists(digest)
        stored = client.upload_blob(blob, digest)
        assert (stored.digest, stored.size, stored.created) == (digest, len(MODEL), True)
        assert client.blob_exists(digest) and client.upload_blob(blob, digest).created is False

        model = client.create_model("digits", [FileEntry(path="m.onnx", digest=digest, size=len(MODEL))], {"a": "b"})
        assert isinstance(model, ModelView) and (model.name, model.version, model.tags) == ("digits", 1, {"a": "b"})
        service = client.deploy("svc", ["digits:1"], deployment_config={"target": {"labels": {"site": "lab"}}})
        assert isinstance(service, ServiceView) and service.state == ModuleState.TRANSITIONING
        manifest = device.next_manifest(client.hub_info().public_key, 0)
        device.report(
            manifest.generation,
            [ModuleStatus(name="svc", service="svc", state=ModuleState.HEALTHY, endpoint="http://e", backend="cpu")],
        )
        wait_for(lambda: client.get_service("svc").state == ModuleState.HEALTHY, 15, what="service Healthy")

        answers = {
            "/health": (client.health(), Health),
            "/hub": (client.hub_info(), HubInfo),
            "/whoami": (client.whoami(), TokenView),
            "/tokens": (client.list_tokens(), list),
            "/models": (client.list_models(), list),
            "/models?name=digits": (client.list_models("digits"), list),
            "/models/digits/versions/1": (client.get_model("digits", 1), ModelView),
            "/services": (client.list_services(), list),
            "/services/svc": (client.get_service("svc"), ServiceView),
            "/devices": (client.list_devices(), list),
            "/devices/dev-1": (client.get_device("dev-1"), DeviceView),
        }
        for path, (answer, schema) in answers.items():
            assert isinstance(answer, schema), path
            _same_json(answer, raw.get(path).json())
        assert isinstance(client.list_devices()[0], DeviceView) and isinstance(client.list_services()[0], ServiceView)
        assert client.get_device("dev-1").last_report is not None

        pong = client.call_method("dev-1", "ping", {}, timeout=10)
        assert isinstance(pong, DirectMethodResponse) and pong.status == 200 and pong.payload == {"method": "ping"}

        with pytest.raises(Conflict, match="used by service"):
            client.delete_model("digits", 1)
        client.delete_service("svc")
        with pytest.raises(NotFound, match=r"service svc does not exist \(see `edgefleet service list`\)"):
            client.get_service("svc")
        device.answer_methods = False
        with pytest.raises(MethodTimeout, match="did not answer 'ping' within 1 s"):
            client.call_method("dev-1", "ping", {}, timeout=1)
    finally:
        raw.close()
        device.close()


def test_requests_are_judged_by_the_hub_in_its_words(tmp_path: Path, client: HubClient) -> None:
    with pytest.raises(NotFound, match=r"model digits:1 does not exist \(no version of it is registered\)"):
        client.get_model("digits", 1)
    with pytest.raises(InvalidRequest, match=r"^invalid request: name: String should match pattern"):
        client.create_model("bad name", [FileEntry(path="m", digest=sha256_bytes(b"x"), size=1)])
    with pytest.raises(InvalidRequest, match=r"^invalid request: timeoutS: Input should be less than or equal to 300"):
        client.call_method("dev-9", "ping", {}, timeout=500)


def test_tokens_through_the_client_and_refusals_as_the_hubs_errors(hub_url: str, client: HubClient) -> None:
    created = client.create_token("ci-reader", Role.READ, expires_in_days=30)
    assert created.role == Role.READ and created.expires_at is not None
    with HubClient(hub_url, created.token) as reader:
        assert reader.whoami().name == "ci-reader" and reader.list_models() == []
        with pytest.raises(Forbidden, match=r"^POST /api/v1/services needs the deploy role; token 'ci-reader'"):
            reader.deploy("svc", ["digits:1"])
        with pytest.raises(Forbidden, match="needs the admin role"):
            reader.create_token("mine", Role.ADMIN)
        assert client.revoke_token("ci-reader").state == "revoked"
        with pytest.raises(Unauthenticated, match=r"'ci-reader' .* was revoked"):
            reader.list_models()
    with HubClient(hub_url) as anonymous:
        assert anonymous.health().status == "ok" and anonymous.hub_info().public_key
        with pytest.raises(Unauthenticated, match="this route needs a token with the read role and none was sent"):
            anonymous.list_services()
    with pytest.raises(InvalidRequest, match="role: Input should be 'read', 'deploy' or 'admin'"):
        client.create_token("x", "superuser")
    assert [t.name for t in client.list_tokens()] == ["test-admin", "ci-reader"]
