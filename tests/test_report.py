"""`cnnray report` end to end: a model trained by `cnnray train` against a real `mlflow server`, evaluated,
promoted, inspected and compressed; its page opened in headless Chromium, and the MLflow UI showing the
logged figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chromium import Browser, png_variance

REPO = Path(__file__).resolve().parents[1]
NAME = "report"
TINY = ["data.image_size=16", "model.width=0.125", "train.batch_size=64", "scaling.num_workers=1",
        "scaling.runner=local", "train.epochs=2"]


def _main(module: str, *args: str) -> tuple[int, dict | None, str]:
    """(exit code, the --json result or None, what it printed) of `cnnray MODULE ARGS`, in this process."""
    import contextlib
    import importlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = importlib.import_module(f"workflows.{module}").main(list(args))
    lines = out.getvalue().strip().splitlines()
    last = lines[-1] if lines else ""
    return code, (json.loads(last) if last.startswith("{") else None), out.getvalue() + err.getvalue()


@pytest.fixture(scope="module")
def trained(mlflow_server, tmp_path_factory):
    """Version 1 of `report`, trained by `cnnray train` (local runner, 2 epochs of 16x16 digits)."""
    tmp = tmp_path_factory.mktemp("report")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "workflows.train", *TINY, f"scaling.storage_path={tmp / 'runs'}",
                           f"tracking.uri={mlflow_server}", "tracking.experiment=report", f"registry.name={NAME}",
                           "--json"], cwd=tmp, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def page(trained, mlflow_server, tmp_path_factory):
    """The version evaluated, promoted, inspected, then reported: (the --json result, the HTML file)."""
    uri = f"tracking.uri={mlflow_server}"
    for module, *args in (("evaluate", "--model", f"models:/{NAME}/1", "tracking.experiment=report"),
                          ("promote", "--name", NAME, "--candidate", "1", "tracking.experiment=report"),
                          ("inspect", "--model", f"models:/{NAME}/1", "--what", "filters,gradcam", "--images", "2",
                           "--out", str(tmp_path_factory.mktemp("inspect")))):
        code, _, text = _main(module, *args, uri)
        assert code == 0, f"cnnray {module}: {text[-3000:]}"
    code, result, text = _main("report", "--model", f"models:/{NAME}@champion", uri, "--out",
                               str(tmp_path_factory.mktemp("page")), "--json")
    assert code == 0, text[-3000:]
    return result, Path(result["path"])


def test_the_page_gathers_every_record_and_is_logged(page, trained, mlflow_server):
    from mlflow.tracking import MlflowClient

    result, path = page
    assert result["model"] == f"models:/{NAME}/1" and result["run_id"] == trained["run_id"]
    assert result["figures"] == {"training": 2, "evaluation": 1, "inspect": 2, "search": 0}
    assert (result["evaluations"], result["decisions"], result["tuned"]) == (1, 1, False)
    assert set(result["missing"]) == {"search"}
    html = path.read_text()
    assert trained["run_id"] in html and "promoted" in html and "evaluate-report-v1" in html
    tags = MlflowClient(mlflow_server).get_model_version(NAME, "1").tags
    assert tags["cnnray.config_hash"] in html and tags["cnnray.data_fingerprint"] in html
    overview = html.split('<section id="overview">')[1].split("</section>")[0]
    assert "training device-hours" in overview and ">cpu</td>" in overview  # cnnray.cost_* of the version
    per_class = html.split('<section id="classes">')[1].split("</section>")[0]
    assert all(f"<td>{c}</td>" in per_class for c in "0123456789")
    logged = [a.path for a in MlflowClient(mlflow_server).list_artifacts(trained["run_id"], "report")]
    assert logged == result["artifacts"] == [f"report/{NAME}-v1.html"]


def test_the_page_renders_in_chromium_with_every_image_drawn(page, tmp_path):
    result, path = page
    with Browser() as browser:
        tab = browser.open(path.as_uri())
        images = tab.images()
        assert len(images) == sum(result["figures"].values()) == 5
        for img in images:
            assert img["complete"] and img["naturalWidth"] > 100 and img["naturalHeight"] > 100, img
            assert img["variance"] is not None and img["variance"] > 1e-4, img  # not blank
        assert tab.evaluate("document.scripts.length") == 0
        assert tab.evaluate("[...document.querySelectorAll('section')].map(s => s.id).join()") == (
            "overview,lineage,training,classes,evaluation,promotion,inspect,search")
        shot = tab.screenshot(tmp_path / "report.png")
        errors = tab.console_errors
    assert png_variance(shot) > 1e-3
    assert errors == []


def test_hostile_registry_text_stays_text(trained, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    hostile = '<script>window.pwned = 1</script><img src="https://example.com/x.png" onerror="window.pwned = 2">'
    client.update_model_version(NAME, "1", description=hostile)
    try:
        code, result, text = _main("report", "--model", f"models:/{NAME}/1", f"tracking.uri={mlflow_server}",
                                   "--out", str(tmp_path), "--no-log", "--json")
    finally:
        client.update_model_version(NAME, "1", description="")
    assert code == 0, text
    assert result["artifacts"] == []  # --no-log
    with Browser() as browser:
        tab = browser.open(Path(result["path"]).as_uri())
        assert tab.evaluate("typeof window.pwned") == "undefined"
        assert hostile in tab.evaluate("document.body.innerText")  # shown as text
        assert tab.console_errors == []


def test_mlflow_ui_shows_the_logged_figures(page, trained, mlflow_server):
    from mlflow.tracking import MlflowClient

    from mlflow_ui import artifact_view_images

    run = MlflowClient(mlflow_server).get_run(trained["run_id"])
    names = ["filters_vs_gabor.png", "gradcam.png"]
    with Browser() as browser:
        shown = artifact_view_images(browser, mlflow_server, run.info.experiment_id, run.info.run_id, "insight", names)
    for name in names:
        assert shown[name]["naturalWidth"] > 100 and shown[name]["naturalHeight"] > 100, shown


def test_a_compressed_version_names_its_source(trained, mlflow_server, tmp_path):
    uri = f"tracking.uri={mlflow_server}"
    code, result, text = _main("compress", "--model", f"models:/{NAME}/1", "--method", "fuse", uri,
                               "tracking.experiment=report", "--repeats", "2", "--json")
    assert code == 0, text[-3000:]
    code, result, text = _main("report", "--model", f"models:/{NAME}/{result['version']}", uri, "--out",
                               str(tmp_path), "--no-log", "--json")
    assert code == 0, text[-3000:]
    assert result["compressed_from"] == [f"models:/{NAME}/1"]
    html = Path(result["path"]).read_text()
    lineage = html.split('<section id="lineage">')[1].split("</section>")[0]
    assert "Compression evidence" in lineage and "<td>fuse</td>" in lineage


def test_two_reports_of_one_version_at_once(trained, mlflow_server, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "workflows.report", "--model", f"models:/{NAME}/1", f"tracking.uri={mlflow_server}",
           "--out", str(tmp_path), "--no-log"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for _ in range(2)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert [p.name for p in tmp_path.iterdir()] == [f"{NAME}-v1.html"]  # no temporary file left behind
    assert (tmp_path / f"{NAME}-v1.html").read_text().rstrip().endswith("</html>")


@pytest.mark.parametrize("args,needle", [
    (["--model", f"runs:/{'ab' * 16}/model"], "registered version"),
    (["--model", "models:/no-such-model/1"], "no registered model named 'no-such-model'"),
    (["--model", f"models:/{NAME}/99"], "has no version 99"),
    (["--model", f"models:/{NAME}@nobody"], "has no alias 'nobody'"),
    (["--model", f"models:/{NAME}/1", "data.image_size=8"], "add --inspect"),
    (["--model", f"models:/{NAME}/1", "train.epochs=3"], "not accepted here"),
])
def test_bad_input_exits_2_naming_the_problem(trained, mlflow_server, args, needle):
    code, _, text = _main("report", *args, f"tracking.uri={mlflow_server}")
    assert code == 2 and needle in text, text


def test_out_that_is_a_file_exits_2(tmp_path):
    (tmp_path / "f").write_text("x")
    code, _, text = _main("report", "--model", f"models:/{NAME}/1", "--out", str(tmp_path / "f"))
    assert code == 2 and "is an existing file" in text, text
