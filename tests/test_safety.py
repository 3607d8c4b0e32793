"""Safety of `cnnray train` / `cnnray tune` against careless or hostile use (issue 8, one test per case).

The live-run tests start a real `cnnray train` process with its own local Ray cluster (the way a
user runs it), look at it from outside (its sockets, a second start under its name), SIGKILL it
and check what is left. Every wait is bounded; every process started is killed in teardown.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from cnnray.cluster.watchdog import descendants, start_time

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.image_size=16", "model.width=0.125", "train.batch_size=64", "scaling.num_workers=2"]


def _train_main(*args: str) -> int:
    from workflows.train import main

    return main(list(args))


def _tune_main(*args: str) -> int:
    from workflows.tune import main

    return main(list(args))


def _store(tmp_path: Path) -> list[str]:
    return [f"scaling.storage_path={tmp_path / 'runs'}", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"]


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _only_run(uri: str):
    client = _client(uri)
    exp = client.get_experiment_by_name("cnnray")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


# ---------------------------------------------------------------- cases 1, 4, 5: refused before any work

@pytest.mark.parametrize("name", ["../escape", "/abs/path", "a/b", "..", ".hidden", "héllo", "名前", "a b", "x" * 129])
def test_case1_case5_run_name_must_be_a_name(tmp_path, capsys, name):
    rc = _train_main(*TINY, *_store(tmp_path), f"run.name={name}")
    assert rc == 2
    err = capsys.readouterr().err
    assert "run.name" in err and "a run name is a name, not a path" in err
    # Nothing written anywhere: no run folder, no MLflow store, no marker that burns the name.
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "escape").exists() and not Path("/abs/path").exists()


def test_case1_tune_search_name_must_be_a_name(tmp_path, capsys):
    assert _tune_main(*_store(tmp_path), "run.name=../escape") == 2
    assert "a run name is a name, not a path" in capsys.readouterr().err
    assert not (tmp_path / "escape").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("override,key", [
    ("scaling.num_workers=0", "scaling.num_workers"),
    ("scaling.num_workers=-1", "scaling.num_workers"),
    ("scaling.num_workers=[3,1]", "scaling.num_workers"),
    ("optim.lr=.inf", "optim.lr"),
    ("optim.lr=.nan", "optim.lr"),
    ("optim.lr=0", "optim.lr"),
    ("optim.weight_decay=.inf", "optim.weight_decay"),
    ("optim.betas=[0.9,1.0]", "optim.betas"),
    ("train.seed=-1", "train.seed"),
    ("schedule.milestones=[0.75,0.5]", "schedule.milestones"),
    ("data.augment.mixup_alpha=.inf", "data.augment.mixup_alpha"),
    ("train.resume_from=../../etc", "train.resume_from"),
])
def test_case4_out_of_range_values_exit_2_before_ray_or_mlflow(tmp_path, capsys, override, key):
    import ray

    was_up = ray.is_initialized()
    assert _train_main(*TINY, *_store(tmp_path), override) == 2
    assert f"'{key}'" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "runs").exists()
    assert ray.is_initialized() == was_up  # no Ray started for bad input


def test_case3_fewer_images_per_worker_than_a_batch_is_refused(tmp_path, capsys):
    # 36 images: 28 train after the split, 14 per worker, batch 32 -> not a single optimizer step.
    rc = _train_main("data.source=synthetic", "data.num_classes=12", "data.samples_per_class=3",
                     "data.image_size=16", "model.width=0.125", "train.batch_size=32", "scaling.num_workers=2",
                     *_store(tmp_path), "run.name=tiny")
    assert rc == 2
    err = capsys.readouterr().err
    assert "per worker" in err and "train.batch_size=32" in err and "scaling.num_workers" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


def test_case3_a_run_without_optimizer_steps_is_never_registered(ray_local, tmp_path, monkeypatch):
    """Second guard: with the up-front check bypassed, the run ends FAILED and registers nothing."""
    import cnnray.run.plan as prepare
    import cnnray.run.training as trainer
    from cnnray.config import load_config

    monkeypatch.setattr(prepare, "check_steps_per_epoch", lambda cfg, info: None)
    cfg = load_config(overrides=["data.source=synthetic", "data.num_classes=12", "data.samples_per_class=3",
                                 "data.image_size=16", "model.width=0.125", "train.batch_size=32", "train.epochs=1",
                                 "scaling.num_workers=2", *_store(tmp_path), "run.name=nosteps",
                                 "registry.name=never-trained"])
    result = trainer.run_training(cfg, on_line=lambda s: None)
    assert result["status"] == "FAILED" and "no optimizer step" in result["error"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert _only_run(uri).info.status == "FAILED"
    assert _client(uri).search_model_versions("name='never-trained'") == []


# ---------------------------------------------------------------- case 2: one name, two processes

def _claim_worker(run_dir: str, barrier, results) -> None:
    from cnnray.errors import ConfigError
    from cnnray.run.claim import RunClaim

    barrier.wait()
    try:
        RunClaim(run_dir).acquire(new=True)
        results.put("won")
        time.sleep(3)  # hold it while the others try
    except ConfigError as e:
        results.put(str(e))


@pytest.mark.slow
def test_case2_claim_is_exclusive_across_processes(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    n = 6
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_claim_worker, args=(str(tmp_path / "runs" / "same"), barrier, results))
             for _ in range(n)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in range(n)]
    for p in procs:
        p.join(timeout=30)
    assert outcomes.count("won") == 1, outcomes
    assert all("in use by another cnnray process" in o for o in outcomes if o != "won"), outcomes


def _train_cmd(tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "workflows.train", *TINY, *_store(tmp_path), "registry.enabled=false", *extra]


def _spawn(cmd: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def _kill_tree(proc: subprocess.Popen, tree: dict[int, int] | None = None) -> None:
    tree = dict(tree or {})
    if proc.poll() is None:
        tree.update(descendants(proc.pid))
        proc.kill()
    for pid, st in tree.items():
        if start_time(pid) == st:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        pass


# ---------------------------------------------------------------- cases 2, 6, 7, 8: a live run, seen from outside

@dataclass
class Live:
    proc: subprocess.Popen
    tmp: Path
    run_dir: Path
    uri: str
    loser_rc: int | None  # the twin started at the same moment under the same name
    loser_err: str
    winner_alive_when_loser_exited: bool
    runs_when_loser_exited: list[str]


@pytest.fixture(scope="module")
def live_run(tmp_path_factory):
    """A real `cnnray train` process on Ray Train with its own local Ray, trained past its first checkpoint.

    It is the winner of two trainings started at the same moment under one name (case 2): the same
    expensive start-up serves both the twin check and the live-run checks.
    """
    tmp = tmp_path_factory.mktemp("live")
    # scaling.runner=ray: the local Ray cluster is under test here (test_train_local.py covers local runs).
    a, b = (_spawn(_train_cmd(tmp, "run.name=live", "train.epochs=40", "scaling.runner=ray"), tmp) for _ in range(2))
    try:
        deadline = time.time() + 180
        while a.poll() is None and b.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        loser, proc = (a, b) if a.poll() is not None else (b, a)
        loser_rc = loser.poll()
        winner_alive = proc.poll() is None
        runs = sorted(p.name for p in (tmp / "runs").iterdir()) if (tmp / "runs").exists() else []
        loser_err = loser.stderr.read() if loser_rc is not None else ""
    except BaseException:
        for p in (a, b):
            _kill_tree(p)
        raise
    _kill_tree(loser)
    run_dir = tmp / "runs" / "live"
    deadline = time.time() + 240
    while not (run_dir / "checkpoint_manager_snapshot.json").exists():
        if proc.poll() is not None or time.time() > deadline:
            _kill_tree(proc)
            pytest.fail(f"live run did not checkpoint: rc={proc.poll()} {proc.stderr.read()[-2000:]}")
        time.sleep(0.5)
    yield Live(proc, tmp, run_dir, f"sqlite:///{tmp / 'mlflow.db'}", loser_rc, loser_err, winner_alive, runs)
    _kill_tree(proc)


def test_case2_two_trainings_started_at_once_with_one_name(live_run):
    assert live_run.loser_rc == 2, (live_run.loser_rc, live_run.loser_err[-2000:])
    err = live_run.loser_err
    assert "live" in err and ("in use by another cnnray process" in err or "already exists" in err), err
    assert live_run.winner_alive_when_loser_exited  # the winner is training, alone
    assert live_run.runs_when_loser_exited == ["live"]


def _loopback(addr: str) -> bool:
    return addr.startswith("127.") or addr in ("::1", "::ffff:127.0.0.1") or addr.startswith("::ffff:127.")


def _hex_addr(text: str) -> str:
    """/proc/net address field -> IP text."""
    import ipaddress

    ip_hex = text.split(":")[0]
    raw = bytes.fromhex(ip_hex)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    v6 = ipaddress.IPv6Address(words)
    return f"::ffff:{v6.ipv4_mapped}" if v6.ipv4_mapped else str(v6)


def listening_sockets(pids: set[int]) -> list[tuple[int, str, str]]:
    """(pid, proto, local address) of every listening TCP socket and bound UDP socket the processes hold."""
    inode_of: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inode_of[target[8:-1]] = pid
        except OSError:
            continue
    out = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
            f = line.split()
            local, state, inode = f[1], f[3], f[9]
            if inode in inode_of and (state == "0A" or proto.startswith("udp")):
                out.append((inode_of[inode], proto, f"{_hex_addr(local)}:{int(local.split(':')[1], 16)}"))
    return out


def test_case8_local_cluster_listens_only_on_loopback(live_run):
    pids = {live_run.proc.pid, *descendants(live_run.proc.pid)}
    socks = listening_sockets(pids)
    assert len(socks) >= 4, socks  # GCS, raylet, workers, agents: the check saw the cluster
    wide = [s for s in socks if not _loopback(s[2].rsplit(":", 1)[0])]
    # The one documented exception: torch.distributed's rendezvous store (TCPStore), served by the rank-0
    # training worker, has no bind-address option in PyTorch and listens on all interfaces (README, Safety).
    store = [s for s in wide if Path(f"/proc/{s[0]}/comm").read_text().startswith("ray::RayTrainWo")]
    assert len(store) <= 1 and len({s[0] for s in store}) <= 1, store
    assert not [s for s in wide if s not in store], f"listening beyond 127.0.0.1: {wide}"


def test_case2_second_start_while_running_names_the_holder(live_run):
    for extra in ([], ["train.resume=true"]):
        r = subprocess.run(_train_cmd(live_run.tmp, "run.name=live", "train.epochs=40", *extra), cwd=live_run.tmp,
                           capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert r.returncode == 2, r.stderr
        assert "in use by another cnnray process" in r.stderr and f"pid {live_run.proc.pid}" in r.stderr


def test_case7_sigkill_leaves_no_ray_process_and_marks_the_run_killed(live_run):
    tree = descendants(live_run.proc.pid)
    cmd = {p: Path(f"/proc/{p}/cmdline").read_text(errors="ignore").replace("\0", " ") for p in tree}
    watchdog = {p: st for p, st in tree.items() if "cnnray.cluster.watchdog" in cmd[p]}
    ray_procs = {p: st for p, st in tree.items() if p not in watchdog}
    assert len(watchdog) == 1 and any("raylet" in cmd[p] for p in ray_procs), cmd
    live_run.proc.send_signal(signal.SIGKILL)
    live_run.proc.wait(timeout=30)
    t0 = time.time()
    try:
        deadline = t0 + 10
        while time.time() < deadline and any(start_time(p) == st for p, st in ray_procs.items()):
            time.sleep(0.2)
        left = [(p, cmd[p][:80]) for p, st in ray_procs.items() if start_time(p) == st]
        assert not left, f"Ray processes still alive 10 s after SIGKILL: {left}"
        print(f"all {len(ray_procs)} Ray processes gone {time.time() - t0:.1f} s after SIGKILL")
        while time.time() < t0 + 60 and any(start_time(p) == st for p, st in watchdog.items()):
            time.sleep(0.2)  # the watchdog itself ends once it has closed the MLflow run
        assert not any(start_time(p) == st for p, st in watchdog.items())
    finally:
        _kill_tree(live_run.proc, tree)
    deadline = time.time() + 30
    while time.time() < deadline and _only_run(live_run.uri).info.status == "RUNNING":
        time.sleep(0.5)
    run = _only_run(live_run.uri)
    assert run.info.status == "KILLED" and run.data.tags.get("cnnray.end_reason") == "driver process died"


def test_case6_truncated_checkpoint_refused_naming_file_and_previous(live_run, capsys):
    _kill_tree(live_run.proc)
    status_before = _only_run(live_run.uri).info.status
    snap = json.loads((live_run.run_dir / "checkpoint_manager_snapshot.json").read_text())
    latest = snap["latest_checkpoint_result"]["checkpoint_dir_name"]
    state = live_run.run_dir / latest / "state.pt"
    state.write_bytes(state.read_bytes()[:4000])  # truncated, as by a full disk or a killed copy
    rc = _train_main(*TINY, *_store(live_run.tmp), "run.name=live", "train.resume=true", "train.epochs=40")
    err = capsys.readouterr().err
    assert rc == 2, err
    assert str(state) in err
    previous = [n for n in (c["checkpoint_dir_name"] for c in snap["checkpoint_results"]) if n != latest]
    if previous:  # the run kept more than one checkpoint: the message says how to continue from it
        assert f"train.resume_from={previous[-1]}" in err
    assert _only_run(live_run.uri).info.status == status_before  # a refused resume rewrites nothing


@pytest.mark.slow
def test_case6_failed_resume_of_a_finished_run_keeps_it_finished(tmp_path, capsys):
    from cnnray.config import load_config
    from cnnray.run.checkpoints import INDEX_FILE, read_index
    from cnnray.run.training import run_training

    # The local runner (the default on one machine; Ray Train's resume is in test_integration_train.py):
    # both write the same checkpoints and run the same resume checks.
    base = [*TINY, "scaling.num_workers=1", "scaling.runner=local", *_store(tmp_path), "run.name=done",
            "registry.enabled=false"]
    first = run_training(load_config(overrides=[*base, "train.epochs=2"]), on_line=lambda s: None)
    assert first["status"] == "FINISHED", first
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = Path(first["run_dir"])
    names = read_index((run_dir / INDEX_FILE).read_text())[0]
    assert len(names) == 2
    # Nothing more to train: refused, status untouched.
    assert _train_main(*base, "train.epochs=2", "train.resume=true") == 2
    assert "FINISHED all its 2 epochs" in capsys.readouterr().err
    # Corrupt the latest: refused naming the file and the previous checkpoint; the run stays FINISHED.
    (run_dir / names[-1] / "state.pt").write_bytes(b"not a checkpoint")
    assert _train_main(*base, "train.epochs=3", "train.resume=true") == 2
    err = capsys.readouterr().err
    assert f"{names[-1]}/state.pt" in err and f"train.resume_from={names[0]}" in err
    assert _only_run(uri).info.status == "FINISHED"
    # Continue from the previous checkpoint for one more epoch: trained, FINISHED, and tagged as such.
    more = run_training(load_config(overrides=[*base, "train.epochs=3", "train.resume=true",
                                               f"train.resume_from={names[0]}"]), on_line=lambda s: None)
    assert more["status"] == "FINISHED" and more["epochs_run"] == 3, more
    run = _only_run(uri)
    assert run.info.status == "FINISHED"
    assert run.data.tags["cnnray.resumed_after_finish"] == "training 1 -> 3 epochs"
    assert run.data.tags["cnnray.resumed_from"].startswith(names[0])


def test_tune_search_name_in_use_is_refused(tmp_path, capsys):
    from cnnray.run.claim import RunClaim

    with RunClaim(str(tmp_path / "runs" / "srch"), what="search").acquire(new=True):
        assert _tune_main(*_store(tmp_path), "run.name=srch") == 2
        assert "search is in use by another cnnray process" in capsys.readouterr().err
        assert _tune_main(*_store(tmp_path), "--resume", "srch") == 2
        assert f"pid {os.getpid()}" in capsys.readouterr().err


def test_case8_local_cluster_keeps_token_authentication(ray_local):
    """A client with the cluster's token connects; one with a wrong token is refused."""
    addr = ray_local.get_runtime_context().gcs_address
    assert addr.startswith("127.0.0.1:")
    code = "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); print('NODES', len(ray.nodes()))"
    # A client of a loopback-only cluster must look for its node on 127.0.0.1 too (cnnray.ray_compat).
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    good = subprocess.run([sys.executable, "-c", code, addr], capture_output=True, text=True, timeout=120, env=env)
    assert good.returncode == 0 and "NODES 1" in good.stdout, good.stderr[-2000:]
    bad = subprocess.run([sys.executable, "-c", code, addr], capture_output=True, text=True, timeout=120,
                         env={**env, "RAY_AUTH_TOKEN": "0" * 32})
    assert bad.returncode != 0 and "NODES" not in bad.stdout


def test_tune_state_written_atomically_and_a_corrupt_one_refused(tmp_path, capsys):
    from cnnray.config import load_config
    from cnnray.tune.plan import STATE_FILE, load_search_state, save_search_state, search_identity
    from cnnray.tune.space import load_space

    cfg = load_config(overrides=[*_store(tmp_path), "run.name=srch"])
    ident = search_identity(cfg)
    space = load_space("default")
    save_search_state(ident, cfg, space)
    folder = Path(ident.path)
    assert [p.name for p in folder.iterdir()] == [STATE_FILE]  # no temporary file left beside it
    tree, loaded = load_search_state(search_identity(cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"resume": True})})))
    assert tree["run"]["name"] == "srch" and set(loaded.params) == set(space.params)
    state = folder / STATE_FILE
    state.write_bytes(state.read_bytes()[: len(state.read_bytes()) // 2])  # cut off mid-write
    assert _tune_main(*_store(tmp_path), "--resume", "srch") == 2
    err = capsys.readouterr().err
    assert f"{STATE_FILE} is corrupt" in err and "srch" in err


def test_ray_internals_only_through_the_compat_module():
    """Every use of a Ray internal goes through cnnray/ray_compat.py, which checks the Ray version."""
    import re

    from cnnray import ray_compat

    offenders = []
    for path in (REPO / "cnnray").rglob("*.py"):
        if path.name == "ray_compat.py":
            continue
        text = path.read_text()
        code = r"^\s*(from|import)\s+ray\.[\w.]*(_internal|_private)|^\s*from\s+ray[\w.]*\s+import\s+_"
        if re.search(code, text, re.M) or re.search(r"\._experiment_analysis|__mixins__\s*=", text):
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders, offenders
    assert ray_compat.is_written_for()  # pyproject pins the Ray minor these internals were read from
