"""NonFiniteLossError names epoch and step and survives pickling (Ray ships worker errors pickled)."""

import pickle

from cnnray.errors import NonFiniteLossError


def test_message_and_pickle():
    err = NonFiniteLossError(3, 120)
    assert str(err) == "non-finite loss (nan) at epoch 3, step 120"
    back = pickle.loads(pickle.dumps(err))
    assert (back.epoch, back.step, str(back)) == (3, 120, str(err))
    assert isinstance(back, RuntimeError)
