# A raw HTTP entry script in the style of the Azure ML docs' "binary data" sample: GET echoes the
# query arguments, POST scores the body, anything else is refused; see ../README.md.
import json

from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse


def init():
    pass


@rawhttp
def run(request):
    assert isinstance(request, AMLRequest)
    if request.method == "GET":
        # the reference docs' sample echoes the full path; args is the parsed query
        return AMLResponse(
            json.dumps({"full_path": request.full_path, "args": request.args.to_dict(flat=False)}),
            200,
            {"Content-Type": "application/json"},
        )
    if request.method == "POST":
        doc = json.loads(request.get_data(False))
        return {"sum": sum(doc["data"]), "content_type": request.headers.get("content-type"), "path": request.path}
    return AMLResponse("bad request", 500)
