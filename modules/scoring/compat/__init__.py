"""Azure ML names edgefleet ships for entry scripts, without the cloud SDK.

``COMPAT_DIR`` holds a top-level ``azureml`` package (``azureml.contrib.services.aml_request`` and
``aml_response``, ``azureml.core.model``). The scoring module puts it on ``sys.path`` only when it
loads an entry script (``entry.load_entry_script``), so no other process (agent, hub) sees an
``azureml`` package; in the module it shadows an installed Azure ML SDK.
"""

from __future__ import annotations

from pathlib import Path

COMPAT_DIR = Path(__file__).resolve().parent
