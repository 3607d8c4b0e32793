"""Tell the apps served from this machine that follow a model's alias to re-resolve it now (what
`cnnray promote` and `cnnray rollback` do after moving an alias); each app also re-resolves on its own
every --follow-interval, so a missed notification only delays the switch."""

from __future__ import annotations

from collections.abc import Callable

from cnnray.serve.online import state
from cnnray.serve.online.command import http_json


def notify_followers(model_name: str, on_line: Callable[[str], None] = print) -> list[str]:
    """POST /follow to every live app whose --model is an alias of `model_name`; the URLs told."""
    told = []
    for rec in state.running():
        if rec.model_name != model_name or "@" not in rec.model:
            continue
        code, _ = http_json(f"{rec.url}/follow", method="POST", body=b"{}", timeout=5)
        if code == 200:
            told.append(rec.url)
            on_line(f"told app {rec.name!r} at {rec.url} to follow {rec.model} now")
        else:
            on_line(f"app {rec.name!r} at {rec.url} did not take the notification ({code or 'no answer'}); "
                    "it follows at its next --follow-interval")
    return told
