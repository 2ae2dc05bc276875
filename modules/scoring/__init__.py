"""The scoring module server: one HTTP server with the Azure ML face and the Open Inference Protocol v2 face.

Run it with ``python -m modules.scoring --model-dir DIR [--source-dir DIR --entry-script score.py] --port N``.
Entry scripts load their model with :func:`modules.scoring.context.load_model` so that the deployment's
accelerator preference applies to them too, and raise :class:`modules.scoring.context.BadInput` for a 400.
"""
