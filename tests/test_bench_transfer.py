"""`cnnray bench transfer`'s parts that decide what it prints (its runs are `cnnray train`'s own code, tested
elsewhere; the command itself is run for the README's figures, not here: it trains seven models)."""

from collections import Counter

from cnnray.bench.transfer import _first_reaching, _halves, format_transfer_bench


def test_halves_split_the_classes_and_keep_a_tenth_of_b_for_training(tmp_path):
    a, b, n_train = _halves(tmp_path, 0.1)
    assert sorted(p.name for p in (a / "train").iterdir()) == ["0", "1", "2", "3", "4"]
    assert not (a / "val").exists()  # cnnray splits val and test off A's train/
    per_class = {split: Counter(p.parent.name for p in (b / split).rglob("*.png")) for split in ("train", "val", "test")}
    assert all(sorted(c) == ["5", "6", "7", "8", "9"] for c in per_class.values())
    assert sum(per_class["train"].values()) == n_train
    for c in "56789":  # stratified: ~15% val, ~15% test, 10% of the rest for training, in every class
        total = sum(per_class[s][c] for s in per_class) - per_class["train"][c]
        pool = round(total / 0.3) - total  # what was left for training before the 10% cut
        assert abs(per_class["train"][c] - 0.1 * pool) <= 1.5, (c, per_class)
    first = {p.name for p in (b / "train").rglob("*.png")}
    _halves(tmp_path / "again", 0.1)
    assert first == {p.name for p in (tmp_path / "again" / "B" / "train").rglob("*.png")}  # deterministic


def test_first_reaching_counts_epochs_and_says_never():
    curve = [(0.5, 10.0), (0.989, 20.0), (0.99, 30.0), (0.995, 40.0)]
    assert _first_reaching(curve, 0.99) == (3, 30.0)
    assert _first_reaching(curve, 0.999) == (None, None)


def test_the_tables_show_both_starts_and_a_target_never_reached():
    run = {"epochs_to_99": None, "seconds_to_99": None, "best_val_acc": 0.4457, "first_val_acc": 0.1,
           "epochs_run": 30, "seconds": 56.0}
    text = format_transfer_bench({
        "transfer": {"train_images": 63, "epochs": 15, "pretrain_val_acc": 1.0, "scratch_val_acc": 0.7687,
                     "pretrained_val_acc": 0.8582, "scratch_epochs_to_goal": 15, "pretrained_epochs_to_goal": 9},
        "tutorial": {"epochs_cap": 30, "default_job_val_acc": 0.9944, "default_job_seconds": 57.0, "scratch": run,
                     "pretrained": {**run, "epochs_to_99": 2, "seconds_to_99": 12.5, "best_val_acc": 0.995},
                     "pretrained_matched": {**run, "epochs_to_99": 1, "seconds_to_99": 7.0, "best_val_acc": 0.996}}})
    lines = text.splitlines()
    assert any(line.split()[:3] == ["pretrained", "0.8582", "9"] for line in lines), text
    assert any(line.startswith("scratch") and "not in 30" in line and "- (56 run)" in line for line in lines), text
    assert any(line.startswith("pretrained, its norm.") and " 7 " in f" {line} " for line in lines), text
