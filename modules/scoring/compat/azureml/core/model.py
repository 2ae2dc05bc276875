"""``from azureml.core.model import Model`` (edgefleet stand-in): ``Model.get_model_path``."""

from edgefleet.modules.scoring.amlmodel import Model, ModelNotFound

__all__ = ["Model", "ModelNotFound"]
