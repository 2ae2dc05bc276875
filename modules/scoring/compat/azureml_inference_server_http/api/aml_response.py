"""``from azureml_inference_server_http.api.aml_response import AMLResponse`` (edgefleet stand-in)."""

from edgefleet.modules.scoring.rawhttp import AMLResponse

__all__ = ["AMLResponse"]
