# A raw HTTP entry script that takes a multipart/form-data image upload, in the style of the Azure
# ML docs' image sample (request.files); see ../README.md.
import hashlib
import io

from azureml.contrib.services.aml_request import rawhttp
from azureml.contrib.services.aml_response import AMLResponse


def init():
    pass


@rawhttp
def run(request):
    if request.method != "POST":
        return AMLResponse("bad request, use POST", 500)
    if "image" not in request.files:
        return AMLResponse({"error": "no file field 'image'"}, 400, json_str=True)
    upload = request.files["image"]
    data = upload.read()
    saved = io.BytesIO()
    upload.save(saved)
    return {
        "filename": upload.filename,
        "content_type": upload.content_type,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "saved_equal": saved.getvalue() == data,
        "label": request.form.get("label"),
        "png": data[:8] == b"\x89PNG\r\n\x1a\n",
    }
