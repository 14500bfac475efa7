"""k8s/ RayJob manifests validate strictly against the KubeRay CRD (unknown fields rejected)."""

import copy
from pathlib import Path

import yaml
from support.crd import validate

K8S = Path(__file__).resolve().parents[2] / "k8s"


def rayjobs():
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())
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


def test_the_strict_check_catches_a_typo():
    job = copy.deepcopy(rayjobs()[0])
    job["spec"]["shutdownAfterJobFinish"] = job["spec"].pop("shutdownAfterJobFinishes")
    errors = validate(job)
    assert any("shutdownAfterJobFinish" in e and "Additional properties" in e for e in errors)
