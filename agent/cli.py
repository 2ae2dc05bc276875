"""``edgefleet-agent``: run the device agent, or show what accelerators it discovers.

    edgefleet-agent --bootstrap dev-1.bootstrap.json [--data-dir D] [--config FILE] [--stop-modules-on-exit]
    edgefleet-agent --device-id dev-1 --hub http://127.0.0.1:8080 --broker mqtt://127.0.0.1:1883 \\
        [--data-dir D] [--hub-key B64 | --hub-key-fingerprint sha256:HEX] [--config FILE]
    edgefleet-agent accelerators [--output table|json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from edgefleet.agent.errors import AgentError
from edgefleet.agent.settings import AgentSettings, DiscoverySettings, environment_settings, load_settings
from edgefleet.protocol.labels import label_arg


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgefleet-agent", description="edgefleet device agent")
    p.add_argument(
        "--bootstrap", type=Path, help="bootstrap bundle from `edgefleet device register` (id, URLs, keys, identity)"
    )
    p.add_argument("--device-id", help="this device's id (also its MQTT identity); default: the bundle's")
    p.add_argument("--hub", dest="hub_url", help="hub base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--broker", dest="broker_url", help="MQTT broker URL, e.g. mqtts://broker.lan:8883 (TLS)")
    p.add_argument(
        "--data-dir", type=Path, help="state, cache and module directories (default ./.edgefleet/agent/<id>)"
    )
    p.add_argument(
        "--label", action="append", type=label_arg, default=[], help="label to report, key=value (information only)"
    )
    p.add_argument(
        "--hub-key", dest="hub_public_key", help="the hub's base64 ed25519 public key (default: the bundle's)"
    )
    p.add_argument(
        "--hub-key-fingerprint",
        help="without a key: pin the hub's key on first use if its fingerprint is this sha256:HEX",
    )
    p.add_argument(
        "--hub-ca-file", type=Path, help="CA an https:// hub's certificate must chain to (default: the bundle's CA)"
    )
    p.add_argument("--config", type=Path, help="settings file (JSON or TOML)")
    p.add_argument("--fpga-sim", metavar="BOARD", help="give this device a simulated FPGA board (e.g. kv260)")
    p.add_argument(
        "--stop-modules-on-exit", action="store_true", default=None, help="stop modules when the agent exits"
    )
    p.add_argument("--log-level", default="INFO")
    return p


def _accelerators_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgefleet-agent accelerators", description="show discovered accelerators")
    p.add_argument("--output", choices=["table", "json"], default="table")
    p.add_argument("--timeout", type=float, default=60.0)
    return p


def _accelerators(argv: list[str]) -> int:
    from edgefleet.agent.capabilities import discover_accelerators

    args = _accelerators_parser().parse_args(argv)
    # the daemon's discovery.command setting from the environment (the rest of the settings is not needed)
    given = environment_settings(os.environ, strict=False).get("discovery", {})
    command = DiscoverySettings.model_validate({k: v for k, v in given.items() if k == "command"}).command
    found = discover_accelerators(command, args.timeout)
    if args.output == "json":
        print(json.dumps([a.to_wire() for a in found], indent=2))
        return 0
    if not found:
        print("no accelerators discovered (onnxruntime CPU is always available to modules)")
        return 0
    rows = [
        [a.kind, a.platform, a.device, a.device_type, str(a.compute_units), f"{a.global_mem_bytes // 2**20} MiB",
         a.board or "-", a.loaded_binary or "-", "yes" if a.simulated else "no"]
        for a in found
    ]  # fmt: skip
    header = ["KIND", "PLATFORM", "DEVICE", "TYPE", "CU", "MEMORY", "BOARD", "BINARY", "SIMULATED"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _install_signals(agent: Any) -> None:
    def handle(signum: int, _frame: object) -> None:
        logging.getLogger(__name__).info("received signal %d: shutting down", signum)
        agent.request_stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["accelerators"]:
        try:
            return _accelerators(argv[1:])
        except (AgentError, ValueError) as exc:
            print(f"edgefleet-agent accelerators: {exc}", file=sys.stderr)
            return 2
    if argv[:1] == ["run"]:
        argv = argv[1:]
    args = _run_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s %(levelname)s [{args.device_id or 'agent'}] %(name)s: %(message)s",
    )
    try:
        settings: AgentSettings = load_settings(
            args.config,
            bootstrap=args.bootstrap,
            device_id=args.device_id,
            hub_url=args.hub_url,
            data_dir=args.data_dir,
            labels=dict(args.label) or None,
            hub_public_key=args.hub_public_key,
            hub_key_fingerprint=args.hub_key_fingerprint,
            hub_ca_file=args.hub_ca_file,
            mqtt={"broker_url": args.broker_url},
            modules={"stop_on_exit": args.stop_modules_on_exit},
            discovery={"fpga_sim": args.fpga_sim},
        )
        from edgefleet.agent.daemon import run_agent

        run_agent(settings, install_signals=_install_signals)
    except AgentError as exc:
        print(f"edgefleet-agent: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
