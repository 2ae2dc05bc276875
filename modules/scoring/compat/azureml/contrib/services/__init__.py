"""azureml.contrib.services (edgefleet stand-in): aml_request and aml_response."""
