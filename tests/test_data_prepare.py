"""`cnnray data prepare`: verified, deterministic Parquet shards; the parquet source reads them back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from cnnray.config.data import DataSection
from cnnray.data import describe_dataset, load_arrays
from cnnray.data.fake import write_image_folder
from cnnray.data.prepare import prepare_dataset
from cnnray.data.test_split import load_test_split
from cnnray.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def _folder(root: Path) -> Path:
    return write_image_folder(root, num_classes=3, per_class=8, size=12, val_per_class=2)


def _samples(x: torch.Tensor, y: torch.Tensor) -> list[tuple[int, bytes]]:
    return sorted((int(label), bytes(img.numpy())) for img, label in zip(x, y))


def _prepare(src: Path, out: Path, **kw) -> dict:
    cfg = DataSection(source="imagefolder", path=str(src))
    return prepare_dataset(cfg, out, progress=False, **kw)


def test_prepare_skips_corrupt_and_empty_and_writes_the_rest(tmp_path):
    src = _folder(tmp_path / "src")
    (src / "train" / "class_0" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    (src / "train" / "class_1" / "empty.png").write_bytes(b"")
    good = (src / "train" / "class_2" / "00000.png").read_bytes()
    (src / "train" / "class_2" / "truncated.png").write_bytes(good[: len(good) // 2])
    res = _prepare(src, tmp_path / "out", shards=2)
    skipped = {Path(s["path"]).name: s["reason"] for s in res["skipped"]}
    assert set(skipped) == {"corrupt.png", "empty.png", "truncated.png"}
    assert skipped["empty.png"] == "empty file (0 bytes)"
    # val/ holds the val split; test is 0.15 of each class's 9 train/ files, one each, drawn before decoding
    # (what the imagefolder source would draw): class_2's is truncated.png, skipped
    assert res["counts"] == {"train": 22, "val": 6, "test": 2}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["fingerprint"] == res["fingerprint"] and len(manifest["skipped"]) == 3
    assert manifest["splits"]["train"]["per_class"] == {"class_0": 7, "class_1": 7, "class_2": 8}
    assert manifest["splits"]["test"]["per_class"] == {"class_0": 1, "class_1": 1, "class_2": 0}
    rows = 0
    for shard in manifest["shards"]:
        table = pq.read_table(tmp_path / "out" / shard["file"])
        assert table.column_names == ["image", "shape", "label", "path"]
        assert shard["rows"] == table.num_rows
        rows += table.num_rows
        assert "corrupt.png" not in "".join(table.column("path").to_pylist())
    assert rows == 30 and sum(s["split"] == "test" for s in manifest["shards"]) == 2  # --shards 2 per split
    assert min(p.name for p in (tmp_path / "out").iterdir()) == "manifest.json"


def test_fingerprint_stable_and_content_sensitive(tmp_path):
    src = _folder(tmp_path / "src")
    a = _prepare(src, tmp_path / "a")
    b = _prepare(src, tmp_path / "b")
    assert a["fingerprint"] == b["fingerprint"]
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    img = Image.open(src / "train" / "class_1" / "00003.png").convert("RGB")
    img.putpixel((0, 0), (255 - img.getpixel((0, 0))[0], 0, 0))
    img.save(src / "train" / "class_1" / "00003.png")
    assert _prepare(src, tmp_path / "c")["fingerprint"] != a["fingerprint"]


def test_strict_fails_without_partial_output_and_refuses_existing_out(tmp_path):
    src = _folder(tmp_path / "src")
    (src / "val" / "class_2" / "zzz.png").write_bytes(b"broken")
    out = tmp_path / "out"
    with pytest.raises(DataError, match="zzz.png"):
        _prepare(src, out, strict=True)
    assert not out.exists() and not list(tmp_path.glob("out.tmp-*"))
    out.mkdir()
    with pytest.raises(DataError, match="already exists.*--overwrite"):
        _prepare(src, out)
    assert _prepare(src, out, overwrite=True)["counts"]["val"] == 6


def test_parquet_source_roundtrip_matches_imagefolder(tmp_path):
    src = _folder(tmp_path / "src")
    for fmt in ("png", "raw"):
        _prepare(src, tmp_path / fmt, fmt=fmt, shards=3)
        cfg = DataSection(source="parquet", path=str(tmp_path / fmt), image_size=12)
        info = describe_dataset(cfg)
        # val/ is the val split; test: round(8 * 0.15) = 1 of each class's 8 train/ images
        assert (info.num_train, info.num_val, info.num_test, info.num_classes, info.channels) == (21, 6, 3, 3, 3)
        tx, ty, vx, _ = load_arrays(cfg)
        assert tx.shape == (21, 3, 12, 12) and vx.shape == (6, 3, 12, 12) and ty.dtype == torch.int64
        folder = DataSection(source="imagefolder", path=str(src), image_size=12)
        fx, fy, _, _ = load_arrays(folder)
        assert _samples(tx, ty) == _samples(fx, fy)  # lossless formats: the same images, in another order
        t, ft = load_test_split(cfg), load_test_split(folder)
        assert _samples(t.x, t.y) == _samples(ft.x, ft.y) and t.fingerprint == info.test_fingerprint
    tx, *_ = load_arrays(DataSection(source="parquet", path=f"file://{tmp_path / 'png'}", image_size=8, channels=1))
    assert tx.shape == (21, 1, 8, 8)


def test_parquet_errors_name_the_path(tmp_path):
    with pytest.raises(DataError, match="no manifest.json.*nowhere"):
        describe_dataset(DataSection(source="parquet", path=str(tmp_path / "nowhere")))
    with pytest.raises(DataError, match="cannot open this URI"):
        describe_dataset(DataSection(source="parquet", path="nosuchscheme://bucket/x"))
    src = _folder(tmp_path / "src")
    _prepare(src, tmp_path / "p")
    manifest_path = tmp_path / "p" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "class_names": ["only_one"]}))
    with pytest.raises(DataError, match=r"labels must lie in \[0, 1\)"):
        load_arrays(DataSection(source="parquet", path=str(tmp_path / "p")))
    manifest_path.write_text(json.dumps(manifest))
    shard = next((tmp_path / "p").glob("train-*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-1] + b"x")
    with pytest.raises(DataError, match="does not match the sha256"):
        load_arrays(DataSection(source="parquet", path=str(tmp_path / "p")))


def test_prepare_array_sources(tmp_path):
    res = prepare_dataset(DataSection(source="digits"), tmp_path / "d", fmt="raw", progress=False)
    assert res["counts"] == {"train": 1169, "val": 359, "test": 269} and res["channels"] == 1
    tx, ty, _, _ = load_arrays(DataSection(source="parquet", path=str(tmp_path / "d"), image_size=8))
    dx, dy, _, _ = load_arrays(DataSection(source="digits", image_size=8))
    assert sorted(ty.tolist()) == sorted(dy.tolist()) and torch.equal(tx.sum(0), dx.sum(0))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnray.cli", "data", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.slow
def test_cli_prepare_exit_codes(tmp_path):
    src = _folder(tmp_path / "src")
    (src / "train" / "class_0" / "zero.png").write_bytes(b"")
    ok = _cli("prepare", "--source", "imagefolder", "--path", str(src), "--out", str(tmp_path / "o"), "--json")
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout.strip().splitlines()[-1])
    assert result["counts"] == {"train": 21, "val": 6, "test": 3} and "zero.png" in ok.stderr
    assert "+ 3 test (held out) images" in ok.stdout
    assert len(result["fingerprint"]) == 64
    bad = _cli("prepare", "--source", "imagefolder", "--path", str(tmp_path / "absent"), "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and str(tmp_path / "absent") in bad.stderr
    assert not (tmp_path / "x").exists()
    strict = _cli("prepare", "--source", "imagefolder", "--path", str(src), "--out", str(tmp_path / "s"), "--strict")
    assert strict.returncode == 2 and "zero.png" in strict.stderr and not (tmp_path / "s").exists()
