# An Azure ML v1 entry script in the style of the inference_schema samples of the Azure ML docs
# ("Advanced entry script authoring", automatic Swagger schema generation); see ../README.md.
import json
import os

import numpy as np
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    global weights
    with open(os.path.join(os.getenv("AZUREML_MODEL_DIR"), "weights.json")) as f:
        weights = np.array(json.load(f))


input_sample = np.array([[1.0, 2.0, 3.0]])
output_sample = [6.0]


@input_schema("data", NumpyParameterType(input_sample))
@output_schema(StandardPythonParameterType(output_sample))
def run(data):
    # inference_schema has turned the JSON list into an ndarray
    assert isinstance(data, np.ndarray), type(data)
    return (data @ weights).tolist()
