"""`cnnray explore`: figures that are not blank, a summary whose numbers hold the tutorial's lessons, exit 2 on bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from workflows.explore import main

FIGURES = ("gabor_simple_cells.png", "convolution_feature_maps.png", "activations.png")


@pytest.fixture(scope="module")
def explored(tmp_path_factory):
    """One full run (every part, 2 timed calls per figure) shared by the checks below."""
    out = tmp_path_factory.mktemp("explore") / "out"
    assert main(["--out", str(out), "--repeats", "2"]) == 0
    return out, json.loads((out / "summary.json").read_text())


def test_figures_are_written_and_not_blank(explored):
    import matplotlib.image as mpimg

    out, summary = explored
    assert sorted(summary["figures"].values()) == sorted(FIGURES)
    for name in FIGURES:
        pixels = mpimg.imread(out / name)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 300, name
        assert float(pixels[..., :3].var()) > 1e-3, f"{name} looks blank"
    readme = (out / "README.md").read_text()
    assert all(name in readme for name in FIGURES)


def test_gabor_prefers_the_grating_orientation(explored):
    g = explored[1]["gabor"]
    assert len(g["orientations_deg"]) == 8
    assert abs(g["preferred_deg"] - g["true_deg"]) <= g["step_deg"] + 1e-9
    assert g["selectivity"] > 1.5


def test_reference_convolution_matches_and_is_timed(explored):
    c = explored[1]["convolution"]
    assert c["max_abs_diff"] < 1e-4
    assert math.isfinite(c["speed_ratio"]) and c["speed_ratio"] > 0
    assert {"prewitt_vertical", "prewitt_horizontal", "diagonal_45", "diagonal_135", "sobel_x", "sobel_y"} <= set(
        c["kernel_names"])
    assert c["threads"] >= 1 and c["repeats"] == 2


def test_activation_gradients_and_throughput(explored):
    rows = explored[1]["activations"]["rows"]
    assert set(rows) == {"relu", "leaky_relu", "swish", "mish", "gelu", "frelu", "prelu"}
    assert rows["relu"]["zero_grad_fraction"] == pytest.approx(0.5, abs=0.01)
    for name in ("swish", "gelu", "mish"):
        assert rows[name]["zero_grad_fraction"] == 0.0, name
    for name, row in rows.items():
        assert math.isfinite(row["cpu_elements_per_s"]) and row["cpu_elements_per_s"] > 0, name


def test_only_the_chosen_part(tmp_path):
    assert main(["--out", str(tmp_path), "--what", "gabor", "--repeats", "1"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["parts"] == ["gabor"] and "convolution" not in summary
    assert not (tmp_path / "activations.png").exists()


@pytest.mark.parametrize("args, problem", [
    (["--what", "gabor,colour"], "valid: gabor, convolution, activations, all"),
    (["--repeats", "0"], "--repeats 0"),
    (["--what", ""], "--what"),
])
def test_bad_input_exits_2_naming_the_problem(tmp_path, capsys, args, problem):
    assert main(["--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert problem in err
    assert not (tmp_path / "out").exists()  # checked before any work
    if "colour" in args[-1]:
        assert "colour" in err


def test_out_pointing_at_a_file_exits_2(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("x")
    assert main(["--out", str(target)]) == 2
    assert "existing file" in capsys.readouterr().err


def test_help_through_the_cnnray_command():
    done = subprocess.run([sys.executable, "-m", "cnnray.cli", "explore", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--what" in done.stdout and "--repeats" in done.stdout
