"""The broker configuration `edgefleet hub broker-config` writes: ACL from the topic names, TLS listener."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from edgefleet.hub.server.broker_config import (
    BrokerFiles,
    BrokerOptions,
    live_passwords,
    mosquitto_password_hash,
    render_acl,
    render_mosquitto_conf,
    revoked_certificates,
    write_for_hub,
)
from edgefleet.hub.server.store import CredentialRecord
from edgefleet.protocol.topics import HUB_IDENTITY, TopicKind, check_device_id, topic

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def test_acl_gives_the_hub_everything_and_a_device_only_its_own_topics() -> None:
    assert render_acl().splitlines()[1:] == [
        "user edgefleet-hub",
        "topic readwrite edgefleet/v1/devices/#",
        "",
        "# every other client is a device, and only its own topics are its",
        "pattern read edgefleet/v1/devices/%u/desired",
        "pattern read edgefleet/v1/devices/%u/commands",
        "pattern write edgefleet/v1/devices/%u/reported",
        "pattern write edgefleet/v1/devices/%u/presence",
        "pattern write edgefleet/v1/devices/%u/telemetry",
        "pattern write edgefleet/v1/devices/%u/responses",
    ]
    # the patterns are the very topics the hub and agents use
    for kind in TopicKind:
        assert topic("dev-1", kind).replace("dev-1", "%u") in render_acl()
    assert "${username}" in render_acl("${username}")  # EMQX's placeholder


def test_no_device_can_take_the_hubs_identity() -> None:
    for name in (HUB_IDENTITY, HUB_IDENTITY.upper()):
        with pytest.raises(ValueError, match="reserved for the hub"):
            check_device_id(name)


def test_config_locks_the_listener_down(tmp_path: Path) -> None:
    conf = render_mosquitto_conf(tmp_path, BrokerOptions(port=8883, user="mosquitto")).splitlines()
    for line in [
        "per_listener_settings false",
        "allow_anonymous false",
        f"acl_file {tmp_path / 'acl'}",
        "user mosquitto",
        "listener 8883 127.0.0.1",
        f"certfile {tmp_path / 'server.pem'}",
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
        f"crlfile {tmp_path / 'crl.pem'}",
        "max_queued_messages 100000",  # the hub's session holds a whole fleet's reconnect storm
    ]:
        assert line in conf
    # listener options before the first listener would open a default listener on 1883: none may
    assert conf.index("listener 8883 127.0.0.1") < conf.index("use_username_as_clientid true")
    password = render_mosquitto_conf(tmp_path, BrokerOptions(auth="password", user="mosquitto")).splitlines()
    assert f"password_file {tmp_path / 'passwd'}" in password and "require_certificate false" in password
    assert not [line for line in password if line.startswith("crlfile")]


def test_password_hash_is_mosquittos_pbkdf2_sha512_format() -> None:
    salt = b"0123456789ab"
    hashed = mosquitto_password_hash("secret", salt)
    _, seven, iterations, salt_b64, digest_b64 = hashed.split("$")
    assert (seven, iterations, base64.b64decode(salt_b64)) == ("7", "101", salt)
    assert base64.b64decode(digest_b64) == hashlib.pbkdf2_hmac("sha512", b"secret", salt, 101)


def test_revocations_and_passwords_come_from_the_credentials() -> None:
    cert = CredentialRecord(device_id="a", kind="certificate", serial="ff", issued_at=T0, not_after=T0)
    revoked = cert.model_copy(update={"revoked_at": T0})
    pw = CredentialRecord(device_id="b", kind="password", password_hash="$7$h", issued_at=T0)
    assert [r.serial for r in revoked_certificates([cert, revoked, pw])] == [0xFF]
    assert live_passwords([cert, pw, pw.model_copy(update={"revoked_at": T0, "device_id": "c"})]) == [("b", "$7$h")]


def test_written_files_key_modes_and_the_record_for_the_hub(tmp_path: Path) -> None:
    directory, files = write_for_hub(tmp_path / "hub", None, tmp_path / "broker", BrokerOptions(port=18883))
    assert sorted(f.name for f in files) == ["acl", "ca.pem", "crl.pem", "mosquitto.conf", "server.key", "server.pem"]
    assert (directory / "server.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "hub" / "ca" / "ca.key").exists()  # the CA is made if the hub never ran
    assert json.loads((tmp_path / "hub" / "broker-config.json").read_text())["dir"] == str(directory)
    recorded = BrokerFiles.recorded(tmp_path / "hub")
    assert recorded is not None and recorded.directory == directory and recorded.auth == "certificate"
    assert not recorded.reload().reloaded  # no broker runs: says what to run
    assert f"kill -HUP $(cat {directory / 'mosquitto.pid'})" in recorded.reload().message
