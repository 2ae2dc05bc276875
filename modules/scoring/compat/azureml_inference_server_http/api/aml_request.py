"""``from azureml_inference_server_http.api.aml_request import AMLRequest, rawhttp`` (edgefleet stand-in)."""

from edgefleet.modules.scoring.rawhttp import AMLRequest, rawhttp

__all__ = ["AMLRequest", "rawhttp"]
