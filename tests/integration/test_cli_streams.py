"""stdout carries only a command's result; logs, progress and library noise go to stderr.

Each test runs the real CLI in a subprocess (the way a script or ``| jq`` sees it).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.cli_process import ROOT, cli_env, run_cli
from tests.support import TrainedStore

#: A library that configured logging to stdout at import, printed, and wrote to fd 1 from C,
#: before and during the command (the way numexpr's "NumExpr defaulting to N threads." line,
#: MLflow's prints and LightGBM's C++ messages reach a terminal).
_NOISY = """
import logging, os, sys
logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(levelname)s %(message)s")
noisy = logging.getLogger("noisy.library")
noisy.addHandler(logging.StreamHandler(sys.stdout))
noisy.setLevel(logging.INFO)

import metapredict.registry.comparison as comparison
real = comparison.model_versions

def model_versions(*args, **kwargs):
    logging.getLogger("numexpr.utils").info("NumExpr defaulting to 2 threads.")
    noisy.info("a library's own handler")
    print("a library's print")
    os.write(1, b"C-level write to fd 1\\n")
    return real(*args, **kwargs)

comparison.model_versions = model_versions
from metapredict.cli import app
app()
"""


@pytest.mark.slow
def test_compare_json_on_stdout_parses(trained_store: TrainedStore) -> None:
    done = run_cli("compare", "dormancy", "--format", "json", settings=trained_store.settings)
    assert done.returncode == 0, done.stderr
    versions = json.loads(done.stdout)
    assert [v["aliases"] for v in versions] == [["champion"]]
    assert versions[0]["metrics"]["test_harrell_c"] > 0.5


@pytest.mark.slow
def test_compare_table_is_the_only_thing_on_stdout(trained_store: TrainedStore) -> None:
    done = run_cli("compare", "tropism", settings=trained_store.settings)
    assert done.returncode == 0, done.stderr
    assert done.stdout.lstrip().startswith("metapredict-tropism: registered versions")
    assert "@champion" in done.stdout
    assert "INFO" not in done.stdout


@pytest.mark.slow
def test_library_noise_reaches_stderr_not_stdout(trained_store: TrainedStore) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _NOISY, "compare", "tropism", "--format", "json"],
        env=cli_env(trained_store.settings),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert [v["aliases"] for v in json.loads(done.stdout)] == [["champion"]]
    for noise in (
        "NumExpr defaulting to 2 threads.",
        "a library's own handler",
        "a library's print",
        "C-level write to fd 1",
    ):
        assert noise in done.stderr
        assert noise not in done.stdout


def test_help_is_a_result_on_stdout() -> None:
    done = run_cli("compare", "--help")
    assert done.returncode == 0, done.stderr
    assert "--format" in done.stdout
