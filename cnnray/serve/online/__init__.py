"""Online serving on Ray Serve that follows a registered model's alias (`cnnray serve`).

options (checked without Ray or MLflow) -> loaded (a version loaded and smoke-tested) -> app (the Ray Serve
deployments: the classifier replicas and the follow signal) -> command (start, status, stop). `state` keeps
the local record of running apps that `status`, `stop` and the promote/rollback notification read; `notify`
tells them to re-resolve their alias now. Ray is imported only by `app` and `command`.
"""
