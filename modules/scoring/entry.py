"""Load an Azure ML style entry script (``init()`` and ``run(...)``) from its source directory."""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from edgefleet.modules.scoring import rawhttp
from edgefleet.modules.scoring.amlcall import RunSignature, analyse
from edgefleet.modules.scoring.errors import EntryScriptError

log = logging.getLogger(__name__)

# the azureml stand-ins (compat/__init__.py), found by path: the directory must not be imported as
# a package of ours before it is on sys.path as the top level
COMPAT_DIR = Path(__file__).resolve().parent / "compat"


@dataclass
class EntryScript:
    path: Path
    module: ModuleType
    init: Callable[[], Any]
    run_fn: Callable[..., Any]
    signature: RunSignature
    # Azure ML runs one request at a time per worker and scripts rely on it (globals set in init)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, raw_data: str) -> Any:
        """run(raw_data) of a plain script (what the unit tests of the former interface call)."""
        with self._lock:
            return self.run_fn(raw_data)

    def call(self, kwargs: dict[str, Any]) -> Any:
        with self._lock:
            return self.run_fn(**kwargs)


def add_compat_path() -> None:
    """Make edgefleet's ``azureml`` stand-in importable (first, so it wins over an installed SDK)."""
    if not (COMPAT_DIR / "azureml" / "contrib" / "services" / "aml_request.py").is_file():
        log.warning(
            "edgefleet's azureml stand-ins are not installed (%s): entry scripts importing "
            "azureml.contrib.services or azureml.core.model will fail",
            COMPAT_DIR,
        )
        return
    if str(COMPAT_DIR) not in sys.path:
        sys.path.insert(0, str(COMPAT_DIR))


def load_entry_script(path: Path, source_dir: Path) -> EntryScript:
    """Import the script (its source directory first on sys.path, so it can import its helpers)."""
    if not path.is_file():
        raise EntryScriptError(f"entry script {path} does not exist (source directory {source_dir})")
    add_compat_path()
    if str(source_dir) not in sys.path:
        sys.path.insert(0, str(source_dir))
    rawhttp.reset_rawhttp()
    spec = importlib.util.spec_from_file_location(f"edgefleet_entry_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise EntryScriptError(f"entry script {path} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise EntryScriptError(f"importing entry script {path} raised {type(exc).__name__}: {exc}") from exc
    missing = [name for name in ("init", "run") if not callable(getattr(module, name, None))]
    if missing:
        raise EntryScriptError(
            f"entry script {path} does not define {' and '.join(missing)}(); it needs init() and run(raw_data)"
        )
    # an SDK-generated driver module forwards run() to the real score script's: call that one (its
    # decorators are what count), keep the driver's init()
    run_fn = module.run
    driver = getattr(module, "driver_module", None)
    if isinstance(driver, ModuleType) and callable(getattr(driver, "run", None)):
        run_fn = driver.run
    return EntryScript(path=path, module=module, init=module.init, run_fn=run_fn, signature=analyse(run_fn, str(path)))
