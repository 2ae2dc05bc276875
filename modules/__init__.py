"""Scoring modules: the HTTP scoring server (``modules.scoring``) and sample models (``modules.samples``)."""
