"""MetricAccumulator against sklearn, on one rank and reduced over two gloo ranks."""


import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from sklearn import metrics as skm

from cnnray.loop.metrics import MetricAccumulator

C = 7


def _data(seed, n=90):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 5, (n,), generator=g)  # classes 5, 6 never true
    logits = torch.randn(n, C, generator=g) + 1.5 * F.one_hot(labels, C)
    logits[:, 6] = -50.0  # class 6 is never predicted either: sklearn leaves it out of macro averages
    return logits, labels


def _feed(acc, logits, labels, bs=16):
    for i in range(0, len(labels), bs):
        lg, lb = logits[i : i + bs], labels[i : i + bs]
        acc.update(lg, lb, F.cross_entropy(lg, lb, reduction="sum"))


def _check(out, logits, labels):
    y, p = labels.numpy(), logits.argmax(1).numpy()
    assert out["val_acc"] == pytest.approx(skm.accuracy_score(y, p))
    assert out["val_top5"] == pytest.approx(skm.top_k_accuracy_score(y, logits.numpy(), k=5, labels=range(C)))
    assert out["val_loss"] == pytest.approx(
        skm.log_loss(y, torch.softmax(logits.double(), 1).numpy(), labels=range(C)), rel=1e-6)
    for avg in ("macro", "weighted"):
        pr, rc, f1, _ = skm.precision_recall_fscore_support(y, p, average=avg, zero_division=0)
        assert (out[f"val_precision_{avg}"], out[f"val_recall_{avg}"], out[f"val_f1_{avg}"]) == pytest.approx(
            (pr, rc, f1))
    assert out["confusion_matrix"] == skm.confusion_matrix(y, p, labels=range(C)).tolist()


def test_matches_sklearn():
    logits, labels = _data(0)
    assert (logits.argmax(1) == 5).any()  # a predicted-but-never-true class exercises zero division
    acc = MetricAccumulator(C)
    _feed(acc, logits, labels)
    acc.all_reduce()  # no process group: a no-op
    out = acc.compute()
    _check(out, logits, labels)
    assert "test_acc" in acc.compute(prefix="test_")


def _rank(rank, world, init_file, q):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    logits, labels = _data(0)
    part = slice(0, 60) if rank == 0 else slice(60, 90)  # unequal batch counts per rank
    acc = MetricAccumulator(C)
    _feed(acc, logits[part], labels[part])
    acc.all_reduce()
    q.put((rank, acc.compute()))
    dist.destroy_process_group()


@pytest.mark.slow
def test_all_reduce_two_ranks(tmp_path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, 2, str(tmp_path / "store"), q)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(q.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    logits, labels = _data(0)
    for r in range(2):
        _check(results[r], logits, labels)
