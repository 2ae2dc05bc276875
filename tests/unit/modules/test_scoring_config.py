from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgefleet.modules.scoring.config import DEFAULT_PORT, parse_config
from edgefleet.modules.scoring.errors import ConfigError


def test_command_line_options() -> None:
    cfg = parse_config(
        [
            "--model-dir", "/m", "--source-dir", "/s", "--entry-script", "score.py", "--name", "digits",
            "--version", "3", "--port", "0", "--accelerator", "fpga, OpenCL,cpu", "--accelerator-required",
            "--status-file", "/tmp/st.json", "--host", "0.0.0.0",
        ],
        {},
    )  # fmt: skip
    assert cfg.model_dir == Path("/m")
    assert cfg.entry_script_path == Path("/s/score.py")
    assert (cfg.model_name, cfg.model_version, cfg.port, cfg.host) == ("digits", "3", 0, "0.0.0.0")
    assert cfg.accelerator_prefer == ("fpga", "opencl", "cpu")
    assert cfg.accelerator_required is True
    assert cfg.status_file == Path("/tmp/st.json")


def test_environment_alone_configures_the_server() -> None:
    env = {
        "EDGEFLEET_MODEL_DIR": "/m",
        "EDGEFLEET_ENTRY_SCRIPT": "score.py",
        "EDGEFLEET_SOURCE_DIR": "/src",
        "EDGEFLEET_MODEL_NAME": "digits",
        "EDGEFLEET_PORT": "6000",
        "EDGEFLEET_HOST": "0.0.0.0",
        "EDGEFLEET_ACCELERATOR_PREFER": "opencl,cpu",
        "EDGEFLEET_ACCELERATOR_REQUIRED": "false",
        "EDGEFLEET_STATUS_FILE": "/run/status.json",
    }
    cfg = parse_config([], env)
    assert cfg.entry_script_path == Path("/src/score.py")
    assert (cfg.model_name, cfg.port, cfg.host) == ("digits", 6000, "0.0.0.0")
    assert cfg.accelerator_prefer == ("opencl", "cpu")
    assert cfg.accelerator_required is False
    assert cfg.status_file == Path("/run/status.json")


def test_command_line_wins_over_environment() -> None:
    cfg = parse_config(["--port", "7000"], {"EDGEFLEET_MODEL_DIR": "/m", "EDGEFLEET_PORT": "6000"})
    assert cfg.port == 7000


def test_defaults_are_no_code_cpu_on_loopback() -> None:
    cfg = parse_config(["--model-dir", "/m"], {})
    assert cfg.entry_script_path is None
    assert (cfg.host, cfg.port, cfg.accelerator_prefer, cfg.accelerator_required) == (
        "127.0.0.1",
        DEFAULT_PORT,
        ("cpu",),
        False,
    )


def test_agent_identification_arguments_are_ignored() -> None:
    cfg = parse_config(
        [
            "--model-dir",
            "/m",
            "--edgefleet-device",
            "dev-1",
            "--edgefleet-module",
            "digits-svc",
            "--edgefleet-spec=abc",
        ],
        {},
    )
    assert cfg.model_dir == Path("/m")


@pytest.mark.parametrize(
    ("argv", "env", "fragment"),
    [
        ([], {}, "--model-dir"),
        (["--model-dir", "/m", "--bogus", "1"], {}, "'--bogus'"),
        (["--model-dir", "/m", "--port", "http"], {}, "--port: expected an integer"),
        (["--model-dir", "/m"], {"EDGEFLEET_PORT": "70000"}, "EDGEFLEET_PORT: 70000 is outside"),
        (["--model-dir", "/m", "--accelerator", "tpu"], {}, "--accelerator: 'tpu'"),
        (["--model-dir", "/m", "--accelerator", "cpu,cpu"], {}, "twice"),
        (["--model-dir", "/m"], {"EDGEFLEET_ACCELERATOR_REQUIRED": "maybe"}, "EDGEFLEET_ACCELERATOR_REQUIRED"),
    ],
)
def test_invalid_configuration_names_the_option(argv: list[str], env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(argv, env)
    assert fragment in str(info.value)


def test_serving_options_from_the_command_line_and_the_environment() -> None:
    cfg = parse_config(
        ["--model-dir", "/m", "--workers", "3", "--cpu", "1.5", "--max-concurrent-requests", "10"],
        {"EDGEFLEET_MAX_QUEUE_WAIT_MS": "250", "EDGEFLEET_TRANSPORT": "Threading", "EDGEFLEET_WORKERS": "1"},
    )
    assert (cfg.workers, cfg.cpu, cfg.max_concurrent_requests, cfg.max_queue_wait_ms) == (3, 1.5, 10, 250)
    assert cfg.transport == "threading"
    defaults = parse_config(["--model-dir", "/m"], {"EDGEFLEET_WORKERS": ""})  # empty: not set
    assert (defaults.transport, defaults.workers, defaults.cpu) == ("asyncio", None, None)
    assert (defaults.max_concurrent_requests, defaults.max_queue_wait_ms) == (64, 500)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--workers", "0"], "--workers: 0 is outside 1..64"),
        (["--cpu", "0"], "--cpu: '0' is not a number of cores"),
        (["--cpu", "nan"], "--cpu: 'nan' is not a number of cores"),
        (["--cpu", "two"], "--cpu: expected a number of cores"),
        (["--max-concurrent-requests", "-1"], "--max-concurrent-requests: -1 is outside"),
        (["--max-queue-wait-ms", "0"], "--max-queue-wait-ms: 0 is outside"),
        (["--transport", "twisted"], "--transport: 'twisted' must be one of asyncio, threading"),
    ],
)
def test_bad_serving_options_are_config_errors(args: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        parse_config(["--model-dir", "/m", *args], {})
