"""The hub's API over HTTPS, for real over loopback: `hub serve --tls` with a certificate from the hub's
CA, the CLI and client trusting that CA (or refusing a hub they cannot verify, saying what to give),
and an agent downloading its artifacts over HTTPS, verified against the CA in its bootstrap bundle.

Who may not: a client without the CA, a client trusting another CA, plain HTTP to the TLS port, an
artifact cache or hub-key fetch trusting another CA or only the system's.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from edgefleet.agent.cache import ArtifactCache
from edgefleet.agent.errors import ArtifactDownloadError, HubKeyUnavailable
from edgefleet.agent.hubkey import resolve_hub_key
from edgefleet.agent.hubtls import HubTrust
from edgefleet.agent.settings import load_settings
from edgefleet.hub.certs import fingerprint
from edgefleet.hub.client import HubClient, trust
from edgefleet.hub.errors import ClientError
from edgefleet.hub.schemas import Role, TokenCreate
from edgefleet.hub.server import pki
from edgefleet.hub.server.ca import CertificateAuthority
from edgefleet.hub.server.runner import HubServer
from edgefleet.hub.server.settings import HubSettings
from edgefleet.protocol.digests import sha256_bytes
from tests.integration.test_agent_reconcile import QUICK_DISCOVERY, RunningAgent
from tests.integration.test_hub_downloads import MODEL, _artifact_urls, _deploy
from tests.support.agent_harness import FAKE_MODULE, kill_module_processes
from tests.support.identities import register
from tests.support.processes import Mosquitto, free_port, wait_for, wait_port


def _settings(tmp_path: Path, broker_url: str | None = None, **tls: object) -> HubSettings:
    broker = broker_url or f"mqtt://127.0.0.1:{free_port()}"  # none listens: the API is what is tested
    return HubSettings.model_validate({"data_dir": tmp_path / "hub", "port": 0, "broker_url": broker, **tls})


@pytest.fixture
def tls_hub(tmp_path: Path) -> Iterator[HubServer]:
    with HubServer(_settings(tmp_path, tls=True)) as server:
        yield server


def _token(hub: HubServer, role: Role = Role.ADMIN) -> str:
    assert hub.hub is not None
    return hub.hub.auth.issue(TokenCreate(name=f"tls-{secrets.token_hex(3)}", role=role)).token


def _hub_ca(hub: HubServer) -> Path:
    return hub.settings.ca_dir / "ca.pem"


def _other_ca(tmp_path: Path) -> Path:
    return CertificateAuthority.load_or_create(tmp_path / "other-ca").cert_path


def test_a_client_with_the_hub_ca_gets_in_and_one_without_it_is_told_which_ca_to_give(
    tls_hub: HubServer, tmp_path: Path
) -> None:
    token = _token(tls_hub)
    assert tls_hub.url.startswith("https://127.0.0.1:")
    with HubClient(tls_hub.url, token, ca_file=_hub_ca(tls_hub)) as client:
        assert client.whoami().role == Role.ADMIN
        info = client.hub_info()
    assert info.ca_certificate == _hub_ca(tls_hub).read_text()
    assert info.ca_fingerprint == fingerprint(info.ca_certificate)

    for ca_file, trusted in ((None, "the public CAs this CLI trusts"), (_other_ca(tmp_path), "the CA in")):
        with HubClient(tls_hub.url, token, ca_file=ca_file) as client, pytest.raises(ClientError) as refused:
            client.whoami()
        message = str(refused.value)
        assert message.startswith(f"the hub at {tls_hub.url} presented a certificate that {trusted}")
        assert "edgefleet hub ca --out hub-ca.pem" in message and "--ca-file hub-ca.pem" in message
        assert token not in message and "\n" not in message

    # plain HTTP to the TLS port gets no answer, and the CLI's client says to use https://
    plain = tls_hub.url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(plain + "/api/v1/health", timeout=10)
    with HubClient(plain, token) as client, pytest.raises(ClientError, match=r"use https://127\.0\.0\.1:"):
        client.whoami()


def test_a_certificate_that_does_not_name_the_host_is_refused_naming_the_fix(tmp_path: Path) -> None:
    with HubServer(_settings(tmp_path, tls=True, server_names=["localhost"])) as hub:
        assert hub.hub is not None and hub.hub.api_certificate is not None
        assert hub.hub.api_certificate.names == ("localhost",)
        with HubClient(hub.url, ca_file=_hub_ca(hub)) as client, pytest.raises(ClientError) as refused:
            client.health()
        assert "is not valid for 127.0.0.1" in str(refused.value) and "--server-name 127.0.0.1" in str(refused.value)
        with HubClient(hub.url.replace("127.0.0.1", "localhost"), ca_file=_hub_ca(hub)) as client:
            assert client.health().status == "ok"


def test_the_operators_own_certificate_is_served(tmp_path: Path) -> None:
    public = CertificateAuthority.load_or_create(tmp_path / "public-ca")  # stands in for a public CA
    cert, key = public.issue_server(["127.0.0.1"], datetime.now(timezone.utc))
    (tmp_path / "api.pem").write_bytes(pki.cert_pem(cert))
    (tmp_path / "api.key").write_bytes(pki.key_pem(key))
    (tmp_path / "api.key").chmod(0o600)
    settings = _settings(tmp_path, tls_cert_file=tmp_path / "api.pem", tls_key_file=tmp_path / "api.key")
    with HubServer(settings) as hub:
        assert hub.url.startswith("https://")
        with HubClient(hub.url, ca_file=public.cert_path) as client:
            assert client.health().status == "ok"
        with HubClient(hub.url, ca_file=_hub_ca(hub)) as client, pytest.raises(ClientError, match="did not issue"):
            client.health()


def test_an_agent_downloads_its_artifacts_over_https_verifying_its_bundles_ca(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    with HubServer(_settings(tmp_path, mosquitto.url, tls=True)) as hub:
        assert hub.hub is not None
        wait_for(hub.hub.controller.connected.is_set, 15, what="hub connected to the broker")
        identity = register(hub, "dev-tls", tmp_path)
        bundle = json.loads(identity.bundle_file.read_text())
        assert bundle["hubUrl"] == hub.url and hub.url.startswith("https://")
        settings = load_settings(
            None,
            bootstrap=identity.bundle_file,
            data_dir=tmp_path / "agent",
            mqtt={"reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
            modules={"command": FAKE_MODULE, "stop_grace_s": 3.0},
            discovery={"command": QUICK_DISCOVERY},
            retry={"base_s": 0.2, "max_s": 1.0},
            reporting={"heartbeat_s": 5.0, "telemetry_interval_s": 1.0},
        )
        assert settings.hub_ca_file is None  # the default: the bundle's CA
        running = RunningAgent(settings)
        try:
            with httpx.Client(
                base_url=hub.url + "/api/v1",
                verify=trust(_hub_ca(hub)),
                timeout=20,
                headers={"Authorization": f"Bearer {_token(hub)}"},
            ) as api:
                _deploy(api, "over-tls", ["dev-tls"])

                def healthy() -> bool:
                    return bool(api.get("/services/over-tls").json()["state"] == "Healthy")

                wait_for(healthy, 60, what="over-tls Healthy on dev-tls")
            cached = tmp_path / "agent" / "cache" / "blobs" / sha256_bytes(MODEL).removeprefix("sha256:")
            assert cached.read_bytes() == MODEL
        finally:
            running.stop()
            kill_module_processes("dev-tls")


def test_the_downloader_refuses_a_hub_whose_certificate_is_from_another_ca(tmp_path: Path) -> None:
    with HubServer(_settings(tmp_path, tls=True)) as hub:
        identity = register(hub, "dev-a", tmp_path)
        with httpx.Client(
            base_url=hub.url + "/api/v1",
            verify=trust(_hub_ca(hub)),
            timeout=20,
            headers={"Authorization": f"Bearer {_token(hub)}"},
        ) as api:
            _deploy(api, "only-a", ["dev-a"])
        url = next(u for path, u in _artifact_urls(hub, "dev-a").items() if path.startswith("model/"))
        assert url.startswith("https://")
        digest, size = sha256_bytes(MODEL), len(MODEL)

        good = ArtifactCache(tmp_path / "good", trust=HubTrust.load(identity.ca_file))
        assert good.fetch(digest, url, size).read_bytes() == MODEL

        for trust_, what in ((HubTrust.load(_other_ca(tmp_path)), "the CA in"), (HubTrust(), "the system's")):
            cache = ArtifactCache(tmp_path / f"bad-{secrets.token_hex(2)}", trust=trust_)
            with pytest.raises(ArtifactDownloadError) as refused:
                cache.fetch(digest, url, size)
            message = str(refused.value)
            assert f"the hub's certificate does not verify against {what}" in message
            assert "hub_ca_file (EDGEFLEET_AGENT_HUB_CA_FILE" in message
            assert "grant=" not in message and not cache.has(digest)

        # the hub key on first use, over https: from the hub its CA vouches for, never from another
        key = hub.hub.keys.current if hub.hub else None
        assert key is not None
        fetched = resolve_hub_key(
            None, tmp_path / "pin-good", hub.url, fingerprint=key.fingerprint, trust=HubTrust.load(identity.ca_file)
        )
        assert fetched == key.public_key_b64
        with pytest.raises(HubKeyUnavailable, match="does not verify against the CA in"):
            resolve_hub_key(
                None,
                tmp_path / "pin-bad",
                hub.url,
                fingerprint=key.fingerprint,
                trust=HubTrust.load(_other_ca(tmp_path)),
            )
        assert not (tmp_path / "pin-bad" / "hub-key.json").exists()


# the CLI, as an operator runs it --------------------------------------------------------------
def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")} | (env or {})
    return subprocess.run([sys.executable, "-m", "hub", *args], capture_output=True, text=True, timeout=120, env=full)


def test_the_cli_serves_https_and_trusts_the_hub_ca_the_operator_gives_it(tmp_path: Path) -> None:
    data_dir, port, log = tmp_path / "hub", free_port(), tmp_path / "hub.log"
    made = _cli(
        "-o", "json", "hub", "token", "create", "--role", "admin", "--name", "root", "--data-dir", str(data_dir)
    )
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["token"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "hub", "serve", "--tls", "--port", str(port), "--data-dir", str(data_dir),
             "--broker", f"mqtt://127.0.0.1:{free_port()}"],
            stdout=subprocess.DEVNULL, stderr=out, env={k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")},
        )  # fmt: skip
    try:
        wait_port(port, timeout=60)
        url = f"https://127.0.0.1:{port}"
        config = tmp_path / "cli.toml"
        env = {"EDGEFLEET_HUB": url, "EDGEFLEET_TOKEN": token, "EDGEFLEET_CONFIG": str(config)}

        # on the hub machine: the CA from the data dir
        ca = tmp_path / "hub-ca.pem"
        written = _cli("hub", "ca", "--data-dir", str(data_dir), "--out", str(ca))
        assert written.returncode == 0, written.stderr
        ca_fingerprint = fingerprint(ca.read_text())
        assert (
            f"fingerprint {ca_fingerprint}" in written.stdout and ca.read_text() == (data_dir / "ca/ca.pem").read_text()
        )

        # without it: one line saying what to give; with it (flag or environment): in
        refused = _cli("whoami", env=env)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
        assert refused.stderr.startswith(f"error: the hub at {url} presented a certificate that the public CAs")
        assert "--ca-file hub-ca.pem" in refused.stderr and token not in refused.stderr
        assert _cli("--ca-file", str(ca), "whoami", env=env).returncode == 0
        assert _cli("whoami", env=env | {"EDGEFLEET_CA_FILE": str(ca)}).returncode == 0
        missing = _cli("--ca-file", str(tmp_path / "none.pem"), "whoami", env=env)
        assert missing.returncode == 1 and "none.pem does not exist; `edgefleet hub ca --out" in missing.stderr

        # login keeps the CA with the hub and token; later commands need neither flag nor variable
        logged = _cli(
            "login", "--hub", url, "--ca-file", str(ca), "--token", token, env={"EDGEFLEET_CONFIG": str(config)}
        )
        assert logged.returncode == 0, logged.stderr
        assert f'ca_file = "{ca.resolve()}"' in config.read_text()
        info = _cli("hub", "info", env={"EDGEFLEET_CONFIG": str(config)})
        assert info.returncode == 0, info.stderr
        assert f"CA:          {ca_fingerprint}" in info.stdout

        # plain HTTP to the TLS port: one line saying to use https://
        plain = _cli("--ca-file", str(ca), "whoami", env=env | {"EDGEFLEET_HUB": f"http://127.0.0.1:{port}"})
        assert plain.returncode == 1 and f"use https://127.0.0.1:{port}" in plain.stderr

        # from elsewhere: fetched, trust on first use, said so; checked when a fingerprint is given
        fetched = _cli("-o", "json", "hub", "ca", "--fetch", "--out", str(tmp_path / "fetched.pem"), env=env)
        assert fetched.returncode == 0, fetched.stderr
        assert "without verifying who answered (trust on first use)" in fetched.stderr
        assert (
            json.loads(fetched.stdout)["fingerprint"] == ca_fingerprint and not json.loads(fetched.stdout)["verified"]
        )
        assert (tmp_path / "fetched.pem").read_text() == ca.read_text()
        checked = _cli("hub", "ca", "--fetch", "--fingerprint", ca_fingerprint, env=env)
        assert checked.returncode == 0 and checked.stdout.startswith("-----BEGIN CERTIFICATE-----")
        assert "trust on first use" not in checked.stderr
        wrong = _cli("hub", "ca", "--fetch", "--fingerprint", "sha256:" + "0" * 64, env=env)
        assert wrong.returncode == 1 and f"offers a CA with fingerprint {ca_fingerprint}, not the" in wrong.stderr
    finally:
        proc.terminate()
        proc.wait(15)
    hub_log = log.read_text()
    assert f"hub API listening on https://127.0.0.1:{port}" in hub_log
    assert "issued the API's certificate" in hub_log and token not in hub_log
    assert (data_dir / "identity" / "api.key").stat().st_mode & 0o777 == 0o600
