"""azureml_inference_server_http (edgefleet stand-in): only ``api.aml_request`` / ``api.aml_response``,
the import path newer Azure ML samples use for the same names as azureml.contrib.services."""
