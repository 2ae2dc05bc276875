"""Scoring modules: the HTTP scoring server (``edgefleet.modules.scoring``) and sample models (``edgefleet.modules.samples``)."""
