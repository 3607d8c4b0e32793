"""The held-out test split: the three-way split, each source's test split and fingerprint, the audit hook."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from cnnray.config import load_config
from cnnray.config.data import DataSection
from cnnray.data import describe_dataset, load_arrays, resolve_loader_kind
from cnnray.data.fake import write_fake_cifar, write_image_folder
from cnnray.data.fingerprint import combine
from cnnray.data.info import DatasetInfo
from cnnray.data.manifest import fingerprint_of
from cnnray.data.prepare import prepare_dataset
from cnnray.data.sources import digits
from cnnray.data.split import stratified_split, stratified_split3
from cnnray.data.test_split import AUDIT_ENV, AUDIT_FRAMES, NoTestSplitError, load_test_split
from cnnray.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]


def _legacy_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """stratified_split as it was before test splits (old runs' splits must stay reproducible)."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = round(len(idx) * val_fraction)
        n_val = min(max(n_val, 1), len(idx) - 1) if len(idx) >= 2 else 0
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    empty = np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(train or [empty])), np.sort(np.concatenate(val or [empty]))


def _labels(seed: int = 0, n: int = 500, k: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, k, n)


def _samples(x: torch.Tensor, y: torch.Tensor) -> set[tuple[int, bytes]]:
    return {(int(label), bytes(img.numpy())) for img, label in zip(x, y)}


# --- stratified_split3 -------------------------------------------------------------------------------------------

def test_split3_disjoint_sorted_and_covering():
    for seed in range(5):
        labels = _labels(seed)
        tr, va, te = stratified_split3(labels, 0.2, 0.15, seed)
        assert all(p.dtype == np.int64 and np.array_equal(p, np.sort(p)) for p in (tr, va, te))
        assert np.array_equal(np.sort(np.concatenate([tr, va, te])), np.arange(len(labels)))


def test_split3_stratified_counts_per_class():
    labels = np.repeat(np.arange(4), [20, 40, 7, 100])
    tr, va, te = stratified_split3(labels, 0.2, 0.15, 3)
    for c, n in enumerate([20, 40, 7, 100]):  # both fractions of the class's whole count, rounded
        assert (labels[te] == c).sum() == round(n * 0.15) and (labels[va] == c).sum() == round(n * 0.2)
        assert (labels[tr] == c).sum() == n - round(n * 0.15) - round(n * 0.2)


def test_split3_deterministic_by_seed():
    labels = _labels()
    a, b = stratified_split3(labels, 0.2, 0.15, 4), stratified_split3(labels, 0.2, 0.15, 4)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    c = stratified_split3(labels, 0.2, 0.15, 5)
    assert not np.array_equal(a[2], c[2]) and not np.array_equal(a[1], c[1])


def test_test_split_does_not_depend_on_val_fraction():
    labels = _labels(n=300)
    test = stratified_split3(labels, 0.2, 0.15, 0)[2]
    for vf in (0.0, 0.05, 0.5, 0.84):
        _, va, te = stratified_split3(labels, vf, 0.15, 0)
        assert np.array_equal(te, test)
        assert len(va) > 0 if vf else len(va) == 0
    tiny = np.repeat(np.arange(3), 3)  # 3 per class, the smallest a test split holds one of
    assert all(np.array_equal(stratified_split3(tiny, vf, 0.5, 1)[2], stratified_split3(tiny, 0.2, 0.5, 1)[2])
               for vf in (0.0, 0.1, 0.49))


@pytest.mark.parametrize("n,expected", [(1, (1, 0, 0)), (2, (1, 1, 0)), (3, (1, 1, 1))])
def test_split3_edge_class_sizes(n, expected):
    labels = np.zeros(n, dtype=np.int64)
    for vf, tf in ((0.2, 0.15), (0.01, 0.01), (0.5, 0.49)):
        tr, va, te = stratified_split3(labels, vf, tf, 0)
        assert (len(tr), len(va), len(te)) == expected
    tr, va, te = stratified_split3(labels, 0.2, 0.0, 0)  # no test split: a class of 3 is 2 train + 1 val
    assert len(te) == 0 and len(tr) == n - (n >= 2) and len(va) == (n >= 2)
    assert len(stratified_split3(np.zeros(0, dtype=np.int64), 0.2, 0.15, 0)[0]) == 0


def test_test_fraction_zero_keeps_the_old_train_val_split():
    rng = np.random.default_rng(1)
    for _ in range(50):
        labels = rng.integers(0, int(rng.integers(1, 9)), int(rng.integers(1, 80)))
        vf, seed = float(rng.uniform(0.01, 0.9)), int(rng.integers(0, 1000))
        old = _legacy_split(labels, vf, seed)
        tr, va, te = stratified_split3(labels, vf, 0.0, seed)
        assert len(te) == 0 and np.array_equal(tr, old[0]) and np.array_equal(va, old[1])
        assert all(np.array_equal(p, q) for p, q in zip(stratified_split(labels, vf, seed), old))


# --- config and DatasetInfo --------------------------------------------------------------------------------------

def test_fractions_must_leave_a_train_split():
    assert DataSection().test_fraction == 0.15
    DataSection(val_fraction=0.5, test_fraction=0.49)
    with pytest.raises(ValidationError, match=r"data\.val_fraction.*data\.test_fraction.*must be < 1"):
        DataSection(val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ConfigError, match=r"data\.val_fraction \(0\.7\) \+ data\.test_fraction \(0\.4\)"):
        load_config(None, ["data.val_fraction=0.7", "data.test_fraction=0.4"])
    with pytest.raises(ConfigError, match="test_fraction"):
        load_config(None, ["data.test_fraction=-0.1"])
    assert load_config(None, ["data.test_fraction=0"]).data.test_fraction == 0


def test_dataset_info_from_before_test_splits_still_loads():
    info = describe_dataset(DataSection(source="synthetic", samples_per_class=10, image_size=8))
    old = {k: v for k, v in dataclasses.asdict(info).items() if k not in ("num_test", "test_fingerprint")}
    assert (DatasetInfo(**old).num_test, DatasetInfo(**old).test_fingerprint) == (0, "")
    assert DatasetInfo(**dataclasses.asdict(info)) == info


def test_loader_kind_ignores_the_test_split():
    cfg = DataSection(source="synthetic", samples_per_class=10, image_size=16, memory_budget_mb=1)
    info = describe_dataset(cfg)
    assert resolve_loader_kind(cfg, dataclasses.replace(info, num_test=10**9)) == "memory"


# --- sources -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [DataSection(source="digits", image_size=8),
                                 DataSection(source="synthetic", samples_per_class=20, image_size=8)],
                         ids=["digits", "synthetic"])
def test_array_source_test_split(cfg):
    info = describe_dataset(cfg)
    t = load_test_split(cfg)
    tx, ty, vx, vy = load_arrays(cfg)
    assert len(t.y) == info.num_test > 0 and (info.num_train, info.num_val) == (len(tx), len(vx))
    assert not _samples(t.x, t.y) & (_samples(tx, ty) | _samples(vx, vy))  # load never yields a test image
    assert t.fingerprint == info.test_fingerprint == load_test_split(cfg).fingerprint  # stable across calls
    other_val = cfg.model_copy(update={"val_fraction": 0.4})
    assert load_test_split(other_val).fingerprint == t.fingerprint and torch.equal(load_test_split(other_val).x, t.x)
    assert describe_dataset(other_val).num_val > info.num_val
    if cfg.source == "digits":  # over the native 8x8 bytes, before any resize (synthetic is generated at size)
        assert load_test_split(cfg.model_copy(update={"image_size": 16})).fingerprint == t.fingerprint
    assert load_test_split(cfg.model_copy(update={"split_seed": 1})).fingerprint != t.fingerprint
    assert load_test_split(cfg.model_copy(update={"test_fraction": 0.3})).fingerprint != t.fingerprint
    none = cfg.model_copy(update={"test_fraction": 0.0})
    with pytest.raises(NoTestSplitError, match=rf"data.source={cfg.source} has no test split: data.test_fraction=0"):
        load_test_split(none)
    assert (describe_dataset(none).num_test, describe_dataset(none).test_fingerprint) == (0, "")


def test_digits_test_fingerprint_follows_the_test_images(monkeypatch):
    cfg = DataSection(source="digits", image_size=8)
    before = load_test_split(cfg).fingerprint
    te = stratified_split3(digits.native()[1], cfg.val_fraction, cfg.test_fraction, cfg.split_seed)[2]
    real = digits.native

    def edited(index: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = real()
        x = x.copy()
        x[index, 0, 0, 0] ^= 1
        return x, y

    monkeypatch.setattr(digits, "native", lambda: edited(int(te[0])))  # one test image changes
    assert load_test_split(cfg).fingerprint != before
    train_only = int(np.setdiff1d(np.arange(1797), te)[0])
    monkeypatch.setattr(digits, "native", lambda: edited(train_only))  # a train/val image changes: test does not
    assert load_test_split(cfg).fingerprint == before and describe_dataset(cfg).test_fingerprint == before


def test_imagefolder_own_test_folder(tmp_path):
    root = write_image_folder(tmp_path / "f", num_classes=3, per_class=6, size=8, val_per_class=2, test_per_class=3)
    cfg = DataSection(source="imagefolder", path=str(root), image_size=8)
    info = describe_dataset(cfg)
    assert (info.num_train, info.num_val, info.num_test) == (18, 6, 9)  # test/ is the test split: nothing split off
    t = load_test_split(cfg)
    assert t.x.shape == (9, 3, 8, 8) and sorted(t.y.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert t.fingerprint == info.test_fingerprint and len(t.fingerprint) == 64
    for update in ({"test_fraction": 0.0}, {"test_fraction": 0.5, "val_fraction": 0.3}):  # fractions ignored
        other = describe_dataset(cfg.model_copy(update=update))
        assert (other.num_train, other.num_test, other.test_fingerprint) == (18, 9, info.test_fingerprint)
    img = root / "test" / "class_1" / "00001.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(img)
    changed = describe_dataset(cfg)
    assert changed.test_fingerprint != info.test_fingerprint == t.fingerprint
    assert changed.fingerprint != info.fingerprint  # the whole set's fingerprint covers test/ too
    assert load_test_split(cfg).fingerprint == changed.test_fingerprint


def test_imagefolder_test_split_off_train(tmp_path):
    root = write_image_folder(tmp_path / "f", num_classes=2, per_class=20, size=8)
    cfg = DataSection(source="imagefolder", path=str(root), image_size=8)
    info = describe_dataset(cfg)
    assert (info.num_train, info.num_val, info.num_test) == (26, 8, 6)  # per class: 20 = 13 + 4 + 3
    t = load_test_split(cfg)
    tx, ty, vx, vy = load_arrays(cfg)
    assert not _samples(t.x, t.y) & (_samples(tx, ty) | _samples(vx, vy))
    assert describe_dataset(cfg.model_copy(update={"val_fraction": 0.5})).test_fingerprint == t.fingerprint
    with_val = write_image_folder(tmp_path / "v", num_classes=2, per_class=20, size=8, val_per_class=2)
    i = describe_dataset(cfg.model_copy(update={"path": str(with_val)}))
    assert (i.num_train, i.num_val, i.num_test) == (34, 4, 6)  # val/ is val; test still comes off train/
    with pytest.raises(NoTestSplitError, match=rf"data.source=imagefolder \(data.path={re.escape(str(root))}\)"):
        load_test_split(cfg.model_copy(update={"test_fraction": 0.0}))


def test_imagefolder_test_folder_errors(tmp_path):
    root = write_image_folder(tmp_path / "z", num_classes=2, per_class=3, size=8, test_per_class=1)
    (root / "test" / "zebra").mkdir()
    Image.new("RGB", (8, 8)).save(root / "test" / "zebra" / "z.png")
    with pytest.raises(DataError, match="test class 'zebra'.*train classes: class_0, class_1"):
        describe_dataset(DataSection(source="imagefolder", path=str(root)))
    flat = tmp_path / "flat"
    (flat / "test" / "a").mkdir(parents=True)
    (flat / "a").mkdir()
    Image.new("RGB", (8, 8)).save(flat / "a" / "x.png")
    with pytest.raises(DataError, match="has test/ but no train/"):
        describe_dataset(DataSection(source="imagefolder", path=str(flat)))


def test_cifar_test_batch_is_the_test_split(tmp_path):
    d = write_fake_cifar(tmp_path, "cifar10", n_train=20, n_test=5)
    cfg = DataSection(source="cifar10", path=str(tmp_path), image_size=32)
    info = describe_dataset(cfg)
    assert (info.num_train + info.num_val, info.num_test) == (100, 5) and info.num_val > 0
    assert info.test_fingerprint == hashlib.sha256((d / "test_batch").read_bytes()).hexdigest()
    t = load_test_split(cfg.model_copy(update={"test_fraction": 0.0, "channels": 1, "image_size": 16}))
    assert t.x.shape == (5, 1, 16, 16) and t.fingerprint == info.test_fingerprint
    tx, ty, vx, vy = load_arrays(cfg)
    assert not _samples(load_test_split(cfg).x, load_test_split(cfg).y) & (_samples(tx, ty) | _samples(vx, vy))
    (d / "test_batch").write_bytes(b"not a pickle")  # load() never opens the test batch
    assert torch.equal(load_arrays(cfg)[0], tx)
    with pytest.raises(DataError, match="test_batch"):
        load_test_split(cfg)


# --- prepared Parquet --------------------------------------------------------------------------------------------

def test_prepare_writes_test_shards_with_their_own_fingerprint(tmp_path):
    cfg = DataSection(source="digits")
    res = prepare_dataset(cfg, tmp_path / "p", fmt="raw", shards=2, progress=False)
    assert res["counts"] == {"train": 1169, "val": 359, "test": 269}
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert sorted(p.name for p in (tmp_path / "p").glob("test-*")) == ["test-00000-of-00002.parquet",
                                                                        "test-00001-of-00002.parquet"]
    for split, n in res["counts"].items():
        records = [r for r in manifest["shards"] if r["split"] == split]
        assert manifest["splits"][split]["count"] == n == sum(r["rows"] for r in records)
        assert manifest["splits"][split]["fingerprint"] == fingerprint_of(records)
    assert manifest["fingerprint"] == combine(r["sha256"] for r in manifest["shards"])
    pq = DataSection(source="parquet", path=str(tmp_path / "p"), image_size=8)
    info = describe_dataset(pq)
    assert (info.num_train, info.num_val, info.num_test) == (1169, 359, 269)
    assert info.test_fingerprint == manifest["splits"]["test"]["fingerprint"]
    t, src = load_test_split(pq), load_test_split(cfg.model_copy(update={"image_size": 8}))
    assert _samples(t.x, t.y) == _samples(src.x, src.y) and t.fingerprint == info.test_fingerprint
    # the statistics training normalizes with are the train split's alone
    tx = load_arrays(DataSection(source="digits", image_size=8))[0].double() / 255
    assert np.allclose(manifest["mean"], [tx.mean()], atol=1e-5)


def test_prepare_with_test_fraction_zero_writes_no_test_split(tmp_path):
    res = prepare_dataset(DataSection(source="synthetic", samples_per_class=10, image_size=8, test_fraction=0),
                          tmp_path / "p", progress=False)
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert res["counts"]["test"] == 0 and "test" not in manifest["splits"] and not list((tmp_path / "p").glob("test-*"))
    with pytest.raises(NoTestSplitError, match="cnnray data prepare"):
        load_test_split(DataSection(source="parquet", path=str(tmp_path / "p")))


def test_old_manifest_without_test_shards_loads_but_has_no_test_split(tmp_path):
    prepare_dataset(DataSection(source="synthetic", samples_per_class=10, image_size=8), tmp_path / "p",
                    progress=False)
    path = tmp_path / "p" / "manifest.json"
    manifest = json.loads(path.read_text())
    for f in (tmp_path / "p").glob("test-*"):
        f.unlink()
    shards = [r for r in manifest["shards"] if r["split"] != "test"]
    splits = {s: {k: v for k, v in e.items() if k != "fingerprint"}
              for s, e in manifest["splits"].items() if s != "test"}
    path.write_text(json.dumps({**manifest, "shards": shards, "splits": splits, "fingerprint": fingerprint_of(shards)}))
    cfg = DataSection(source="parquet", path=str(tmp_path / "p"), image_size=8)
    info = describe_dataset(cfg)
    # 10 per class: round(1.5) = 2 went to the (now deleted) test shards, 2 to val
    assert (info.num_train, info.num_val, info.num_test, info.test_fingerprint) == (60, 20, 0, "")
    assert len(load_arrays(cfg)[0]) == 60
    with pytest.raises(NoTestSplitError, match=rf"data.path={re.escape(str(tmp_path / 'p'))}.*no test shards.*"
                                               r"prepare the data again with `cnnray data prepare` to write a test"):
        load_test_split(cfg)


def test_edited_test_fingerprint_in_manifest_is_refused(tmp_path):
    prepare_dataset(DataSection(source="synthetic", samples_per_class=10, image_size=8), tmp_path / "p",
                    progress=False)
    path = tmp_path / "p" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["splits"]["test"]["fingerprint"] = "0" * 64
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="splits.test.fingerprint .* does not match its test shards"):
        describe_dataset(DataSection(source="parquet", path=str(tmp_path / "p")))


# --- the one reader and its audit hook ---------------------------------------------------------------------------

def _read_through_a_helper(cfg: DataSection) -> int:
    return len(load_test_split(cfg).y)


def test_audit_hook_records_each_read(tmp_path, monkeypatch):
    cfg = DataSection(source="synthetic", samples_per_class=10, image_size=8)
    log = tmp_path / "audit.jsonl"
    monkeypatch.delenv(AUDIT_ENV)  # the suite's guard sets it for every test (split_audit.py)
    load_test_split(cfg)
    assert not log.exists()  # off unless the variable is set
    monkeypatch.setenv(AUDIT_ENV, str(log))
    n = _read_through_a_helper(cfg)
    load_test_split(cfg)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    fp = describe_dataset(cfg).test_fingerprint
    assert [(r["pid"], r["source"], r["n"], r["fingerprint"]) for r in lines] == [(os.getpid(), "synthetic", n, fp)] * 2
    frames = lines[0]["stack"].split(" <- ")
    assert len(frames) == AUDIT_FRAMES and frames[0] == f"{__name__}:_read_through_a_helper"
    assert frames[1] == f"{__name__}:test_audit_hook_records_each_read"
    assert lines[1]["stack"].startswith(f"{__name__}:test_audit_hook_records_each_read <- ")


def test_audit_lines_from_concurrent_processes_do_not_interleave(tmp_path):
    log = tmp_path / "audit.jsonl"
    code = ("from cnnray.config.data import DataSection\nfrom cnnray.data.test_split import load_test_split\n"
            "cfg = DataSection(source='synthetic', samples_per_class=10, image_size=8)\n"
            "for _ in range(20):\n    load_test_split(cfg)\n")
    env = {**os.environ, AUDIT_ENV: str(log)}
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env) for _ in range(3)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 60 and len({r["pid"] for r in lines}) == 3
    assert all(r["stack"].startswith("__main__:<module>") for r in lines)


def test_the_suites_guard_sees_reads_and_flags_only_selection_code(split_audit_guard):
    """The guard every test runs under (conftest.py) is live and tells the held-out look from a leak."""
    import split_audit

    assert split_audit.AUDIT_ENV == AUDIT_ENV and os.environ[AUDIT_ENV] == str(split_audit_guard.path)
    _read_through_a_helper(DataSection(source="synthetic", samples_per_class=10, image_size=8))
    (line,) = split_audit_guard.lines()
    assert line["stack"].startswith(f"{__name__}:_read_through_a_helper") and not split_audit_guard.leaks()
    leak = {**line, "stack": "cnnray.serve.data:load_split <- cnnray.run.rank_loop:_loaders <- cnnray.run.rank_loop:run_loop"}
    look = {**line, "stack": "cnnray.serve.data:load_split <- cnnray.run.held_out:evaluate_held_out <- "
                             "cnnray.run.finish:finish_training_run <- cnnray.tune.runs:register_best"}
    with open(split_audit_guard.path, "a") as f:
        f.write(json.dumps(leak) + "\n" + json.dumps(look) + "\n")
    assert split_audit_guard.leaks() == [leak]
    split_audit_guard.mark()  # the planted leak is not this test's failure


def test_only_test_split_calls_a_sources_load_test():
    """load_test_split is the one reader of test images: no other module calls a source's load_test."""
    callers = [str(p.relative_to(REPO)) for base in ("cnnray", "workflows") for p in (REPO / base).rglob("*.py")
               if re.search(r"\bload_test\(", p.read_text()) and p.parent.name != "sources"]
    assert callers == ["cnnray/data/test_split.py"]
