"""Azure ML names edgefleet ships for entry scripts, without the cloud SDK.

``COMPAT_DIR`` holds top-level ``azureml`` (``azureml.contrib.services.aml_request`` and
``aml_response``, ``azureml.core.model``) and ``azureml_inference_server_http.api`` (the same two
modules under the name newer samples import). The scoring module puts it on ``sys.path`` only when it
loads an entry script (``entry.load_entry_script``), so no other process (agent, hub) sees an
``azureml`` package; in the module they shadow an installed Azure ML SDK or inference server.
"""

from __future__ import annotations

from pathlib import Path

COMPAT_DIR = Path(__file__).resolve().parent
