# A raw HTTP entry script that answers CORS itself through AMLResponse headers, in the style of the
# Azure ML docs' "Cross-origin resource sharing (CORS)" sample; see ../README.md.
from azureml.contrib.services.aml_request import rawhttp
from azureml.contrib.services.aml_response import AMLResponse


def init():
    pass


@rawhttp
def run(request):
    if request.method == "OPTIONS":
        return AMLResponse(
            "",
            200,
            {
                "Allow": "OPTIONS, GET, POST",
                "Access-Control-Allow-Methods": "OPTIONS, GET, POST",
                "Access-Control-Allow-Origin": "*",
                "Access-Control-Allow-Headers": "*",
            },
        )
    if request.method == "POST":
        reversed_body = request.get_data(False)[::-1]
        return AMLResponse(reversed_body, 200, {"Access-Control-Allow-Origin": "*"})
    return AMLResponse("bad request", 400)
