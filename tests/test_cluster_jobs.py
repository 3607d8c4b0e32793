"""`cnnray cluster` / `cnnray submit` / `cnnray jobs` on a real 3-node Ray cluster on 127.0.0.1.

One cluster per module (`cnnray cluster up --nodes 3`, 1 CPU per node, so a 2-worker run must use two
nodes), always torn down. Everything runs as `cnnray` subprocesses: this process never calls
ray.init (the session's `ray_local` cluster may be alive in it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from cnnray.cluster import procs

# Synthetic 8x8 images, 4 classes x 40: epochs of a fraction of a second on a busy 2-core machine.
TINY = ["data.source=synthetic", "data.num_classes=4", "data.samples_per_class=40", "data.image_size=8",
        "model.width=0.125", "train.batch_size=16", "train.ema=false"]
_SCRUB = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH",
          "MLFLOW_TRACKING_URI")


def _env(state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(CNNRAY_CLUSTER_DIR=str(state_dir), PYTHONUNBUFFERED="1")
    return env


def _cnnray(args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnray.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def _state(state_dir: Path) -> dict:
    return json.loads((state_dir / "cluster.json").read_text())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A 3-node cluster started by `cnnray cluster up`; stopped by `cnnray cluster down`, then by pid if need be."""
    root = tmp_path_factory.mktemp("cluster")
    state_dir, work = root / "state", root / "work"
    work.mkdir()
    env = _env(state_dir)
    p = _cnnray(["cluster", "up", "--nodes", "3", "--cpus-per-node", "1", "--json"], env, work, timeout=240)
    try:
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        info = _last_json(p.stdout)
        yield {"env": env, "work": work, "state_dir": state_dir, "info": info, "up_stdout": p.stdout}
    finally:
        leaders = [n["pid"] for n in _state(state_dir)["nodes"]] if (state_dir / "cluster.json").exists() else []
        down = _cnnray(["cluster", "down"], env, work, timeout=120)
        # Whatever `down` missed (it should miss nothing: asserted in test_down_stops_everything) goes by pid.
        if leaders:
            procs.stop_sessions(leaders, grace_s=2)
        assert down.returncode == 0 or not leaders, down.stderr[-2000:]


def _listeners(pids: set[int]) -> list[tuple[str, int]]:
    """(local address, pid) of every listening TCP/UDP socket of these processes."""
    out = subprocess.run(["ss", "-ltnupH"], capture_output=True, text=True, timeout=20).stdout
    found = []
    for line in out.splitlines():
        for pid in map(int, re.findall(r"pid=(\d+)", line)):
            if pid in pids:
                found.append((line.split()[4], pid))
    return found


def test_up_prints_how_to_connect_and_refuses_a_second_cluster(cluster):
    info, env, work = cluster["info"], cluster["env"], cluster["work"]
    assert info["address"].startswith("127.0.0.1:") and info["dashboard"].startswith("http://127.0.0.1:")
    assert "RAY_AUTH_TOKEN_PATH" in cluster["up_stdout"] and "token authentication on" in cluster["up_stdout"]
    assert Path(info["token_file"]).stat().st_mode & 0o077 == 0  # owner-only
    again = _cnnray(["cluster", "up", "--nodes", "2"], env, work, timeout=60)
    assert again.returncode == 2 and "already running" in again.stderr
    st = _cnnray(["cluster", "status", "--json"], env, work, timeout=60)
    assert st.returncode == 0, st.stderr
    status = _last_json(st.stdout)
    assert status["alive_nodes"] == 3 and status["resources"]["CPU"] == 3
    assert {n["ip"] for n in status["nodes"]} == {"127.0.0.1"}


def test_the_printed_client_environment_lets_a_driver_join(cluster):
    """What `up` prints is enough for a plain Ray driver (a subprocess: never ray.init here)."""
    env = {**cluster["env"], **cluster["info"]["client_env"]}
    code = "import ray; ray.init(); print('NODES', len([n for n in ray.nodes() if n['Alive']]))"
    p = subprocess.run([sys.executable, "-c", code], env=env, cwd=cluster["work"], capture_output=True, text=True,
                       timeout=120)
    assert "NODES 3" in p.stdout, p.stdout[-2000:] + p.stderr[-2000:]


def test_every_cluster_process_listens_on_loopback_only(cluster):
    if shutil.which("ss") is None:
        pytest.skip("ss not installed")
    pids = {pid for n in _state(cluster["state_dir"])["nodes"] for pid in procs.session_members(n["pid"])}
    listeners = _listeners(pids)
    assert len({pid for _, pid in listeners}) >= 6  # GCS, raylets, dashboard, agents: really inspected
    bad = [(addr, pid) for addr, pid in listeners if not re.match(r"^(127\.0\.0\.1|\[::ffff:127\.0\.0\.1\]):", addr)]
    assert not bad, bad


def test_job_api_refuses_calls_without_the_token(cluster):
    url = cluster["info"]["dashboard"]
    assert requests.get(f"{url}/api/jobs/", timeout=10).status_code == 401
    assert requests.get(f"{url}/api/jobs/", headers={"Authorization": "Bearer nope"}, timeout=10).status_code == 403
    token = Path(cluster["info"]["token_file"]).read_text().strip()
    assert requests.get(f"{url}/api/jobs/", headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
    # cnnray with a wrong token in the environment, pointed at the cluster by URL: refused, exit 2, no traceback.
    env = {**cluster["env"], "RAY_AUTH_TOKEN": "nope", "CNNRAY_CLUSTER_DIR": str(cluster["work"] / "none")}
    p = _cnnray(["jobs", "list", "--address", url], env, cluster["work"], timeout=60)
    assert p.returncode == 2 and "403" in p.stderr and "Traceback" not in p.stderr


BAD_INPUT = [
    (["nosuchflow"], "unknown workflow 'nosuchflow'"),
    (["cluster", "up"], "unknown workflow 'cluster'"),
    (["train", "train.epoch=3"], "unknown config key 'train.epoch'"),
    (["train", "data.source=parquet"], "data.path"),
    (["tune", "tune.scheduler=nope"], "tune.scheduler"),
    (["train", "--config", "missing.yaml"], "missing.yaml"),
]


def test_bad_input_is_refused_before_submission(cluster):
    # Every case in one test: the job list is read once before and once after (each read is a subprocess).
    before = _cnnray(["jobs", "list", "--json"], cluster["env"], cluster["work"], timeout=60)
    for args, needle in BAD_INPUT:
        p = _cnnray(["submit", *args], cluster["env"], cluster["work"], timeout=120)
        assert p.returncode == 2, (args, p.stdout[-2000:] + p.stderr[-2000:])
        assert needle in p.stderr, (args, p.stderr[-2000:])
    after = _cnnray(["jobs", "list", "--json"], cluster["env"], cluster["work"], timeout=60)
    assert len(_last_json(after.stdout)["jobs"]) == len(_last_json(before.stdout)["jobs"])  # nothing submitted


def test_unreachable_address_fails_fast_with_exit_2(cluster):
    port = procs.free_port()
    t0 = time.time()
    p = _cnnray(["submit", "train", "--address", f"http://127.0.0.1:{port}"], cluster["env"], cluster["work"], timeout=60)
    assert p.returncode == 2 and "cannot reach the Ray job API" in p.stderr
    # A silent (non-routable) host: the connect timeout, not the OS's minutes-long TCP retry (or, behind an
    # HTTP proxy, the proxy's answer, which is no Ray job API either).
    p2 = _cnnray(["jobs", "list", "--address", "http://10.255.255.1:8265"], cluster["env"], cluster["work"], timeout=60)
    assert p2.returncode == 2 and ("cannot reach" in p2.stderr or "not a Ray job API" in p2.stderr), p2.stderr
    assert time.time() - t0 < 45


def _mlflow(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_failed_job_exits_1_with_status_and_log_tail(cluster, mlflow_server):
    env, work = cluster["env"], cluster["work"]
    # A one-trial search whose trial (in its own actor: no Train run to start) meets a NaN loss at once.
    p = _cnnray(["submit", "tune", *TINY, "tune.num_samples=1", "tune.max_epochs=1", "tune.scheduler=fifo",
                 "--env", "CNNRAY_TEST_NAN_AT_STEP=1", f"tracking.uri={mlflow_server}",
                 f"tracking.experiment=cl-nan-{os.getpid()}", "registry.enabled=false",
                 f"scaling.storage_path={work / 'nan'}"], env, work, timeout=600)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    assert "FAILED" in p.stderr and "last 40 log lines" in p.stderr and "non-finite" in p.stderr


@pytest.fixture
def sigint_delivered():
    """A pytest started in the background (`cmd &`) inherits SIGINT as ignored, and so would the command under
    test: Python then leaves Ctrl-C ignored, as it should. Give the children the default disposition."""
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a handler: exec'd children get SIG_DFL
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
@pytest.mark.usefixtures("sigint_delivered")
def test_ctrl_c_without_a_terminal_stops_the_job(cluster):
    env, work = cluster["env"], cluster["work"]
    proc = subprocess.Popen([sys.executable, "-m", "cnnray.cli", "submit", "train", *TINY, "train.epochs=50",
                             "scaling.num_workers=1", "tracking.enabled=false", "registry.enabled=false",
                             f"scaling.storage_path={work / 'intr'}", "--json"], env=env, cwd=work,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, job_id = time.time() + 120, None
        while time.time() < deadline and job_id is None and proc.poll() is None:
            jobs = _last_json(_cnnray(["jobs", "list", "--json"], env, work, timeout=60).stdout)["jobs"]
            running = [j for j in jobs if j["status"] == "RUNNING" and "epochs=50" in j["entrypoint"]]
            job_id = running[0]["job_id"] if running else None
            time.sleep(1)
        assert job_id, "the job never ran"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err[-3000:]
        assert f"stopping job {job_id}" in err and _last_json(out)["status"] == "STOPPED"
        final = _last_json(_cnnray(["jobs", "status", job_id, "--json"], env, work, timeout=60).stdout)
        assert final["status"] == "STOPPED"
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
@pytest.mark.usefixtures("sigint_delivered")
def test_ctrl_c_at_a_terminal_asks_and_detach_leaves_the_job_running(cluster):
    env, work = cluster["env"], cluster["work"]
    master, slave = os.openpty()  # stdin is a terminal: the command asks
    proc = subprocess.Popen([sys.executable, "-m", "cnnray.cli", "submit", "train", *TINY, "train.epochs=50",
                             "scaling.num_workers=1", "tracking.enabled=false", "registry.enabled=false",
                             f"scaling.storage_path={work / 'detach'}", "--json"], env=env, cwd=work,
                            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job_id = None
    try:
        deadline = time.time() + 120
        while time.time() < deadline and job_id is None and proc.poll() is None:
            jobs = _last_json(_cnnray(["jobs", "list", "--json"], env, work, timeout=60).stdout)["jobs"]
            running = [j for j in jobs if j["status"] == "RUNNING" and "/detach" in j["entrypoint"]]
            job_id = running[0]["job_id"] if running else None
            time.sleep(1)
        assert job_id, "the job never ran"
        proc.send_signal(signal.SIGINT)
        os.write(master, b"d\n")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:]
        assert "[s]top job" in err and "detached" in err and _last_json(out)["status"] == "DETACHED"
        assert _last_json(_cnnray(["jobs", "status", job_id, "--json"], env, work, timeout=60).stdout)["status"] == "RUNNING"
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
        os.close(slave)
        if job_id:
            stopped = _cnnray(["jobs", "stop", job_id, "--json"], env, work, timeout=90)
            assert _last_json(stopped.stdout)["status"] == "STOPPED"


def _epochs(uri: str, exp: str, name: str) -> list[int]:
    from cnnray.tracking import find_run_by_name

    run_id = find_run_by_name(uri, exp, name)
    return sorted(m.step for m in _mlflow(uri).get_metric_history(run_id, "val_acc")) if run_id else []


@pytest.mark.slow
def test_submitted_ddp_train_spans_two_nodes_survives_a_lost_node_and_registers(cluster, mlflow_server):
    """One submitted 2-worker training checks both the multi-node placement and the lost-node recovery:
    its DDP ranks run on two nodes; SIGKILL every process of one worker node hosting a rank; the job
    finishes on the other nodes from the last checkpoint, logs every epoch once and registers the model."""
    env, work = cluster["env"], cluster["work"]
    exp = model = f"cl-train-{os.getpid()}"
    p = _cnnray(["submit", "train", *TINY, "train.epochs=5", "scaling.num_workers=2", "scaling.max_failures=1",
                 f"tracking.uri={mlflow_server}", f"tracking.experiment={exp}", f"registry.name={model}",
                 f"scaling.storage_path={work / 'ckpt'}", "run.name=ddp", "--no-wait", "--json"], env, work, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    job_id = _last_json(p.stdout)["job_id"]
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not _epochs(mlflow_server, exp, "ddp"):
            time.sleep(1)
        assert _epochs(mlflow_server, exp, "ddp"), "no epoch was logged in time"
        status = _last_json(_cnnray(["jobs", "status", job_id, "--json"], env, work, timeout=60).stdout)
        assert len(status["train_worker_nodes"]) == 2, status["placement"]  # two DDP ranks, two different nodes
        nodes = _state(cluster["state_dir"])["nodes"]
        victim = next(i for i, n in enumerate(nodes) if n["role"] == "worker"
                      and _node_id(n["pid"]) in status["train_worker_nodes"])
        members = procs.session_members(nodes[victim]["pid"])
        procs.signal_all(members, signal.SIGKILL)  # the node is lost: raylet, agents, its DDP worker, at once
        logs = _cnnray(["jobs", "logs", job_id, "--follow"], env, work, timeout=480)
        assert logs.returncode == 0
        # The job's log is streamed (its progress lines; the last epoch's line was seen missing once after the
        # node loss, so any epoch of the 5 counts here; the final JSON result below is checked too).
        assert re.search(r"epoch +[1-5]/5 ", logs.stdout), logs.stdout[-3000:]
        final = _last_json(_cnnray(["jobs", "status", job_id, "--json"], env, work, timeout=60).stdout)
        assert final["status"] == "SUCCEEDED", logs.stdout[-4000:]
        assert _epochs(mlflow_server, exp, "ddp") == [0, 1, 2, 3, 4]  # every epoch once, none lost or repeated
        result = json.loads([ln for ln in logs.stdout.splitlines() if ln.startswith("{")][-1])
        assert result["status"] == "FINISHED"
        workers = [a for a in final["placement"].values() if a.get("RayTrainWorker")]
        assert sum(a["RayTrainWorker"] for a in workers) >= 4  # the worker group was started a second time
        client = _mlflow(mlflow_server)
        run = client.get_run(result["run_id"])
        assert run.info.status == "FINISHED" and run.data.params["scaling.num_workers"] == "2"
        mv = client.get_model_version_by_alias(model, "challenger")
        assert mv.run_id == run.info.run_id
        assert any((work / "ckpt" / "ddp").glob("checkpoint_*"))  # checkpoints on storage every node reaches
    finally:
        _cnnray(["jobs", "stop", job_id], env, work, timeout=90)


def _node_id(leader: int) -> str | None:
    """The Ray node id of the node whose `ray start` is `leader` (from its raylet's command line)."""
    for pid in procs.session_members(leader):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"raylet"):
            for arg in cmd:
                if arg.startswith(b"--node_id="):
                    return arg.split(b"=", 1)[1].decode()
    return None


def _child_steps(uri: str, exp: str) -> dict[str, list[int]]:
    """{trial id: sorted val_acc steps} of every trial child run in the experiment."""
    client = _mlflow(uri)
    e = client.get_experiment_by_name(exp)
    if e is None:
        return {}
    runs = client.search_runs([e.experiment_id], filter_string="tags.`cnnray.trial_id` != ''")
    return {r.data.tags["cnnray.trial_id"]: sorted(m.step for m in client.get_metric_history(r.info.run_id, "val_acc"))
            for r in runs}


@pytest.mark.slow
def test_submitted_tune_spreads_trials_over_nodes_and_survives_a_lost_node(cluster, mlflow_server):
    """After the DDP test one worker node is gone: the head and one worker remain (1 CPU each). Two concurrent
    1-CPU trials therefore run on two nodes; SIGKILL the worker node mid-search: its trial resumes from its
    last checkpoint on the head once the other trial ends, and the search records each trial once."""
    env, work = cluster["env"], cluster["work"]
    exp = f"cl-tune-{os.getpid()}"
    # ~1-3 s each here: time to see both trials placed, then lose a node while they train. 16, not 10: with
    # another test file running beside this one (pytest-xdist), the second trial's actor can start 20 s
    # after the first, which then finished all 10 epochs before the node was lost (seen once).
    epochs = 16
    p = _cnnray(["submit", "tune", *TINY, "data.samples_per_class=200", "data.image_size=16", "tune.num_samples=2",
                 "tune.max_concurrent_trials=2", f"tune.max_epochs={epochs}", "tune.trial_workers=1",
                 "tune.scheduler=fifo", "scaling.max_failures=1", f"tracking.uri={mlflow_server}",
                 f"tracking.experiment={exp}", "registry.enabled=false", "run.name=lost",
                 f"scaling.storage_path={work / 'tune'}", "--no-wait", "--json"], env, work, timeout=120)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-3000:]
    job_id = _last_json(p.stdout)["job_id"]
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (len(_child_steps(mlflow_server, exp)) == 2
                                               and all(_child_steps(mlflow_server, exp).values())):
            time.sleep(0.5)
        status = _last_json(_cnnray(["jobs", "status", job_id, "--json"], env, work, timeout=60).stdout)
        # Two concurrent 1-CPU trials, each trained in its own actor (no Train run), on two nodes.
        assert len(status["trial_actor_nodes"]) == 2 and not status["train_worker_nodes"], status["placement"]
        nodes = _state(cluster["state_dir"])["nodes"]
        victim = next(n for n in nodes if n["role"] == "worker" and _node_id(n["pid"]) in status["trial_actor_nodes"])
        before = _child_steps(mlflow_server, exp)
        procs.signal_all(procs.session_members(victim["pid"]), signal.SIGKILL)  # the node is lost, all at once
        t_kill = time.time()
        logs = _cnnray(["jobs", "logs", job_id, "--follow"], env, work, timeout=480)
        final = _last_json(_cnnray(["jobs", "status", job_id, "--json"], env, work, timeout=60).stdout)
        assert final["status"] == "SUCCEEDED", logs.stdout[-4000:]
        print(f"search went on {time.time() - t_kill:.0f}s after the node was lost; epochs before: {before}")
        assert max(map(len, before.values())) < epochs, "a trial ended before its node was lost: no test"
        result = json.loads([ln for ln in logs.stdout.splitlines() if ln.startswith("{")][-1])
        assert result["status"] == "FINISHED" and result["counts"]["finished"] == 2, result["counts"]
        assert sorted(r["trial_id"] for r in result["trials"]) == sorted(before)  # each trial once, none added
        assert all(r["epochs_run"] == epochs for r in result["trials"])
        # Every epoch of both trials reached MLflow (an epoch cut by the loss may be logged again on resume).
        assert {t: sorted(set(s)) for t, s in _child_steps(mlflow_server, exp).items()} == \
            {t: list(range(epochs)) for t in before}
        # The lost trial went on in another process (a new actor, or the finished trial's, reused) from its
        # checkpoint: its reports came from two processes, and it did not start over.
        pids = {t: [json.loads(ln)["pid"] for ln in (work / "tune" / "lost" / t / "result.json").read_text().splitlines()]
                for t in before}
        lost = [t for t, ps in pids.items() if len(set(ps)) == 2]
        assert len(lost) == 1, pids
        assert len(pids[lost[0]]) <= epochs + 1  # reports after the restart continue, not repeat, the epochs
    finally:
        _cnnray(["jobs", "stop", job_id], env, work, timeout=90)


def test_down_stops_everything_up_started(cluster):
    """Last in the module: `down` ends every process of every node (by session of the recorded pids)."""
    leaders = [n["pid"] for n in _state(cluster["state_dir"])["nodes"]]
    assert any(procs.session_members(pid) for pid in leaders)
    p = _cnnray(["cluster", "down"], cluster["env"], cluster["work"], timeout=120)
    assert p.returncode == 0, p.stderr
    assert not [pid for leader in leaders for pid in procs.session_members(leader)]
    assert not (cluster["state_dir"] / "cluster.json").exists()
    st = _cnnray(["cluster", "status"], cluster["env"], cluster["work"], timeout=60)
    assert st.returncode == 1 and "no cluster" in st.stdout
