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
    config_path,
    load_config,
    missing_token,
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
    with pytest.raises(ClientError, match=r"c\.toml: tokn: unknown key \(the config file knows hub, token\)"):
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
