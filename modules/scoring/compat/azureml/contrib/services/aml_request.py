"""``from azureml.contrib.services.aml_request import AMLRequest, rawhttp`` (edgefleet stand-in)."""

from edgefleet.modules.scoring.rawhttp import AMLRequest, rawhttp

__all__ = ["AMLRequest", "rawhttp"]
