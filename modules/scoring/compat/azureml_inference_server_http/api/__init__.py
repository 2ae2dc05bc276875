"""azureml_inference_server_http.api (edgefleet stand-in)."""
