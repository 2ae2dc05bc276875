"""The scoring module server: one HTTP server with the Azure ML face and the Open Inference Protocol v2 face.

Run it with ``python -m edgefleet.modules.scoring --model-dir DIR [--source-dir DIR --entry-script score.py] --port N``.

This package is also the one public import for entry scripts::

    from edgefleet.modules.scoring import BadInput, load_model

``load_model()`` loads a model under AZUREML_MODEL_DIR on the backend the deployment's accelerator
preference selects; ``BadInput`` raised from ``run()`` is answered as a 400 with its message. The
names are resolved on first use, so ``python -m edgefleet.modules.scoring`` and the server's config
parsing do not pay for the accelerator imports before they need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgefleet.modules.scoring.context import BadInput, load_model

__all__ = ["BadInput", "load_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from edgefleet.modules.scoring import context

        return getattr(context, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
