"""azureml.core (edgefleet stand-in): only azureml.core.model.Model.get_model_path."""
