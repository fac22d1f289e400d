"""The served OpenAPI document is true: schemathesis, all checks, against a running service.

The service runs under uvicorn on a free 127.0.0.1 port, serving the session's trained models
(injected, so it starts in milliseconds). schemathesis's own runner (``st run``, in a
subprocess) reads ``/openapi.json`` and, per operation, sends the document's examples, its
coverage cases and up to ``MAX_EXAMPLES`` generated requests, valid and invalid, checking every
answer with all of its checks: no 5xx, documented statuses, content types and bodies, valid data
accepted, invalid data refused. The run is bounded in examples and seconds.

The LM22 sum rule and CSV content cannot be written in JSON Schema: see
``tests/schemathesis_hooks.py`` for how generated data is made to respect them. The checks'
configuration is ``schemathesis.toml`` beside this file (413 counts as refusing invalid data).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serving_support import injected_app, served
from tests.support import TrainedStore

pytestmark = pytest.mark.slow

TASKS = ("tropism", "dormancy")
#: Generated requests per operation and mode (besides its examples and coverage cases).
MAX_EXAMPLES = 25
MAX_PATIENTS = 5
#: The whole run stops here (it takes about 30 s on an idle 2-core machine).
RUN_TIMEOUT_S = 600
REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY = "schemathesis-admin-key"


@pytest.fixture(scope="module")
def served_app(trained_store: TrainedStore) -> Iterator[str]:
    # pandera_batch_rows=3: both validators see generated batches
    app = injected_app(
        trained_store,
        max_patients=MAX_PATIENTS,
        pandera_batch_rows=3,
        admin_api_key=ADMIN_KEY,
    )
    with served(app) as base:
        yield base


def test_the_service_conforms_to_its_openapi_document(served_app: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
        "PYTHONPATH": os.pathsep.join(
            [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]
        ),
    }
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "--no-color",
        "run",
        f"{served_app}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "20261204",
        "--header",
        f"X-API-Key: {ADMIN_KEY}",
        "--request-timeout",
        "30",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    run = subprocess.run(
        command,
        env=env,
        cwd=tmp_path,  # schemathesis keeps its cassettes in ./.schemathesis
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-12_000:]
    assert "11 selected / 11 total" in output, output[-4000:]
    assert " failed" not in output.split("SUMMARY")[-1], output[-6000:]


def test_every_route_documents_its_errors_and_the_prediction_answers(served_app: str) -> None:
    document = httpx.get(f"{served_app}/openapi.json").json()
    paths = document["paths"]
    for task in TASKS:
        operation = paths[f"/v1/predict/{task}"]["post"]
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{task.capitalize()}Response"}
        assert {"400", "401", "413", "415", "422", "503"} <= set(operation["responses"])
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        patients = body["properties"]["patients"]
        assert (patients["minItems"], patients["maxItems"]) == (1, MAX_PATIENTS)
        age = patients["items"]["properties"]["age_years"]
        assert {"type": "number", "minimum": 18.0, "maximum": 100.0} in age["anyOf"]
    invocations = paths["/invocations"]["post"]
    assert set(invocations["requestBody"]["content"]) == {"application/json", "text/csv"}
    formats = invocations["requestBody"]["content"]["application/json"]["schema"]["anyOf"]
    assert [f["title"] for f in formats] == [
        "dataframe_split",
        "dataframe_records",
        "inputs",
        "instances",
    ]
    error = invocations["responses"]["422"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/MlflowErrorBody"}
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
