# Model.get_model_path with several registered models (<name>/<version>/...), in the style of the
# Azure ML docs' multi-model deployment sample; see ../README.md.
import json

from azureml.core.model import Model


def init():
    global first, second_latest, second_v1, paths
    paths = {
        "first": Model.get_model_path(model_name="first", version=1),
        "second": Model.get_model_path(model_name="second"),
        "second_v1": Model.get_model_path("second", version=1),
    }
    loaded = {}
    for key, path in paths.items():
        with open(path) as f:
            loaded[key] = json.load(f)
    first, second_latest, second_v1 = loaded["first"], loaded["second"], loaded["second_v1"]


def run(raw_data):
    x = json.loads(raw_data)["x"]
    return {
        "first": x * first["scale"],
        "second": x * second_latest["scale"],
        "second_v1": x * second_v1["scale"],
        "paths": paths,
    }
