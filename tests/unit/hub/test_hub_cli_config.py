"""Where the CLI takes its hub and token from, and the config file `edgefleet login` writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edgefleet.hub.cli.config import (
    DEFAULT_HUB,
    Config,
    Connection,
    allows_plain_http,
    config_path,
    load_config,
    missing_token,
    plain_http_refusal,
    resolve,
    write_config,
)
from edgefleet.hub.cli.main import main
from edgefleet.hub.errors import ClientError

CFG = Config(Path("/cfg.toml"), hub="http://hub-a:8080", token="tok-file")


@pytest.mark.parametrize(
    ("flag_hub", "flag_token", "env", "config", "expected"),
    [
        (None, None, {}, Config(Path("/c")), Connection(DEFAULT_HUB, None)),
        (None, None, {}, CFG, Connection("http://hub-a:8080", "tok-file")),
        (None, None, {"EDGEFLEET_TOKEN": "tok-env"}, CFG, Connection("http://hub-a:8080", "tok-env")),
        (None, "tok-flag", {"EDGEFLEET_TOKEN": "tok-env"}, CFG, Connection("http://hub-a:8080", "tok-flag")),
        ("http://hub-a:8080/", None, {}, CFG, Connection("http://hub-a:8080/", "tok-file")),
        # the file's token goes only to the file's hub
        ("http://evil:8080", None, {}, CFG, Connection("http://evil:8080", None, withheld_for="http://hub-a:8080")),
        (None, None, {"EDGEFLEET_HUB": "http://b"}, CFG, Connection("http://b", None, withheld_for="http://hub-a:8080")),
        ("http://b", "tok-flag", {}, CFG, Connection("http://b", "tok-flag")),
        (None, None, {}, Config(Path("/c"), token="t"), Connection(DEFAULT_HUB, "t")),  # a file naming no hub
        ("http://b", None, {"EDGEFLEET_HUB": "http://c"}, Config(Path("/c")), Connection("http://b", None)),
    ],
)  # fmt: skip
def test_flags_then_environment_then_config_file(
    flag_hub: str | None, flag_token: str | None, env: dict[str, str], config: Config, expected: Connection
) -> None:
    assert resolve(flag_hub, flag_token, env, config) == expected


def test_config_path() -> None:
    assert config_path({"EDGEFLEET_CONFIG": "/x/e.toml", "XDG_CONFIG_HOME": "/xdg"}) == Path("/x/e.toml")
    assert config_path({"XDG_CONFIG_HOME": "/xdg"}) == Path("/xdg/edgefleet/config.toml")
    assert config_path({}) == Path.home() / ".config" / "edgefleet" / "config.toml"


def test_missing_token_names_the_three_ways_in_one_line() -> None:
    message = missing_token(Connection("http://h", None), Path("/c.toml"))
    assert message == (
        "no token for the hub at http://h: give --token TOKEN, set EDGEFLEET_TOKEN, or run "
        "`edgefleet login --hub http://h` (it writes /c.toml)"
    )
    withheld = missing_token(Connection("http://h", None, withheld_for="http://a"), Path("/c.toml"))
    assert withheld.endswith("; the token in /c.toml is for http://a") and "\n" not in withheld


def test_write_then_load_round_trips_owner_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "conf" / "config.toml"
    token = 'eft_0123456789ab_"\\odd'
    write_config(path, "http://hub:8080", token)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_config(path) == Config(path, hub="http://hub:8080", token=token)
    write_config(path, "http://other", "t2")  # replaced, still 0600, no stray temp files
    assert load_config(path).hub == "http://other" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]
    assert capsys.readouterr().err == ""
    os.chmod(path, 0o644)
    load_config(path)
    assert "holds a token and is readable by others (mode 0644)" in capsys.readouterr().err


def test_a_broken_config_file_is_one_line_naming_the_file_and_key(tmp_path: Path) -> None:
    assert load_config(tmp_path / "none.toml") == Config(tmp_path / "none.toml")
    path = tmp_path / "c.toml"
    path.write_text('hub = "http://h"\ntokn = "x"\n')
    with pytest.raises(ClientError, match=r"c\.toml: tokn: unknown key \(the config file knows hub, token, ca_file\)"):
        load_config(path)
    path.write_text("hub = 3\n")
    with pytest.raises(ClientError, match=r"c\.toml: hub: expected a string"):
        load_config(path)
    path.write_text("hub = \n")
    with pytest.raises(ClientError, match=r"c\.toml: not valid TOML"):
        load_config(path)


def test_a_command_without_a_token_fails_before_calling_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGEFLEET_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("EDGEFLEET_TOKEN", raising=False)
    monkeypatch.delenv("EDGEFLEET_HUB", raising=False)
    assert main(["--hub", "http://127.0.0.1:9", "model", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no token for the hub at http://127.0.0.1:9: give --token TOKEN, set EDGEFLEET_TOKEN")
    assert err.count("\n") == 1


def test_the_ca_file_comes_from_the_flag_then_the_environment_then_the_file_for_its_own_hub() -> None:
    cfg = Config(Path("/c"), hub="https://hub-a:8443", token="t", ca_file="/etc/hub-a-ca.pem")
    assert resolve(None, None, {}, cfg).ca_file == "/etc/hub-a-ca.pem"
    assert resolve(None, None, {"EDGEFLEET_CA_FILE": "/env.pem"}, cfg).ca_file == "/env.pem"
    assert resolve(None, None, {"EDGEFLEET_CA_FILE": "/env.pem"}, cfg, "/flag.pem").ca_file == "/flag.pem"
    # like the token, the file's CA is for the file's hub only
    other = resolve("https://hub-b:8443", None, {}, cfg)
    assert (other.ca_file, other.token) == (None, None)


@pytest.mark.parametrize(
    ("hub", "allowed", "refused"),
    [
        ("http://127.0.0.1:8080", False, False),
        ("http://localhost:8080", False, False),
        ("http://[::1]:8080", False, False),
        ("https://hub.lan:8443", False, False),
        ("http://hub.lan:8080", False, True),
        ("http://10.0.0.5:8080", False, True),
        ("http://10.0.0.5:8080", True, False),
    ],
)
def test_a_token_goes_over_plain_http_only_on_loopback_or_when_allowed(hub: str, allowed: bool, refused: bool) -> None:
    refusal = plain_http_refusal(hub, allowed)
    assert (refusal is not None) == refused
    if refusal:
        assert "in clear" in refusal and "--tls" in refusal and "--allow-plain-http" in refusal
        assert "EDGEFLEET_ALLOW_PLAIN_HTTP=1" in refusal and "https://" in refusal


def test_plain_http_is_allowed_by_the_flag_or_the_environment() -> None:
    assert allows_plain_http(True, {}) and allows_plain_http(False, {"EDGEFLEET_ALLOW_PLAIN_HTTP": "1"})
    assert not allows_plain_http(False, {}) and not allows_plain_http(False, {"EDGEFLEET_ALLOW_PLAIN_HTTP": "0"})


def test_the_cli_refuses_to_send_a_token_over_plain_http_beyond_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGEFLEET_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("EDGEFLEET_ALLOW_PLAIN_HTTP", raising=False)
    assert main(["--hub", "http://192.0.2.1:9", "--token", "eft_x_secret", "model", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the hub at http://192.0.2.1:9 is plain HTTP") and err.count("\n") == 1
    assert "eft_x_secret" not in err


def test_the_config_file_keeps_the_ca_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    write_config(path, "https://hub:8443", "t", "/etc/hub-ca.pem")
    assert load_config(path) == Config(path, hub="https://hub:8443", token="t", ca_file="/etc/hub-ca.pem")
