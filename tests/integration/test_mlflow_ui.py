"""The MLflow UI of a trained store, in headless Chromium: built for comparing models.

`metapredict ui` serves the session's trained store; the browser opens the link it prints (the
runs table on metapredict's saved view: headline metrics as columns, on first load, in a
browser with no stored state), the run-comparison page of the model families and the
experiment's Models tab, and checks that the headline metrics are on screen. Screenshots are
test artifacts: they go to ``$METAPREDICT_SCREENSHOTS`` when set (docs/img uses them), else to
the test's tmp folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow.artifacts
import pytest

from metapredict.registry.tracking import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND
from metapredict.registry.ui_view import (
    HEADLINE_COLUMNS,
    HEADLINE_VIEW_NAME,
    headline_view_links,
    view_tag_key,
)
from tests.integration.cli_process import ROOT, cli_env, metapredict_argv
from tests.servers import free_port, stop_process_group, wait_http_ok
from tests.support import TrainedStore, store_from_template

pytestmark = pytest.mark.slow

#: The metrics a reader compares first.
HEADLINE = {
    "tropism": ("macro_auroc", "macro_auprc", "macro_brier", "macro_calibration_error"),
    "dormancy": ("harrell_c", "uno_c", "td_auc_60", "td_auc_120", "integrated_brier"),
}

CHROMIUM = Path("/usr/bin/chromium")
#: Bound on waiting for the server and for each page (a loaded 2-core machine is slow).
SERVER_START_S = 180.0
PAGE_TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def ui_server(
    trained_store: TrainedStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """`metapredict ui` on the trained store: its URL and the file holding what it printed;
    stopped (its whole process group) afterwards."""
    port = free_port()
    log = tmp_path_factory.mktemp("ui") / "ui.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            metapredict_argv("ui", "--port", str(port)),
            env=cli_env(trained_store.settings),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the server's workers stop with it
        )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http_ok(f"{url}/health", SERVER_START_S, server)
        except (RuntimeError, TimeoutError) as error:
            raise AssertionError(f"the UI did not start: {error}\n{log.read_text()}") from None
        yield url, log
    finally:
        stop_process_group(server, timeout=30)


@pytest.fixture(scope="module")
def ui_url(ui_server: tuple[str, Path]) -> str:
    return ui_server[0]


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("METAPREDICT_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser(ui_url: str) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def _new_page(browser: Any, width: int = 1600) -> Any:
    """A page in a new browser context: no local storage, as on a reader's first visit."""
    context = browser.new_context(viewport={"width": width, "height": 1000})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    return context.new_page()


@pytest.fixture(scope="module")
def page(browser: Any) -> Any:
    return _new_page(browser)


def _runs(trained_store: TrainedStore, task: str) -> tuple[str, dict[str, Any]]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=trained_store.settings.tracking_uri)
    experiment = client.get_experiment_by_name(task)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    return experiment.experiment_id, {r.info.run_name: r for r in runs}


def test_experiments_are_model_training_experiments(trained_store: TrainedStore) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=trained_store.settings.tracking_uri)
    for task in ("tropism", "dormancy"):
        experiment = client.get_experiment_by_name(task)
        assert experiment is not None
        assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND


def test_family_runs_carry_the_headline_metrics_plots_and_comparable_params(
    trained_store: TrainedStore, tmp_path: Path
) -> None:
    _, runs = _runs(trained_store, "dormancy")
    parent = runs["dormancy-train"]
    families = [runs["lightgbm"], runs["cox_ph"]]
    for name in HEADLINE["dormancy"]:
        key = f"test_{name}"
        assert key in parent.data.metrics
        assert all(key in run.data.metrics for run in families)
    # the LightGBM child logs the parent's values under the parent's names
    assert runs["lightgbm"].data.metrics["test_harrell_c"] == parent.data.metrics["test_harrell_c"]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=trained_store.settings.tracking_uri)
    for run in families:
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        assert artifacts == {"plots/kaplan_meier_by_risk_group.png"}
    # tropism families: macro metrics as metrics, per-site values as a table beside them
    _, tropism_runs = _runs(trained_store, "tropism")
    for family in ("lightgbm", "logistic_regression"):
        run = tropism_runs[family]
        assert {f"test_{name}" for name in HEADLINE["tropism"]} <= set(run.data.metrics)
        assert not [k for k in run.data.metrics if k.startswith(("cv_auroc_", "test_auroc_"))]
        path = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id,
            artifact_path="metrics_per_site.json",
            dst_path=str(tmp_path / family),
            tracking_uri=trained_store.settings.tracking_uri,
        )
        table = json.loads(Path(path).read_text())
        assert set(table) == set(trained_store.outcomes["tropism"].sites)
        assert {"cv_auroc", "cv_auroc_std", "test_auroc", "test_brier"} <= set(table["bone"])
    # differing params, sorted as the compare view's parallel coordinates picks its default
    # axes (the first three): both families are among them
    lgbm, cox = runs["lightgbm"].data.params, runs["cox_ph"].data.params
    differing = sorted(k for k in set(lgbm) | set(cox) if lgbm.get(k) != cox.get(k))[:3]
    assert "family" in differing
    assert any(k.startswith("baseline.") for k in differing)
    assert any(k.startswith("model.") for k in differing)


def _logged_model(trained_store: TrainedStore, task: str) -> Any:
    """The MLflow 3 logged model behind version 1 of the task's registered model."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=trained_store.settings.tracking_uri)
    version = client.get_model_version(f"metapredict-{task}", "1")
    experiment_id, _ = _runs(trained_store, task)
    (model,) = client.search_logged_models(
        experiment_ids=[experiment_id], filter_string=f"source_run_id = '{version.run_id}'"
    )
    return model


def test_the_registered_model_carries_the_headline_metrics(trained_store: TrainedStore) -> None:
    for task in ("tropism", "dormancy"):
        metrics = {m.key for m in _logged_model(trained_store, task).metrics or []}
        assert {f"{split}_{m}" for m in HEADLINE[task] for split in ("test", "cv")} <= metrics


def test_compare_view_lines_up_the_families(
    trained_store: TrainedStore, ui_url: str, page: Any, screenshots: Path
) -> None:
    """The run-comparison page of the two families: both runs, a parallel-coordinates plot
    whose default axes are params of both families plus a metric both runs have, and the
    headline metrics in the first rows of the metric table (MLflow 3.17 renders about 15 rows
    of it, alphabetically, before the reader scrolls it)."""
    from playwright.sync_api import expect

    experiment_id, runs = _runs(trained_store, "tropism")
    chosen = [runs["lightgbm"], runs["logistic_regression"]]
    ids = json.dumps([r.info.run_id for r in chosen])
    page.goto(f"{ui_url}/#/compare-runs?runs={ids}&experiments={json.dumps([experiment_id])}")
    body = page.locator("body")
    expect(body).to_contain_text("Run details", timeout=PAGE_TIMEOUT_MS)
    text = page.inner_text("body")
    for run in chosen:
        assert run.info.run_name in text
    axes = text.split("Parameters:", 1)[1].split("Clear All", 1)[0].split()
    assert "family" in axes
    assert any(a.startswith("baseline.") for a in axes)
    assert any(a.startswith("model.") for a in axes)
    assert any(a.startswith("cv_") for a in axes)  # a metric axis shared by both families
    page.screenshot(path=str(screenshots / "compare-runs.png"), full_page=False)

    metric_rows = text.split("Metrics\nShow diff only", 1)[1].split("Artifacts", 1)[0].split()
    for name in HEADLINE["tropism"]:
        assert f"cv_{name}" in metric_rows, metric_rows
    # the metric table (a virtualised grid) into view, for the screenshot
    grid = page.locator(".ReactVirtualized__Grid")
    grid.get_by_text("cv_macro_auroc", exact=True).first.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "compare-metrics.png"), full_page=False)


def _printed_links(log: Path) -> dict[str, str]:
    """The per-task links `metapredict ui` printed (on stderr, before starting the server)."""
    pattern = re.compile(r"^\s*(\w+) runs, headline metrics as columns: (\S+)$", re.MULTILINE)
    return dict(pattern.findall(log.read_text()))


def _numbers(texts: list[str]) -> list[float]:
    """The numbers among a column's cells (a run without the metric shows "-")."""
    out = []
    for text in texts:
        try:
            out.append(float(text))
        except ValueError:
            continue
    return out


def test_the_printed_link_opens_the_runs_table_with_the_headline_metrics(
    trained_store: TrainedStore, ui_server: tuple[str, Path], browser: Any, screenshots: Path
) -> None:
    """First load, no stored browser state: the runs table already has a column per headline
    metric, and the training job's row shows its value there."""
    from playwright.sync_api import expect

    url, log = ui_server
    links = _printed_links(log)
    assert set(links) == {"tropism", "dormancy"}, log.read_text()
    experiment_id, runs = _runs(trained_store, "tropism")
    assert links["tropism"].startswith(f"{url}/#/experiments/{experiment_id}/runs?")
    page = _new_page(browser, width=1920)
    try:
        page.goto(links["tropism"])
        page.get_by_text("tropism-train").first.wait_for()
        body = page.locator("body")
        expect(body).to_contain_text(HEADLINE_VIEW_NAME)  # the saved view, by its name
        assert "Model training" in page.inner_text("body")  # not the GenAI overview
        parent = runs["tropism-train"].data.metrics
        for metric in HEADLINE_COLUMNS["tropism"]:
            column = f"metrics.`{metric}`"
            header = page.locator(f'.ag-header-cell[col-id="{column}"]')
            expect(header).to_be_visible()
            expect(header).to_contain_text(metric)
            cells = page.locator(f'[role="gridcell"][col-id="{column}"]')
            expect(cells.first).to_be_visible()
            values = _numbers(cells.all_inner_texts())
            assert any(v == pytest.approx(parent[metric], abs=5e-4) for v in values), (
                metric,
                values,
                parent[metric],
            )
        # Expanded, the job's row shows its families, each with its value in the same columns.
        page.locator(".ag-row", has_text="tropism-train").locator("button").first.click()
        for family in ("lightgbm", "logistic_regression"):
            page.get_by_text(family, exact=True).first.wait_for()
        values = page.locator('[role="gridcell"][col-id="metrics.`cv_macro_auroc`"]')
        for family in ("lightgbm", "logistic_regression"):
            expected = runs[family].data.metrics["cv_macro_auroc"]
            texts = _numbers(values.all_inner_texts())
            assert any(v == pytest.approx(expected, abs=5e-4) for v in texts), (family, texts)
        page.screenshot(path=str(screenshots / "runs-table.png"))
    finally:
        page.context.close()


def test_ui_saves_the_view_into_a_store_trained_before_it_existed(
    store_template: Path, tmp_path: Path
) -> None:
    """An experiment without the view gets it from `metapredict ui` (written once); one
    without runs of a task is left out."""
    from mlflow import MlflowClient

    settings = store_from_template(tmp_path / "store", store_template)
    # a client of its own: connect() would point mlflow's global URIs at this store
    client = MlflowClient(tracking_uri=settings.resolved_tracking_uri())
    experiment_id = client.create_experiment("dormancy")
    assert view_tag_key() not in client.get_experiment(experiment_id).tags
    links = headline_view_links(client, "http://127.0.0.1:5000")
    assert list(links) == ["dormancy"]
    tag = client.get_experiment(experiment_id).tags[view_tag_key()]
    envelope = json.loads(tag)
    columns = json.loads(envelope["state"])["selectedColumns"]
    assert {f"metrics.`{m}`" for m in HEADLINE_COLUMNS["dormancy"]} <= set(columns)
    assert headline_view_links(client, "http://127.0.0.1:5000") == links
    again = client.get_experiment(experiment_id).tags[view_tag_key()]
    assert again == tag  # not rewritten


def test_models_tab_and_logged_model_page(
    trained_store: TrainedStore, ui_url: str, page: Any, screenshots: Path
) -> None:
    experiment_id, _ = _runs(trained_store, "tropism")
    ml = "workflowType=machine_learning"
    page.goto(f"{ui_url}/#/experiments/{experiment_id}/models?{ml}")
    page.get_by_text("metapredict-tropism").first.wait_for()
    page.screenshot(path=str(screenshots / "models-tab.png"))
    model = _logged_model(trained_store, "tropism")
    page.goto(f"{ui_url}/#/experiments/{experiment_id}/models/{model.model_id}?{ml}")
    from playwright.sync_api import expect

    for name in HEADLINE["tropism"]:
        expect(page.locator("body")).to_contain_text(f"test_{name}", timeout=PAGE_TIMEOUT_MS)
    page.screenshot(path=str(screenshots / "logged-model.png"))
