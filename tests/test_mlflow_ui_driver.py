"""The MLflow UI of a real `mlflow server` lists a run's logged PNGs and previews them (headless Chromium)."""

from __future__ import annotations

import pytest
from chromium import INSTALL_HINT, Browser, find_chromium
from mlflow_ui import artifact_view_images


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for this module; missing Chromium fails (CI installs it), it does not skip."""
    if find_chromium() is None:
        pytest.fail(f"Chromium not found: {INSTALL_HINT}", pytrace=False)
    with Browser(timeout_s=60) as b:
        yield b


def _figure(title: str, width_in: float, seed: int):
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, 3), dpi=80)
    ax = fig.add_subplot()
    ax.plot(np.random.default_rng(seed).normal(size=30).cumsum())
    ax.set_title(title)
    return fig


@pytest.fixture(scope="module")
def logged_run(mlflow_server):
    """A finished run with insight/{confusion,per_class}.png (320x240, 400x240), insight/summary.json and a top PNG."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    experiment_id = client.create_experiment("ui-artifact-view")
    run_id = client.create_run(experiment_id).info.run_id
    client.log_figure(run_id, _figure("confusion", 4, 0), "insight/confusion.png")
    client.log_figure(run_id, _figure("per-class accuracy", 5, 1), "insight/per_class.png")
    client.log_dict(run_id, {"val_acc": 0.9}, "insight/summary.json")
    client.log_figure(run_id, _figure("learning curves", 4, 2), "learning_curves.png")
    client.set_terminated(run_id)
    return experiment_id, run_id


def test_artifact_view_previews_logged_pngs(browser, mlflow_server, logged_run):
    experiment_id, run_id = logged_run
    shown = artifact_view_images(browser, mlflow_server, experiment_id, run_id, "insight",
                                 ["confusion.png", "per_class.png"], timeout_s=60)

    assert set(shown) == {"confusion.png", "per_class.png"}
    assert shown.listed == ["confusion.png", "per_class.png", "summary.json"]
    # Each preview is its own file (sizes differ), decoded (naturalWidth) and not blank.
    assert (shown["confusion.png"]["naturalWidth"], shown["confusion.png"]["naturalHeight"]) == (320, 240), shown
    assert (shown["per_class.png"]["naturalWidth"], shown["per_class.png"]["naturalHeight"]) == (400, 240), shown
    for name, info in shown.items():
        assert info["complete"], (name, info)
        assert info["variance"] is None or info["variance"] > 100, (name, info)  # a plot, not a blank image
        assert any("get-artifact" in u and run_id in u for u in info["fetched"]), (name, info)
    assert shown["confusion.png"]["src"] != shown["per_class.png"]["src"]
    assert shown.url.endswith(f"/#/experiments/{experiment_id}/runs/{run_id}/artifacts"), shown.url
    # The UI works offline: everything it requested came from the tracking server.
    assert shown.external_requests == [], shown.external_requests
    # MLflow's own console errors are reported, not judged (3.17 logs a 404 for .../users/current: no auth).
    print("MLflow UI console errors:", shown.console_errors)


def test_missing_artifact_is_named(browser, mlflow_server, logged_run):
    experiment_id, run_id = logged_run
    with pytest.raises(AssertionError, match=r"not listed in 'the root': \['nope.png'\].*learning_curves.png"):
        artifact_view_images(browser, mlflow_server, experiment_id, run_id, "", ["learning_curves.png", "nope.png"],
                             timeout_s=60)
