"""`cnnray bench predict` at a tiny size: both paths run on the same weights and every figure is reported."""

import pytest


@pytest.mark.slow
def test_predict_bench_reports_both_paths_on_the_same_weights(tmp_path, monkeypatch):
    from cnnray.bench.predict import format_predict_bench, run_predict_bench

    monkeypatch.chdir(tmp_path)
    r = run_predict_bench(model_name="resnet18", image_size=8, batch=16, single_repeats=2, batch_repeats=1)
    assert r["same_logits"]
    assert all(r[k] > 0 for k in ("single_ms_pyfunc", "single_ms_plain", "batch_imgs_per_s_pyfunc",
                                  "batch_imgs_per_s_plain", "batch_ratio", "single_ratio", "png_base64_imgs_per_s"))
    text = format_predict_bench(r)
    assert "ratio" in text and "single image" in text
    assert not (tmp_path / "mlruns").exists()  # the throwaway store is removed
