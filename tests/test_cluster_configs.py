"""The shipped cluster configs (`cluster/`): they parse, core Kubernetes objects validate against their schemas
(kubernetes-validate, offline), and the Ray CRD fields cnnray relies on say what cnnray needs."""

from __future__ import annotations

import re
import shlex
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
K8S_VERSION = "1.33"
YAMLS = sorted(CLUSTER.rglob("*.yaml"))
KUBERAY = sorted((CLUSTER / "kuberay").glob("*.yaml"))


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _all_k8s() -> list[tuple[str, dict]]:
    return [(p.name, d) for p in KUBERAY for d in _docs(p)]


def _of_kind(*kinds: str) -> list[dict]:
    return [d for _, d in _all_k8s() if d["kind"] in kinds]


def _ray_cluster_specs() -> list[tuple[str, dict]]:
    out = [(d["metadata"]["name"], d["spec"]) for d in _of_kind("RayCluster")]
    out += [(d["metadata"]["name"], d["spec"]["rayClusterSpec"]) for d in _of_kind("RayJob")]
    return out


def _templates(spec: dict) -> list[tuple[str, dict]]:
    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    return [(name, g["template"]) for name, g in groups]


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_every_yaml_parses_and_the_expected_files_exist():
    assert len(YAMLS) >= 7
    for path in YAMLS:
        assert _docs(path), path
    kinds = {d["kind"] for _, d in _all_k8s()}
    assert {"RayCluster", "RayJob", "Deployment", "Service", "Secret", "Namespace", "NetworkPolicy"} <= kinds
    jobs = {d["metadata"]["name"] for d in _of_kind("RayJob")}
    assert {"cnnray-train", "cnnray-tune"} <= jobs


@pytest.mark.parametrize("name, doc", [pytest.param(n, d, id=f"{n}:{d['kind']}:{d['metadata']['name']}")
                                       for n, d in _all_k8s() if not d["apiVersion"].startswith("ray.io/")])
def test_core_objects_validate_against_kubernetes_schemas(name, doc):
    import kubernetes_validate

    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_ray_pod_templates_validate_as_core_pod_templates():
    import kubernetes_validate

    templates = [t for _, spec in _ray_cluster_specs() for _, t in _templates(spec)]
    templates += [d["spec"]["submitterPodTemplate"] for d in _of_kind("RayJob")]
    assert len(templates) >= 7
    for t in templates:
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": t},
                                     K8S_VERSION, strict=True)


def test_a_schema_violation_is_caught():
    """The validator really checks: a Deployment with a string replica count is refused."""
    import kubernetes_validate

    dep = _of_kind("Deployment")[0]
    bad = {**dep, "spec": {**dep["spec"], "replicas": "one"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_ray_version_everywhere_is_the_one_pyproject_pins_and_installed():
    from packaging.requirements import Requirement

    ray_req = next(Requirement(r) for r in _project()["dependencies"] if r.startswith("ray["))
    installed = version("ray")
    assert installed in ray_req.specifier
    for name, spec in _ray_cluster_specs():
        assert spec["rayVersion"] == installed, name
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert re.search(r"^ARG RAY_VERSION=(\S+)$", dockerfile, re.M).group(1) == installed
    assert "rayproject/ray:${RAY_VERSION}" in dockerfile and '"ray[default,train,tune,data]==${RAY_VERSION}"' in dockerfile


def test_images_are_the_ones_the_dockerfile_builds():
    tag = _project()["version"]
    allowed = {f"REGISTRY/cnnray:{tag}-cpu", f"REGISTRY/cnnray:{tag}-gpu"}
    images = set(re.findall(r"image: (\S+)", "\n".join(p.read_text() for p in YAMLS)))
    images |= set(re.findall(r"_image: (\S+)", (CLUSTER / "ray-cluster.yaml").read_text()))
    assert images and images <= allowed, images
    readme = (CLUSTER / "README.md").read_text()
    assert "docker build -f cluster/Dockerfile" in readme


@pytest.mark.parametrize("job", ["cnnray-train", "cnnray-tune"])
def test_rayjob_entrypoints_are_workflows_whose_arguments_parse(job):
    from cnnray.commands import COMMANDS
    from cnnray.config import load_config
    from cnnray.jobs.validate import _parse

    doc = next(d for d in _of_kind("RayJob") if d["metadata"]["name"] == job)
    argv = shlex.split(doc["spec"]["entrypoint"])
    assert argv[:2] == ["python", "-m"] and argv[2] in COMMANDS.values()
    workflow = next(k for k, v in COMMANDS.items() if v == argv[2])
    parsed = _parse(workflow, argv[3:])
    cfg = load_config(None, parsed.overrides)  # every key=value is a valid config key and value
    assert cfg.tracking.uri == "http://mlflow.cnnray.svc:5000"
    for key in (cfg.data.path, cfg.scaling.storage_path):
        assert key.startswith("s3://")  # shared storage: every pod reads and writes the same place
    if workflow == "tune":  # space and settings accepted as `cnnray tune` would (without touching storage)
        from cnnray.tune.plan import check_settings, trial_base_config
        from cnnray.tune.space import check_space, load_space

        space = load_space(parsed.space or cfg.tune.space)
        check_settings(cfg, space)
        check_space(space, trial_base_config(cfg))


def _secrets() -> dict[str, set[str]]:
    return {d["metadata"]["name"]: set(d.get("stringData", {}) | d.get("data", {})) for d in _of_kind("Secret")}


def test_token_auth_on_from_a_secret_and_dashboard_reachable_only_inside_the_cluster():
    secrets = _secrets()
    for name, spec in _ray_cluster_specs():
        assert spec["authOptions"]["mode"] == "token", name
        assert "auth_token" in secrets[spec["authOptions"]["secretName"]], name
        head = spec["headGroupSpec"]
        # The submitter pod and in-cluster clients reach the job API through the head Service...
        assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0", name
        # ...which is never published outside the cluster.
        assert head.get("serviceType", "ClusterIP") == "ClusterIP", name
        assert head["rayStartParams"]["num-cpus"] == "0", name
    for job in _of_kind("RayJob"):
        env = {e["name"]: e for c in job["spec"]["submitterPodTemplate"]["spec"]["containers"] for e in c["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert ref["key"] in secrets[ref["name"]]
    for svc in _of_kind("Service"):
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert not _of_kind("Ingress")
    policies = {p["metadata"]["name"]: p for p in _of_kind("NetworkPolicy")}
    assert policies["cnnray-ray-head"]["spec"]["podSelector"]["matchLabels"] == {"ray.io/node-type": "head"}


def test_every_secret_reference_resolves_and_env_names_are_valid():
    secrets = _secrets()
    text_refs = 0
    for _, doc in _all_k8s():
        for container in _containers(doc):
            for e in container.get("env", []):
                assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", e["name"]), e["name"]
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]], ref
                    text_refs += 1
            for src in container.get("envFrom", []):
                assert src["secretRef"]["name"] in secrets
    assert text_refs >= 4


def _containers(doc: dict) -> list[dict]:
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "containers" in node and isinstance(node["containers"], list):
                found.extend(node["containers"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    return found


def test_mlflow_server_uses_postgres_and_object_store_and_ray_pods_point_at_it():
    dep = _of_kind("Deployment")[0]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    args = c["args"]
    assert args[args.index("--backend-store-uri") + 1] == "$(MLFLOW_BACKEND_STORE_URI)"
    secret = next(d for d in _of_kind("Secret") if d["metadata"]["name"] == "cnnray-mlflow")["stringData"]
    assert secret["backend_store_uri"].startswith("postgresql://")
    assert secret["artifacts_destination"].startswith("s3://")
    svc = _of_kind("Service")[0]
    uri = f"http://{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc:{svc['spec']['ports'][0]['port']}"
    hosts = args[args.index("--allowed-hosts") + 1].split(",")
    assert f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc:*" in hosts
    for name, spec in _ray_cluster_specs():
        for group, t in _templates(spec):
            env = {e["name"]: e.get("value") for c in t["spec"]["containers"] for e in c.get("env", [])}
            assert env["MLFLOW_TRACKING_URI"] == uri, (name, group)


def test_gpu_worker_groups_autoscale_and_ask_for_gpus():
    for name, spec in _ray_cluster_specs():
        assert spec["enableInTreeAutoscaling"] is True, name
        (gpu,) = [g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu"]
        assert gpu["minReplicas"] == 0 < gpu["maxReplicas"], name
        limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == gpu["rayStartParams"]["num-gpus"] == "1", name
        assert gpu["template"]["spec"]["containers"][0]["image"].endswith("-gpu"), name


def test_cluster_launcher_config_keeps_the_job_api_private_and_token_auth_on():
    cfg = _docs(CLUSTER / "ray-cluster.yaml")[0]
    head_cmd = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_cmd
    assert "--env RAY_AUTH_MODE=token" in cfg["docker"]["run_options"]
    assert cfg["available_node_types"][cfg["head_node_type"]]["resources"] == {"CPU": 0}
