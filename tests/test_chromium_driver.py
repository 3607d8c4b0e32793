"""tests/chromium.py drives a real headless Chromium: images load and have content, console errors are caught."""

from __future__ import annotations

import base64
import io

import pytest
from chromium import INSTALL_HINT, Browser, find_chromium, png_variance


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for this module; missing Chromium fails (CI installs it), it does not skip."""
    if find_chromium() is None:
        pytest.fail(f"Chromium not found: {INSTALL_HINT}", pytrace=False)
    with Browser(width=900, height=700, timeout_s=60) as b:
        yield b


def _png_data_uri(fig_or_array) -> str:
    import matplotlib.image

    buf = io.BytesIO()
    if hasattr(fig_or_array, "savefig"):
        fig_or_array.savefig(buf, format="png")
    else:
        matplotlib.image.imsave(buf, fig_or_array, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_images_load_with_content_and_no_errors(browser, tmp_path):
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2), dpi=80)
    ax = fig.add_subplot()
    ax.plot(np.linspace(0, 6, 50), np.sin(np.linspace(0, 6, 50)))
    ax.set_title("a plot")
    plot, blank = _png_data_uri(fig), _png_data_uri(np.ones((20, 30, 3)))
    html = tmp_path / "ok.html"
    html.write_text(f'<!doctype html><title>ok</title><h1>Images</h1>'
                    f'<img id="plot" src="{plot}"><img id="blank" src="{blank}">')

    page = browser.open(html.as_uri())
    page.wait_for("Array.from(document.images).every((i) => i.complete)", timeout_s=10)
    imgs = page.images()
    assert len(imgs) == 2, imgs
    assert all(i["complete"] and i["naturalWidth"] > 0 for i in imgs), imgs
    assert (imgs[0]["naturalWidth"], imgs[0]["naturalHeight"]) == (240, 160)
    assert (imgs[1]["naturalWidth"], imgs[1]["naturalHeight"]) == (30, 20)
    assert imgs[0]["variance"] > 100, imgs[0]  # a line, axes and text on white
    assert imgs[1]["variance"] == pytest.approx(0, abs=1e-6), imgs[1]
    assert imgs[0]["src"].startswith("data:image/png;base64,") and len(imgs[0]["src"]) == 80

    shot = page.screenshot(tmp_path / "ok.png")
    assert png_variance(shot) > 0
    assert page.evaluate("document.title") == "ok"
    assert page.console_errors == []
    page.close()


def test_console_errors_are_recorded(browser, tmp_path):
    html = tmp_path / "bad.html"
    html.write_text('<!doctype html><title>bad</title><script>console.error("boom")</script>'
                    '<script>throw new Error("bad")</script><img src="file:///nonexistent.png">')
    page = browser.open(html.as_uri())
    page.wait_for("document.images[0].complete", timeout_s=10)
    errors = "\n".join(page.console_errors)
    assert "boom" in errors and "Error: bad" in errors, page.console_errors
    # Chromium 156 logs the failed load as a network error: checked only when it is there to be checked.
    if any("nonexistent.png" in e for e in page.console_errors):
        assert any("ERR_FILE_NOT_FOUND" in e for e in page.console_errors), page.console_errors
    assert page.images()[0]["naturalWidth"] == 0

    with pytest.raises(RuntimeError, match="nope"):
        page.evaluate("(() => { throw new Error('nope') })()")
    assert page.evaluate("Promise.resolve(41).then((x) => x + 1)") == 42
    with pytest.raises(TimeoutError, match=r"window.never.*bad.html"):
        page.wait_for("window.never", timeout_s=0.5)
    page.close()


def test_png_variance(tmp_path):
    import matplotlib.image
    import numpy as np

    matplotlib.image.imsave(tmp_path / "white.png", np.ones((8, 8, 3)))
    half = np.ones((8, 8, 3))
    half[:, :4] = 0  # half black, half white: luminance variance (255/2)^2
    matplotlib.image.imsave(tmp_path / "half.png", half)
    assert png_variance(tmp_path / "white.png") == 0
    assert png_variance(tmp_path / "half.png") == pytest.approx(127.5**2)


def test_missing_executable_fails_clearly(tmp_path):
    fake = tmp_path / "fake-chromium"
    fake.write_text("#!/bin/sh\necho 'this is not chromium' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(RuntimeError, match=r"(?s)rc=3.*this is not chromium"):
        Browser(str(fake), timeout_s=10)
