"""`cnnray models` end to end, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cnnray.models import count_params, create_model, list_models

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnray.cli", "models", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow
def test_models_json():
    proc = _run("--json", "--input-size", "32")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = {r["name"]: r for r in result["models"]}
    assert result["input_size"] == 32 and result["stem"] == "cifar"
    assert sorted(rows) == list_models()
    assert rows["resnet18"]["params"] == count_params(create_model("resnet18", num_classes=10, stem="cifar"))
    assert all(r["flops"] > 0 for r in rows.values())
    assert rows["resnet101"]["flops"] > rows["resnet50"]["flops"] > rows["resnet18"]["flops"]
    assert "resnet18" in proc.stdout.split("{")[0]  # the table precedes the JSON line


def test_models_bad_arguments_exit_2():
    proc = _run("--no-such-option")
    assert proc.returncode == 2 and "unrecognized arguments" in proc.stderr
    proc = _run("--stem", "huge")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_models_bad_value_exit_2_in_process(capsys):
    from workflows.models import main

    assert main(["--input-size", "0"]) == 2
    assert "input_size" in capsys.readouterr().err
