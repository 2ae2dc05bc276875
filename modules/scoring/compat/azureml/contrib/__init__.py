"""azureml.contrib (edgefleet stand-in)."""
