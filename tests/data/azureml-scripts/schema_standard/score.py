# An inference_schema script with standard Python types, two inputs (one optional) and the request
# headers, in the style of the Azure ML docs' samples; see ../README.md.
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    pass


@input_schema("words", StandardPythonParameterType(["a", "b"]))
@input_schema("upper", StandardPythonParameterType(False), optional=True)
@output_schema(StandardPythonParameterType({"words": ["a"], "tenant": "t"}))
def run(words, upper=False, request_headers=None):
    out = [w.upper() for w in words] if upper else list(words)
    return {"words": out, "tenant": (request_headers or {}).get("X-Tenant", "")}
