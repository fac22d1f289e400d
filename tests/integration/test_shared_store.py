"""The shared store end to end: an MLflow tracking server on PostgreSQL
(``METAPREDICT_TRACKING_URI=http://...``, artifacts proxied).

The embedded SQLite default goes through the same steps in ``test_retrain`` (train, retrain,
promotion, compare, two retrains racing) and ``test_training_pipeline``, so this module runs on
the server only (the ``shared_store`` fixture narrowed to it), in one short CLI history:
``train`` registers version 1 as champion, ``retrain`` with a stronger model promotes version 2,
``compare`` lists both. Then the promotion race: two *processes* (as two hosts would) try to move
the champion at once, with the window between reading and writing the alias widened to 1.5 s;
exactly one wins. A control run without the lock shows the window is real (both win).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from metapredict import registry
from metapredict.cli import app
from metapredict.registry import promotion
from metapredict.registry.store import store_kind
from metapredict.settings import StoreSettings
from metapredict.simulator import default_config, simulate_cohort
from tests.postgres import TrackingServer
from tests.servers import child_env, register_copy, store_env, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("shared_store", ["server"], indirect=True),
]

MODEL = "metapredict-tropism"
#: A real but weak model; STRONG learns more from a larger cohort (as in test_retrain).
WEAK = (
    "[cv]\nfolds = 2\nbootstrap_resamples = 20\n[intervals]\nmembers = 2\n"
    "[model]\nn_estimators = 8\nlearning_rate = 0.1\nnum_leaves = 2\ncalibration_folds = 2\n"
)
STRONG = (
    "[cv]\nfolds = 2\nbootstrap_resamples = 20\n[intervals]\nmembers = 2\n"
    "[model]\nn_estimators = 60\nlearning_rate = 0.05\ncalibration_folds = 2\n"
)
#: The gate only asks for a better point estimate: the subject is the store, not the gate.
RETRAIN = (
    '[bootstrap]\nresamples = 20\n[gate.tropism]\nmetric = "macro_auroc"\n'
    "min_improvement = 0.0\nrequire_ci_above_zero = false\n[gate.tropism.calibration]\n"
    "macro_calibration_error = 1.0\nmacro_brier = 1.0\n"
)
#: Upper bound for a child process (seconds); they normally finish in a few.
CHILD_TIMEOUT = 180.0


@dataclass(frozen=True)
class History:
    settings: StoreSettings
    env: dict[str, str]
    train: tuple[int, str]
    retrain: tuple[int, str]


def _client(settings: StoreSettings) -> MlflowClient:
    uri = settings.resolved_tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def history(shared_store: StoreSettings, tmp_path_factory: pytest.TempPathFactory) -> History:
    root = tmp_path_factory.mktemp("shared-history")
    (root / "weak.toml").write_text(WEAK)
    (root / "strong.toml").write_text(STRONG)
    (root / "retrain.toml").write_text(RETRAIN)
    simulate_cohort(1_500, 1, default_config()).to_parquet(root / "c1.parquet", index=False)
    simulate_cohort(3_000, 3, default_config()).to_parquet(root / "c2.parquet", index=False)
    env = store_env(shared_store)
    runner = CliRunner(env=env)
    train = runner.invoke(
        app,
        [
            "train",
            "tropism",
            "--data",
            str(root / "c1.parquet"),
            "--config",
            str(root / "weak.toml"),
        ],
    )
    retrain = runner.invoke(
        app,
        [
            "retrain",
            "tropism",
            "--data",
            str(root / "c2.parquet"),
            "--training-config",
            str(root / "strong.toml"),
            "--config",
            str(root / "retrain.toml"),
        ],
    )
    return History(
        shared_store,
        env,
        (train.exit_code, " ".join(train.output.split())),
        (retrain.exit_code, " ".join(retrain.output.split())),
    )


def test_train_registers_the_first_champion(history: History) -> None:
    code, output = history.train
    assert code == 0, output
    assert "registered metapredict-tropism version 1 as @champion" in output
    client = _client(history.settings)
    run = client.get_run(client.get_model_version(MODEL, "1").run_id)
    assert store_kind(history.settings.resolved_tracking_uri()) == "http"
    # the server chose the location and stores the files: nothing written client-side
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "feature_importance.json"} <= names


def test_retrain_promotes_a_better_model_and_serves_it(history: History) -> None:
    code, output = history.retrain
    assert code == 0, output
    assert registry.current_version("tropism", "champion", history.settings) == "2"
    version = _client(history.settings).get_model_version(MODEL, "2")
    assert version.tags["retrain_decision"] == "promoted"
    assert "champion" in version.aliases
    # the service's loader: through MLflow's client (and the artifact proxy) for a server
    predictor = registry.load("tropism", "champion", history.settings)
    assert (predictor.info.version, predictor.info.alias) == ("2", "champion")


def test_compare_lists_both_versions(history: History) -> None:
    result = CliRunner(env=history.env).invoke(app, ["compare", "tropism", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {row["version"]: row for row in json.loads(result.stdout)}
    assert list(rows) == ["2", "1"]
    assert rows["2"]["aliases"] == ["champion"]
    assert rows["2"]["tags"]["retrain_outcome"] == "promoted"


# --- promotion across processes ---------------------------------------------------------------

#: A promoter process: waits for "go" on its stdin, then promotes with a 1.5 s pause after
#: every alias read (between "is the champion still X?" and "set champion"), so unserialised
#: promoters would both win.
_PROMOTER = """
import json, sys, time
from pathlib import Path
from metapredict.registry import promotion
version, expected, ready = sys.argv[1:4]
read = promotion._alias_version
def slow_read(client, name, alias):
    found = read(client, name, alias)
    time.sleep(1.5)
    return found
promotion._alias_version = slow_read
if len(sys.argv) > 4:  # the control: no lock
    import contextlib
    promotion.registry_lock = lambda *a, **k: contextlib.nullcontext()
promotion.champion_version("tropism")  # connected (store opened, client cached) before "go"
Path(ready).touch()
if sys.stdin.readline().strip() != "go":  # blocks until the parent releases both promoters
    sys.exit("no go signal")
result = promotion.promote_if_unchanged("tropism", version, expected)
print(json.dumps({"version": version, "promoted": result.promoted}))
"""


def _race(
    settings: StoreSettings, versions: tuple[str, str], expected: str, tmp: Path, *, lock: bool
) -> list[dict[str, object]]:
    """Two promoter processes released together; their JSON answers."""
    procs: list[subprocess.Popen[str]] = []
    try:
        for i, version in enumerate(versions):
            argv = [sys.executable, "-c", _PROMOTER, version, expected, str(tmp / f"r{i}")]
            procs.append(
                subprocess.Popen(
                    [*argv, *([] if lock else ["nolock"])],
                    env=child_env(settings),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )

        def ready() -> bool:
            assert all(p.poll() is None for p in procs), "a promoter exited early"
            return all((tmp / f"r{i}").exists() for i in range(2))

        wait_until(ready, CHILD_TIMEOUT, "both promoters to be ready")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        answers = []
        for proc in procs:
            out, _ = proc.communicate(timeout=CHILD_TIMEOUT)
            assert proc.returncode == 0, out
            answers.append(json.loads(out.strip().splitlines()[-1]))
        return answers
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def _three_versions(settings: StoreSettings) -> Iterator[MlflowClient]:
    """Version 3 (a copy of version 2's registration) exists and version 1 is champion."""
    client = _client(settings)
    if len(client.search_model_versions(f"name = '{MODEL}'")) < 3:
        register_copy(client, MODEL, "2")
    client.set_registered_model_alias(MODEL, "champion", "1")
    yield client


@pytest.mark.parametrize("lock", [True, False], ids=["locked", "control-without-lock"])
def test_two_processes_promote_at_most_once(history: History, tmp_path: Path, lock: bool) -> None:
    with _three_versions(history.settings) as client:
        answers = _race(history.settings, ("2", "3"), "1", tmp_path, lock=lock)
        winners = [a["version"] for a in answers if a["promoted"]]
        champion = str(client.get_model_version_by_alias(MODEL, "champion").version)
    if not lock:  # the window is real: without the lock both believe they promoted
        assert len(winners) == 2
        return
    assert winners == [champion], answers
    assert not client.search_registered_models(f"name = '{MODEL}{promotion.SERVER_LOCK_SUFFIX}'")


def test_processes_on_the_database_itself_share_an_advisory_lock(
    history: History, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Jobs given the PostgreSQL URI (not the server's) serialise on an advisory lock."""
    server: TrackingServer = request.getfixturevalue("mlflow_server")
    direct = StoreSettings(tracking_uri=server.backend_uri, artifact_root=str(tmp_path / "art"))
    with _three_versions(history.settings) as client:
        answers = _race(direct, ("3", "2"), "1", tmp_path, lock=True)
        winners = [a["version"] for a in answers if a["promoted"]]
        assert winners == [str(client.get_model_version_by_alias(MODEL, "champion").version)]


def test_a_lock_left_by_a_killed_job_is_named_not_broken(history: History) -> None:
    client = _client(history.settings)
    lock_name = f"{MODEL}{promotion.SERVER_LOCK_SUFFIX}"
    client.create_registered_model(lock_name, tags={"owner": "elsewhere:1:x"})
    try:
        with (
            pytest.raises(promotion.PromotionLockTimeoutError, match=lock_name),
            promotion.server_lock(client, MODEL, timeout=0.3),
        ):
            pass
        assert client.get_registered_model(lock_name).tags["owner"] == "elsewhere:1:x"
    finally:
        client.delete_registered_model(lock_name)


def test_ui_on_a_tracking_server_names_its_url(history: History) -> None:
    """The tracking server already serves the UI: `metapredict ui` prints its address."""
    uri = history.settings.resolved_tracking_uri()
    result = CliRunner(env=history.env).invoke(app, ["ui"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == uri
