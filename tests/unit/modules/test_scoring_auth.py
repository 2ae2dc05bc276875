"""Scoring keys in the module, without sockets: which routes need a key, how one is presented and
compared, how the keys and TLS files are configured, and what the service answers without one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgefleet.modules.scoring import auth, context
from edgefleet.modules.scoring.config import ServerConfig, parse_config
from edgefleet.modules.scoring.errors import ConfigError
from edgefleet.modules.scoring.service import ScoringService

DIGITS = Path(__file__).resolve().parents[3] / "modules" / "samples" / "digits"
PRIMARY, SECONDARY = "primary-key-0123456789abcdef", "secondary-key-0123456789abcdef"
KEYS = (PRIMARY, SECONDARY)


@pytest.mark.parametrize(
    ("method", "path", "needed"),
    [
        ("GET", "/", False),
        ("GET", "/v2/health/live", False),
        ("GET", "/v2/health/ready", False),
        ("GET", "/v2/health/ready/?x=1", False),
        ("HEAD", "/", False),
        ("POST", "/", True),  # only reading the health routes is open
        ("POST", "/score", True),
        ("GET", "/score", True),
        ("POST", "/v2/models/digits/infer", True),
        ("GET", "/v2/models/digits", True),
        ("GET", "/v2/models/digits/ready", True),
        ("GET", "/v2", True),
        ("GET", "/edgefleet/status", True),
        ("GET", "//v2/health/ready", True),  # not exactly an open route: closed
        ("GET", "/v2/health/ready%2F", True),
        ("GET", "/nope", True),  # unknown routes too: a route added later is closed until listed
    ],
)
def test_only_the_health_routes_are_open(method: str, path: str, needed: bool) -> None:
    assert auth.needs_key(method, path) is needed


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"Authorization": f"Bearer {PRIMARY}"}, PRIMARY),
        ({"authorization": f"bearer   {PRIMARY} "}, PRIMARY),
        ({"Authorization": f"Basic {PRIMARY}"}, None),
        ({"Authorization": "Bearer"}, None),
        ({"Authorization": "Bearer "}, None),
        ({"X-Api-Key": PRIMARY}, None),
        ({}, None),
    ],
)
def test_the_key_is_the_bearer_token(headers: dict[str, str], key: str | None) -> None:
    assert auth.presented_key(headers) == key


def test_either_key_matches_and_nothing_else_does() -> None:
    assert auth.key_matches(PRIMARY, KEYS) and auth.key_matches(SECONDARY, KEYS)
    for wrong in (None, "", PRIMARY[:-1], PRIMARY + "x", PRIMARY.upper(), "\udcff"):
        assert not auth.key_matches(wrong, KEYS)
    assert not auth.key_matches(PRIMARY, ())


def test_refusal_says_what_to_send_and_never_echoes_the_key() -> None:
    missing = auth.refusal("POST", "/score", {}, KEYS)
    assert missing is not None and "Authorization: Bearer <key>" in missing
    wrong = auth.refusal("POST", "/score", {"Authorization": "Bearer guessed-key-0123456789"}, KEYS)
    assert wrong is not None and "not valid" in wrong and "guessed" not in wrong
    assert auth.refusal("POST", "/score", {"Authorization": f"Bearer {SECONDARY}"}, KEYS) is None
    assert auth.refusal("POST", "/score", {}, ()) is None  # no keys configured: open, as before


def test_keys_come_from_the_environment_only_and_are_not_shown() -> None:
    env = {"EDGEFLEET_MODEL_DIR": "/m", "EDGEFLEET_PRIMARY_KEY": PRIMARY, "EDGEFLEET_SECONDARY_KEY": SECONDARY}
    cfg = parse_config([], env)
    assert cfg.auth_keys == KEYS
    assert PRIMARY not in repr(cfg)
    with pytest.raises(ConfigError, match="unknown option '--primary-key'"):  # there is no flag for a key
        parse_config(["--model-dir", "/m", "--primary-key", PRIMARY], {})
    with pytest.raises(ConfigError, match="EDGEFLEET_PRIMARY_KEY: not a scoring key") as err:
        parse_config([], {"EDGEFLEET_MODEL_DIR": "/m", "EDGEFLEET_PRIMARY_KEY": "short secret"})
    assert "short secret" not in str(err.value)
    assert parse_config([], {"EDGEFLEET_MODEL_DIR": "/m", "EDGEFLEET_SECONDARY_KEY": ""}).auth_keys == ()


def test_tls_needs_a_certificate_and_its_key() -> None:
    cfg = parse_config(["--model-dir", "/m", "--tls-cert", "/t/c.pem", "--tls-key", "/t/k.pem"], {})
    assert (cfg.tls_cert, cfg.tls_key) == (Path("/t/c.pem"), Path("/t/k.pem"))
    env = {"EDGEFLEET_MODEL_DIR": "/m", "EDGEFLEET_TLS_CERT": "/t/c.pem", "EDGEFLEET_TLS_KEY": "/t/k.pem"}
    assert parse_config([], env).tls_key == Path("/t/k.pem")
    with pytest.raises(ConfigError, match="needs both --tls-cert and --tls-key"):
        parse_config(["--model-dir", "/m", "--tls-cert", "/t/c.pem"], {})


@pytest.mark.parametrize("script", ["/etc/passwd", "../model/x.py", "a/../../b.py"])
def test_an_entry_script_outside_the_source_directory_is_a_config_error(script: str) -> None:
    with pytest.raises(ConfigError, match="relative path inside its directory"):
        parse_config(["--model-dir", "/m", "--source-dir", "/s", "--entry-script", script], {})


def test_an_entry_script_symlinked_out_of_the_source_directory_fails_to_initialise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZUREML_MODEL_DIR", "")
    monkeypatch.setattr(context, "_active", None)
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(DIGITS / "digits_fp32.onnx", model)
    outside = tmp_path / "elsewhere.py"
    outside.write_text("def init():\n    pass\n\ndef run(raw):\n    return 'outside'\n")
    src = tmp_path / "src"
    src.mkdir()
    (src / "score.py").symlink_to(outside)
    service = ScoringService(ServerConfig(model_dir=model, source_dir=src, entry_script="score.py"))
    assert service.initialise().value == "Failed"
    assert "outside the source directory" in service.message


def test_the_service_answers_401_json_without_a_valid_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZUREML_MODEL_DIR", "")
    monkeypatch.setattr(context, "_active", None)
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(DIGITS / "digits_fp32.onnx", model)
    service = ScoringService(ServerConfig(model_dir=model, auth_keys=KEYS))
    assert service.initialise().value == "Ready"
    body = json.dumps({"data": [[0.0] * 64]}).encode()
    refused = service.handle("POST", "/score", {}, body)
    assert refused.status == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in json.loads(refused.body)["error"]
    assert service.handle("POST", "/score", {"Authorization": "Bearer nope-nope-nope-nope"}, body).status == 401
    for key in KEYS:
        assert service.handle("POST", "/score", {"Authorization": f"Bearer {key}"}, body).status == 200
    assert service.handle("GET", "/", {}, b"").status == 200
    assert service.handle("GET", "/v2/health/ready", {}, b"").status == 200
    assert service.handle("GET", "/v2/models/digits_fp32", {}, b"").status == 401
