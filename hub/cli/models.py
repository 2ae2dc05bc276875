"""``edgefleet model register|list|show|download|delete|deploy``: the model registry and deploying from it.

A model is named ``NAME:VERSION``, or ``NAME`` alone for its latest version (as ``az ml`` reads
``-m digits``); only ``delete`` wants the version spelt out.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgefleet.hub.cli.command import Context, add_command, add_group, say
from edgefleet.hub.cli.output import Result
from edgefleet.hub.cli.tables import model_detail, model_ref, model_table
from edgefleet.hub.cli.workflow import (
    deploy_service,
    download_model,
    find_model,
    register_model,
    settled,
)
from edgefleet.hub.refs import parse_model_query, parse_model_ref
from edgefleet.hub.schemas import ModelView, ServiceDeployed
from edgefleet.protocol.labels import label_arg

_REF = "NAME[:VERSION]"
_REF_HELP = "NAME:VERSION, or NAME for its latest version"


def register(ctx: Context) -> Result[ModelView]:
    a = ctx.args
    model = register_model(ctx.client, Path(a.path), a.name, dict(a.tag), a.description, say)
    return Result(model, model_ref)


def list_(ctx: Context) -> Result[list[ModelView]]:
    return Result(ctx.client.list_models(ctx.args.name), model_table)


def show(ctx: Context) -> Result[ModelView]:
    query = parse_model_query(ctx.args.model)  # before the client: a bad reference needs no hub
    return Result(find_model(ctx.client, query), model_detail)


def download(ctx: Context) -> Result[dict[str, Any]]:
    a = ctx.args
    query = parse_model_query(a.model)
    model = find_model(ctx.client, query)
    written = download_model(ctx.client, model, Path(a.out), a.overwrite, say)
    data = {"model": model_ref(model), "files": [str(p) for p in written]}
    return Result(data, lambda d: "\n".join(d["files"]))


def delete(ctx: Context) -> Result[dict[str, str]]:
    ref = parse_model_ref(ctx.args.model)
    ctx.client.delete_model(ref.name, ref.version)
    return Result({"deleted": f"{ref.name}:{ref.version}"}, lambda d: f"deleted {d['deleted']}")


def deploy(ctx: Context) -> Result[ServiceDeployed]:
    a = ctx.args
    ic, dc = (Path(a.ic) if a.ic else None), (Path(a.dc) if a.dc else None)
    source = Path(a.source_dir) if a.source_dir else None
    service = deploy_service(ctx.client, a.name, a.model, ic, dc, say, overwrite=a.overwrite, source_dir=source)
    say(f"deployed {service.name}: models {', '.join(f'{m.name}:{m.version}' for m in service.models)}; "
        f"target {service.target}")  # fmt: skip
    return settled(ctx.client, service, a.wait, a.timeout, say)


def add_commands(groups: Any) -> None:
    model = add_group(groups, "model", "register, list, download and deploy models")
    s = add_command(model, "register", register, "register a model file or folder as the next version")
    s.add_argument("-n", "--name", required=True)
    s.add_argument("-p", "--path", required=True, help="a model file or a folder of files")
    s.add_argument("--tag", action="append", type=label_arg, default=[], metavar="KEY=VALUE", help="repeatable")
    s.add_argument("--description", default="")
    s = add_command(model, "list", list_, "list registered models")
    s.add_argument("-n", "--name", help="only this model's versions")
    s = add_command(model, "show", show, "show one model version")
    s.add_argument("model", metavar=_REF, help=_REF_HELP)
    s = add_command(model, "download", download, "download a model version's files, checked against their digests")
    s.add_argument("model", metavar=_REF, help=_REF_HELP)
    s.add_argument("-t", "--out", "--target-dir", dest="out", default=".", help="folder to write them to (default .)")
    s.add_argument("--overwrite", action="store_true", help="replace files that exist there")
    s = add_command(model, "delete", delete, "delete one model version")
    s.add_argument("model", metavar="NAME:VERSION")
    s = add_command(model, "deploy", deploy, "deploy models as a service to the devices its target selects")
    s.add_argument("-n", "--name", required=True, help="service name (lowercase, digits, '-')")
    s.add_argument("-m", "--model", action="append", required=True, metavar=_REF, help=f"{_REF_HELP}; repeatable")
    s.add_argument("--ic", "--inference-config", dest="ic", help="inferenceconfig.json (edgefleet's or Azure ML's)")
    s.add_argument("--dc", "--deployment-config", dest="dc", help="deploymentconfig.json (edgefleet's or Azure ML's)")
    s.add_argument("--source-dir", help="upload this folder as the source (default: the --ic file's sourceDirectory)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing service of that name")
    s.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True, help="follow the rollout")
    s.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")
