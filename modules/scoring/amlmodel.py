"""``azureml.core.model.Model.get_model_path`` for entry scripts, without the cloud SDK.

At inference time an Azure ML v1 script resolves its model files with
``Model.get_model_path(name, version=None)``. Azure ML lays the models out under
``AZUREML_MODEL_DIR`` in one of two ways, and this resolves both:

- one model: ``AZUREML_MODEL_DIR`` is that model's version directory and holds what was registered
  (``model.pkl``, or the registered folder ``model/``); the path returned is that single entry
  (the directory itself when it holds several);
- several models: ``AZUREML_MODEL_DIR/<name>/<version>/<registered file or folder>``; without
  ``version`` the highest numbered version is taken. A ``<name>`` directory with no numbered
  version directories is taken as the model itself.

A name found nowhere raises ``ModelNotFound`` listing what the directory holds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgefleet.protocol.module import AZUREML_MODEL_DIR


class ModelNotFound(Exception):
    """The model asked for is not under AZUREML_MODEL_DIR."""


def _single_entry(directory: Path) -> Path:
    entries = [p for p in directory.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 else directory


def _versions(directory: Path) -> dict[int, Path]:
    return {int(p.name): p for p in directory.iterdir() if p.is_dir() and p.name.isdigit()}


def get_model_path(model_name: str, version: int | str | None = None, model_dir: str | Path | None = None) -> str:
    if not model_name or "/" in model_name or "\\" in model_name or model_name in {".", ".."}:
        raise ValueError(f"model name {model_name!r} is not a registered model name")
    if version is not None and not str(version).isdigit():
        raise ValueError(f"model version {version!r} is not a positive integer")
    root_text = str(model_dir) if model_dir is not None else os.environ.get(AZUREML_MODEL_DIR, "")
    if not root_text:
        raise ModelNotFound(f"Model.get_model_path({model_name!r}) needs {AZUREML_MODEL_DIR} set")
    root = Path(root_text)
    if not root.is_dir():
        raise ModelNotFound(f"{AZUREML_MODEL_DIR}={root} is not a directory")
    named = root / model_name
    if named.is_dir():
        versions = _versions(named)
        if not versions:
            return str(named)  # <name>/ holding the model itself
        if version is None:
            return str(_single_entry(versions[max(versions)]))
        if int(version) not in versions:
            have = ", ".join(str(v) for v in sorted(versions))
            raise ModelNotFound(f"model {model_name!r} has no version {version} under {root} (versions: {have})")
        return str(_single_entry(versions[int(version)]))
    if named.is_file():
        return str(named)
    # one model: the directory is its version directory
    entries = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    if version is not None and root.name.isdigit() and root.name != str(version):
        raise ModelNotFound(f"model {model_name!r} version {version} is not deployed (this is version {root.name})")
    if root.name.isdigit() and root.parent.name not in {model_name, ""} and entries:
        raise ModelNotFound(
            f"model {model_name!r} is not deployed here: {root} holds {root.parent.name!r} version {root.name}"
        )
    if not entries:
        raise ModelNotFound(f"{AZUREML_MODEL_DIR}={root} is empty; model {model_name!r} not found")
    return str(_single_entry(root))


class Model:
    """The part of ``azureml.core.model.Model`` a deployed script uses: ``get_model_path``."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        raise NotImplementedError(
            "edgefleet provides azureml.core.model.Model.get_model_path only; workspace operations need the cloud SDK"
        )

    @staticmethod
    def get_model_path(model_name: str, version: int | str | None = None, _workspace: Any = None) -> str:
        return get_model_path(model_name, version)
