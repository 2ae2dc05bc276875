"""``edgefleet model register|list|show|delete|deploy``: the model registry and deploying from it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgefleet.hub.cli.command import Context, add_command, add_group, say
from edgefleet.hub.cli.output import Result
from edgefleet.hub.cli.tables import model_detail, model_ref, model_table, service_detail
from edgefleet.hub.cli.workflow import deploy_service, register_model, wait_for_service
from edgefleet.hub.refs import parse_model_ref
from edgefleet.hub.schemas import ModelView, ServiceView
from edgefleet.protocol.labels import label_arg
from edgefleet.protocol.models import ModuleState


def register(ctx: Context) -> Result[ModelView]:
    a = ctx.args
    model = register_model(ctx.client, Path(a.path), a.name, dict(a.tag), a.description, say)
    return Result(model, model_ref)


def list_(ctx: Context) -> Result[list[ModelView]]:
    return Result(ctx.client.list_models(ctx.args.name), model_table)


def show(ctx: Context) -> Result[ModelView]:
    ref = parse_model_ref(ctx.args.model)
    return Result(ctx.client.get_model(ref.name, ref.version), model_detail)


def delete(ctx: Context) -> Result[dict[str, str]]:
    ref = parse_model_ref(ctx.args.model)
    ctx.client.delete_model(ref.name, ref.version)
    return Result({"deleted": f"{ref.name}:{ref.version}"}, lambda d: f"deleted {d['deleted']}")


def deploy(ctx: Context) -> Result[ServiceView]:
    a = ctx.args
    ic, dc = (Path(a.ic) if a.ic else None), (Path(a.dc) if a.dc else None)
    service = deploy_service(ctx.client, a.name, a.model, ic, dc, say, overwrite=a.overwrite)
    say(f"deployed {service.name}: target {service.target}")
    if not a.wait:
        return Result(service, service_detail)
    final = wait_for_service(ctx.client, a.name, a.timeout, say)
    return Result(final, service_detail, status=0 if final.state == ModuleState.HEALTHY else 1)


def add_commands(groups: Any) -> None:
    model = add_group(groups, "model", "register, list and deploy models")
    s = add_command(model, "register", register, "register a model file or folder as the next version")
    s.add_argument("-n", "--name", required=True)
    s.add_argument("-p", "--path", required=True, help="a model file or a folder of files")
    s.add_argument("--tag", action="append", type=label_arg, default=[], metavar="KEY=VALUE", help="repeatable")
    s.add_argument("--description", default="")
    s = add_command(model, "list", list_, "list registered models")
    s.add_argument("-n", "--name", help="only this model's versions")
    s = add_command(model, "show", show, "show one model version")
    s.add_argument("model", metavar="NAME:VERSION")
    s = add_command(model, "delete", delete, "delete one model version")
    s.add_argument("model", metavar="NAME:VERSION")
    s = add_command(model, "deploy", deploy, "deploy models as a service to the devices its target selects")
    s.add_argument("-n", "--name", required=True, help="service name (lowercase, digits, '-')")
    s.add_argument("-m", "--model", action="append", required=True, metavar="NAME:VERSION", help="repeatable")
    s.add_argument("--ic", "--inference-config", dest="ic", help="inferenceconfig.json")
    s.add_argument("--dc", "--deployment-config", dest="dc", help="deploymentconfig.json")
    s.add_argument("--overwrite", action="store_true", help="replace an existing service of that name")
    s.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True, help="follow the rollout")
    s.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")
