"""The files of a training checkpoint folder, whichever host wrote it (plain state read with weights_only=True)."""

STATE_FILE = "state.pt"  # full training state (model, EMA, optimizer, schedule, counters, RNG)
BEST_FILE = "best_model.pt"  # weights of the best epoch so far (raw or EMA, whichever won)
META_FILE = "meta.json"  # epoch, best metrics, confusion matrix of the best epoch
CONFIG_FILE = "config.yaml"  # the resolved config of the run
HISTORY_KEY = "history"  # in META_FILE: {epoch: that epoch's reported scalars}, every epoch up to this checkpoint
