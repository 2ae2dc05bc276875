# Model.get_model_path with one registered model (a folder registered as model/), in the style of
# the Azure ML v1 deployment notebooks' score.py; see ../README.md.
import json
import os

from azureml.core.model import Model


def init():
    global model, model_path
    model_path = Model.get_model_path("digits-folder")
    with open(os.path.join(model_path, "model.json")) as f:
        model = json.load(f)


def run(raw_data):
    data = json.loads(raw_data)["data"]
    return {"scaled": [x * model["scale"] for x in data], "model_path": model_path}
