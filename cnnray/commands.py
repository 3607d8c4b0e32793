"""The command table: `cnnray NAME` runs `python -m MODULE`. One list for the CLI and for job submission
(`cnnray submit NAME` checks and ships the same workflow)."""

from __future__ import annotations

# command name -> workflow module; a command may take a sub-command (`cnnray data prepare`).
COMMANDS: dict[str, str] = {
    "train": "workflows.train",
    "tune": "workflows.tune",
    "models": "workflows.models",
    "config": "workflows.config",
    "bench": "workflows.bench",
    "data": "workflows.data",
    "evaluate": "workflows.evaluate",
    "predict": "workflows.predict",
    "promote": "workflows.promote",
    "rollback": "workflows.rollback",
    "registry": "workflows.registry",
    "compress": "workflows.compress",
    "explore": "workflows.explore",
    "inspect": "workflows.inspect",
    "report": "workflows.report",
    "replay": "workflows.replay",
    "cluster": "workflows.cluster",
    "submit": "workflows.submit",
    "jobs": "workflows.jobs",
    "serve": "workflows.serve",
}
