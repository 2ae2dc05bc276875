"""``edgefleet``: the operator's command line (talks to the hub's REST API only).

    edgefleet demo
    edgefleet hub serve
    edgefleet model register|list|show|delete|deploy
    edgefleet service list|show|score|delete
    edgefleet device list|show|ping|restart-module|logs

Progress goes to stderr, results to stdout (``--output json`` for scripts). User errors are one
line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from edgefleet.hub import __version__
from edgefleet.hub.cli_output import (
    DEVICE_STATE_HEADERS,
    device_state_rows,
    dump_json,
    human_size,
    short_time,
    table,
    tags_text,
)
from edgefleet.hub.client import HubClient
from edgefleet.hub.errors import ClientError, ConfigError, HubError
from edgefleet.hub.refs import parse_model_ref
from edgefleet.hub.workflow import deploy_service, register_model, wait_for_removal, wait_for_service
from edgefleet.protocol.labels import label_arg

DEFAULT_HUB = "http://127.0.0.1:8080"


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class Cli:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.json_out = args.output == "json"
        self._client: HubClient | None = None

    @property
    def client(self) -> HubClient:
        if self._client is None:
            self._client = HubClient(self.args.hub)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # hub ---------------------------------------------------------------------------------------
    def hub_serve(self) -> int:
        from edgefleet.hub.server.runner import serve  # uvicorn only for the server command
        from edgefleet.hub.server.settings import HubSettings

        overrides = {
            k: v
            for k, v in {
                "data_dir": self.args.data_dir,
                "host": self.args.host,
                "port": self.args.port,
                "broker_url": self.args.broker,
                "public_url": self.args.public_url,
                "database_url": self.args.database_url,
            }.items()
            if v is not None
        }
        logging.basicConfig(
            level=getattr(logging, self.args.log_level.upper()),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        serve(HubSettings(**overrides))
        return 0

    # models ------------------------------------------------------------------------------------
    def model_register(self) -> int:
        record = register_model(
            self.client, Path(self.args.path), self.args.name, dict(self.args.tag), self.args.description, _err
        )
        if self.json_out:
            dump_json(record)
        else:
            print(f"{record['name']}:{record['version']}")
        return 0

    def model_list(self) -> int:
        models = self.client.list_models(self.args.name)
        if self.json_out:
            dump_json(models)
            return 0
        rows = [
            [
                m["name"],
                m["version"],
                len(m["files"]),
                human_size(sum(f["size"] for f in m["files"])),
                tags_text(m["tags"]),
                short_time(m["created"]),
                m["description"],
            ]
            for m in models
        ]
        print(table(["NAME", "VERSION", "FILES", "SIZE", "TAGS", "CREATED", "DESCRIPTION"], rows))
        return 0

    def model_show(self) -> int:
        ref = parse_model_ref(self.args.model)
        m = self.client.get_model(ref.name, ref.version)
        if self.json_out:
            dump_json(m)
            return 0
        print(f"model:       {m['name']}:{m['version']}")
        print(f"created:     {short_time(m['created'])}")
        print(f"tags:        {tags_text(m['tags'])}")
        print(f"description: {m['description']}")
        print(table(["PATH", "SIZE", "DIGEST"], [[f["path"], human_size(f["size"]), f["digest"]] for f in m["files"]]))
        return 0

    def model_delete(self) -> int:
        ref = parse_model_ref(self.args.model)
        self.client.delete_model(ref.name, ref.version)
        if self.json_out:
            dump_json({"deleted": f"{ref.name}:{ref.version}"})
        else:
            print(f"deleted {ref.name}:{ref.version}")
        return 0

    def model_deploy(self) -> int:
        service = deploy_service(
            self.client,
            self.args.name,
            self.args.model,
            Path(self.args.ic) if self.args.ic else None,
            Path(self.args.dc) if self.args.dc else None,
            _err,
            overwrite=self.args.overwrite,
        )
        _err(f"deployed {service['name']}: target {service['target']}")
        if not self.args.wait:
            return self._print_service(service)
        final = wait_for_service(self.client, self.args.name, self.args.timeout, _err)
        self._print_service(final)
        return 0 if final["state"] == "Healthy" else 1

    def demo(self) -> int:
        from edgefleet.hub.demo import main_demo  # numpy and the process supervisor only for the demo

        return main_demo(
            Path(self.args.workdir), self.args.devices, self.args.broker, self.args.timeout, self.args.fpga_devices
        )

    # services ----------------------------------------------------------------------------------
    def _print_service(self, s: dict[str, Any]) -> int:
        if self.json_out:
            dump_json(s)
            return 0
        print(f"service: {s['name']}")
        print(f"state:   {s['state']}  ({s['reason']})")
        models = ", ".join(f"{m['name']}:{m['version']}" for m in s["models"])
        print(f"models:  {models}")
        ic = s.get("inferenceConfig") or {}
        print(f"entry:   {ic.get('entryScript') or '(no-code)'}")
        print(f"target:  {s['target']}")
        if s.get("devices"):
            print(table(DEVICE_STATE_HEADERS, device_state_rows(s)))
        choices = [d for d in s.get("devices", []) if d.get("backend")]
        if choices:
            print("backend choice (measured on each device when the module loaded):")
        for d in choices:
            print(f"  {d['device']}: {d.get('reason') or d['backend']}")
        return 0

    def service_list(self) -> int:
        services = self.client.list_services()
        if self.json_out:
            dump_json(services)
            return 0
        rows = [
            [
                s["name"],
                s["state"],
                ", ".join(f"{m['name']}:{m['version']}" for m in s["models"]),
                sum(1 for d in s["devices"] if d["state"] == "Healthy"),
                len(s["devices"]),
                s["reason"],
            ]
            for s in services
        ]
        print(table(["NAME", "STATE", "MODELS", "HEALTHY", "DEVICES", "REASON"], rows))
        return 0

    def service_show(self) -> int:
        return self._print_service(self.client.get_service(self.args.name))

    def service_score(self) -> int:
        if (self.args.data is None) == (self.args.file is None):
            raise ClientError("give the input with exactly one of --data JSON or --file PATH")
        if self.args.file is not None:
            try:
                raw = Path(self.args.file).read_text(encoding="utf-8")
            except OSError as exc:
                raise ClientError(f"--file {self.args.file}: cannot read: {exc.strerror or exc}") from None
        else:
            raw = self.args.data
        try:
            json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ClientError(f"the scoring input is not valid JSON: {exc.msg} at column {exc.colno}") from None
        s = self.client.get_service(self.args.name)
        candidates = [d for d in s["devices"] if d["state"] == "Healthy" and d.get("endpoint")]
        if self.args.device:
            candidates = [d for d in s["devices"] if d["device"] == self.args.device]
            if not candidates:
                raise ClientError(f"service {self.args.name} does not run on device {self.args.device}")
            if not candidates[0].get("endpoint"):
                raise ClientError(f"device {self.args.device} reports no endpoint for {self.args.name} yet")
        if not candidates:
            raise ClientError(f"service {self.args.name} has no Healthy device with an endpoint ({s['reason']})")
        target = candidates[0]
        url = target["endpoint"].rstrip("/") + "/score"
        try:
            response = httpx.post(url, content=raw, headers={"Content-Type": "application/json"}, timeout=60)
        except httpx.HTTPError as exc:
            raise ClientError(f"device {target['device']}: cannot reach {url}: {exc}") from None
        try:
            result: Any = response.json()
        except ValueError:
            result = response.text
        if response.status_code >= 400:
            message = result.get("error") if isinstance(result, dict) else result
            raise ClientError(f"device {target['device']} answered {response.status_code}: {message}")
        _err(f"scored on {target['device']} ({url})")
        if isinstance(result, str):
            print(result)
        else:
            dump_json(result)
        return 0

    def service_delete(self) -> int:
        name = self.args.name
        self.client.delete_service(name)
        _err(f"deleted service {name}; waiting for devices to remove the module")
        if self.args.wait:
            wait_for_removal(self.client, name, self.args.timeout, _err)
        if self.json_out:
            dump_json({"deleted": name})
        else:
            print(f"deleted {name}")
        return 0

    # devices -----------------------------------------------------------------------------------
    def device_list(self) -> int:
        devices = self.client.list_devices()
        if self.json_out:
            dump_json(devices)
            return 0
        rows = []
        for d in devices:
            report = d.get("lastReport") or {}
            caps = d.get("capabilities") or {}
            rows.append(
                [
                    d["deviceId"],
                    d["presence"],
                    report.get("generation", "-"),
                    d.get("desiredGeneration") or "-",
                    len(report.get("modules", [])),
                    ",".join(sorted({a["kind"] for a in caps.get("accelerators", [])})),
                    tags_text(d.get("labels") or {}),
                    short_time(d.get("lastSeen")),
                ]
            )
        print(table(["DEVICE", "PRESENCE", "GEN", "DESIRED", "MODULES", "ACCELERATORS", "LABELS", "LAST SEEN"], rows))
        return 0

    def device_show(self) -> int:
        d = self.client.get_device(self.args.device_id)
        if self.json_out:
            dump_json(d)
            return 0
        report = d.get("lastReport") or {}
        caps = d.get("capabilities") or {}
        print(f"device:      {d['deviceId']}  ({d['presence']}, agent {d.get('agentVersion') or '?'})")
        print(f"labels:      {tags_text(d.get('labels') or {})}")
        print(f"generation:  reported {report.get('generation', '-')}, desired {d.get('desiredGeneration') or '-'}")
        print(f"last seen:   {short_time(d.get('lastSeen'))}")
        if report.get("rejected"):
            print(f"rejected:    {report['rejected']}")
        accels = caps.get("accelerators", [])
        if accels:
            print(
                table(
                    ["KIND", "PLATFORM", "DEVICE", "BOARD", "SIMULATED"],
                    [
                        [a["kind"], a.get("platform"), a.get("device"), a.get("board") or "", a.get("simulated")]
                        for a in accels
                    ],
                )
            )
        modules = report.get("modules", [])
        if modules:
            print(
                table(
                    ["MODULE", "STATE", "ENDPOINT", "BACKEND", "RESTARTS", "MESSAGE"],
                    [
                        [
                            m["name"],
                            m["state"],
                            m.get("endpoint") or "",
                            m.get("backend") or "",
                            m.get("restarts", 0),
                            m.get("message", ""),
                        ]
                        for m in modules
                    ],
                )
            )
        return 0

    def _method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        response = self.client.call_method(self.args.device_id, method, params, self.args.timeout)
        if response.get("status", 500) >= 400:
            payload = response.get("payload") or {}
            raise ClientError(
                f"device {self.args.device_id}: {method} failed ({response.get('status')}): "
                f"{payload.get('error') or payload}"
            )
        return response

    def device_ping(self) -> int:
        response = self._method("ping", {})
        if self.json_out:
            dump_json(response)
        else:
            print(f"{self.args.device_id}: pong")
        return 0

    def device_restart_module(self) -> int:
        response = self._method("restart-module", {"module": self.args.module})
        if self.json_out:
            dump_json(response)
        else:
            print(f"{self.args.device_id}: restarted {self.args.module}")
        return 0

    def device_logs(self) -> int:
        response = self._method("logs", {"module": self.args.module, "tail": self.args.tail})
        payload = response.get("payload") or {}
        if self.json_out:
            dump_json(response)
        else:
            lines = payload.get("lines")
            print("\n".join(lines) if isinstance(lines, list) else json.dumps(payload, indent=2))
        return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgefleet", description="Deploy ML models to fleets of edge devices.")
    p.add_argument("--version", action="version", version=f"edgefleet {__version__}")
    p.add_argument("--hub", default=os.environ.get("EDGEFLEET_HUB", DEFAULT_HUB), help="hub URL (env EDGEFLEET_HUB)")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
    groups = p.add_subparsers(dest="group", metavar="COMMAND", required=True)

    def cmd(sub: Any, name: str, handler: Callable[[Cli], int], help_: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=help_)
        parser.set_defaults(handler=handler)
        # also accepted after the command (`edgefleet service show x -o json`); SUPPRESS keeps the global value
        parser.add_argument(
            "-o", "--output", choices=["table", "json"], default=argparse.SUPPRESS, help="output format"
        )
        return parser

    s = cmd(groups, "demo", Cli.demo, "run the whole system locally: broker, hub, devices, deploy, score")
    s.add_argument("--devices", type=int, default=3, help="simulated devices, one agent process each (default 3)")
    s.add_argument(
        "--broker", choices=["auto", "mosquitto", "amqtt"], default="auto", help="default: mosquitto if installed"
    )
    s.add_argument("--fpga-devices", type=int, default=1, help="devices given a simulated FPGA board (default 1)")
    s.add_argument("--workdir", default=".edgefleet/demo", help="state of this run (wiped at start)")
    s.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for every device to be Healthy")

    hub_p = groups.add_parser("hub", help="run the hub").add_subparsers(dest="cmd", metavar="CMD", required=True)
    s = cmd(hub_p, "serve", Cli.hub_serve, "run the hub: REST API, artifact server and MQTT controller")
    s.add_argument("--data-dir", help="key, blobs and database (default ./.edgefleet/hub)")
    s.add_argument("--host", help="listen address (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="listen port (default 8080; 0 picks a free one)")
    s.add_argument("--broker", help="MQTT broker URL (default mqtt://127.0.0.1:1883)")
    s.add_argument("--public-url", help="base URL devices use for artifacts (default http://HOST:PORT)")
    s.add_argument("--database-url", help="default sqlite:///DATA_DIR/hub.db")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    model = groups.add_parser("model", help="register, list and deploy models").add_subparsers(
        dest="cmd", metavar="CMD", required=True
    )
    s = cmd(model, "register", Cli.model_register, "register a model file or folder as the next version")
    s.add_argument("-n", "--name", required=True)
    s.add_argument("-p", "--path", required=True, help="a model file or a folder of files")
    s.add_argument("--tag", action="append", type=label_arg, default=[], metavar="KEY=VALUE", help="repeatable")
    s.add_argument("--description", default="")
    s = cmd(model, "list", Cli.model_list, "list registered models")
    s.add_argument("-n", "--name", help="only this model's versions")
    s = cmd(model, "show", Cli.model_show, "show one model version")
    s.add_argument("model", metavar="NAME:VERSION")
    s = cmd(model, "delete", Cli.model_delete, "delete one model version")
    s.add_argument("model", metavar="NAME:VERSION")
    s = cmd(model, "deploy", Cli.model_deploy, "deploy models as a service to the devices its target selects")
    s.add_argument("-n", "--name", required=True, help="service name (lowercase, digits, '-')")
    s.add_argument("-m", "--model", action="append", required=True, metavar="NAME:VERSION", help="repeatable")
    s.add_argument("--ic", "--inference-config", dest="ic", help="inferenceconfig.json")
    s.add_argument("--dc", "--deployment-config", dest="dc", help="deploymentconfig.json")
    s.add_argument("--overwrite", action="store_true", help="replace an existing service of that name")
    s.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True, help="follow the rollout")
    s.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")

    svc = groups.add_parser("service", help="deployed services").add_subparsers(
        dest="cmd", metavar="CMD", required=True
    )
    cmd(svc, "list", Cli.service_list, "list services and their state")
    s = cmd(svc, "show", Cli.service_show, "show a service with per-device state")
    s.add_argument("name")
    s = cmd(svc, "score", Cli.service_score, "send a scoring request to a Healthy device's endpoint")
    s.add_argument("name")
    s.add_argument("--data", help="JSON request body")
    s.add_argument("--file", help="file holding the JSON request body")
    s.add_argument("--device", help="score on this device")
    s = cmd(svc, "delete", Cli.service_delete, "delete a service and wait until devices removed it")
    s.add_argument("name")
    s.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True)
    s.add_argument("--timeout", type=float, default=300.0)

    dev = groups.add_parser("device", help="the fleet").add_subparsers(dest="cmd", metavar="CMD", required=True)
    cmd(dev, "list", Cli.device_list, "list devices")
    s = cmd(dev, "show", Cli.device_show, "show one device")
    s.add_argument("device_id")
    for name, handler, help_ in [
        ("ping", Cli.device_ping, "check that a device answers direct methods"),
        ("restart-module", Cli.device_restart_module, "restart a module on a device"),
        ("logs", Cli.device_logs, "tail a module's logs on a device"),
    ]:
        s = cmd(dev, name, handler, help_)
        s.add_argument("device_id")
        if name != "ping":
            s.add_argument("module")
        if name == "logs":
            s.add_argument("--tail", type=int, default=100)
        s.add_argument("--timeout", type=float, default=10.0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli = Cli(args)
    try:
        return int(args.handler(cli))
    except (ClientError, ConfigError) as exc:
        lines = str(exc).splitlines() or [type(exc).__name__]
        _err(f"error: {lines[0]}")
        for line in lines[1:]:
            _err(f"       {line}")
        return 1
    except HubError as exc:
        _err(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    finally:
        cli.close()


if __name__ == "__main__":
    sys.exit(main())
