"""The scoring service runs in the test process here: what it changes for an entry script (the
working directory, the Azure ML variables, sys.path) is put back after each test."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

AZUREML_VARIABLES = ("AZUREML_MODEL_DIR", "AML_APP_ROOT", "AZUREML_ENTRY_SCRIPT", "WORKER_COUNT")


@pytest.fixture(autouse=True)
def _restore_process_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(os.getcwd())
    for name in AZUREML_VARIABLES:
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
    saved_path = list(sys.path)
    yield
    sys.path[:] = saved_path
