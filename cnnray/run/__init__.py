"""One training run from validated input to its end: the plan (a frozen LoopConfig), the claim and resume
check, the two hosts (local rank processes; Ray Train) that call the same per-rank entry (`rank_loop.py`),
the checkpoint store, and the end of the run (status, registration, the promotion trigger: `finish.py`).

Light on purpose (no torch, no Ray at import): `cnnray train` imports `cnnray.run.local_host` to start its
rank processes before anything heavy is imported.
"""
