# An undecorated v1 entry script: run(raw_data) gets the body as a str; it also reports the
# environment Azure ML gives a script (AML_APP_ROOT, AZUREML_ENTRY_SCRIPT, WORKER_COUNT, cwd).
import json
import os


def init():
    global labels
    with open("labels.json") as f:  # relative to the working directory, the app root
        labels = json.load(f)


def run(raw_data):
    doc = json.loads(raw_data)
    if doc == "boom":
        raise KeyError("secret-customer-field")
    if doc == "env":
        return {
            "AML_APP_ROOT": os.environ.get("AML_APP_ROOT"),
            "AZUREML_ENTRY_SCRIPT": os.environ.get("AZUREML_ENTRY_SCRIPT"),
            "AZUREML_MODEL_DIR": os.environ.get("AZUREML_MODEL_DIR"),
            "WORKER_COUNT": os.environ.get("WORKER_COUNT"),
            "cwd": os.getcwd(),
        }
    return {
        "raw_type": type(raw_data).__name__,
        "raw": raw_data,
        "label": labels[str(doc)] if not isinstance(doc, dict) else None,
    }
