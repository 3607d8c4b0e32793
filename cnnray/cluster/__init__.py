"""Ray clusters cnnray starts itself: the local one of `cnnray train` / `tune` (`local_ray.py`) and its
watchdog, the multi-node cluster on one machine of `cnnray cluster up` (`nodes.py`), and the Ray session
helpers (quiet logs, graceful stop). Job submission to a cluster is `cnnray.jobs`.
"""
