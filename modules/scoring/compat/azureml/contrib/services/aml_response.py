"""``from azureml.contrib.services.aml_response import AMLResponse`` (edgefleet stand-in)."""

from edgefleet.modules.scoring.rawhttp import AMLResponse

__all__ = ["AMLResponse"]
