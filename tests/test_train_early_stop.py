"""Early stopping: patience counts epochs without an improvement larger than min_delta."""

from cnnray.loop.early_stop import EarlyStopping


def test_max_mode_with_min_delta():
    es = EarlyStopping(patience=2, min_delta=0.1, mode="max")
    assert es.step(0.5) is False and es.improved
    assert es.step(0.55) is False and not es.improved  # +0.05 is within min_delta
    assert es.step(0.65) is False and es.improved  # +0.15 beats best=0.5 by more than 0.1
    assert es.step(0.7) is False and not es.improved
    assert es.step(0.74) is True and es.best == 0.65


def test_min_mode_and_state_round_trip():
    es = EarlyStopping(patience=3, mode="min")
    for v in (1.0, 0.9, 0.95):
        es.step(v)
    other = EarlyStopping(patience=3, mode="min")
    other.load_state_dict(es.state_dict())
    assert other.step(0.9) is False  # equal is not better
    assert other.step(0.91) is True and other.bad_epochs == 3
