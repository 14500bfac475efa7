"""The compiled pipelines follow Kubeflow 1.10's conventions and stay within what KFP 2.4/2.5 backends read.

Every task gets what the code in it relies on (segflow.pipelines.conventions): the image, MinIO's
address, the name of the Secret with its keys and those keys, and its own namespace, pod name and
uid through the downward API. The platform spec is checked against the fields the KFP 2.4.0
driver's kubernetes_platform proto declares (its jsonpb parser refuses any other), and compile
options change what the pods get, through the CLI a user runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from segflow.components.images import SEGFLOW
from segflow.errors import ConfigError
from segflow.pipelines.compile import PIPELINES
from segflow.pipelines.conventions import ClusterConventions

SEGFLOW_CLI = str(Path(sys.executable).parent / "segflow")
DOWNWARD = {"SEGFLOW_NAMESPACE": "metadata.namespace", "SEGFLOW_POD_NAME": "metadata.name",
            "SEGFLOW_POD_UID": "metadata.uid"}
# kubernetes_platform/proto/kubernetes_executor_config.proto at d911c8b73b49, the version KFP 2.4.0's go.mod
# pins: the KubernetesExecutorConfig fields the pipelines may use, and every field of the messages they use.
KFP_2_4_FIELDS = {"secretAsEnv": {"secretName", "keyToEnv"}, "fieldPathAsEnv": {"name", "fieldPath"},
                  "tolerations": {"key", "operator", "value", "effect", "tolerationSeconds"}}
GPU_STEPS = {"train_and_serve": {"exec-tune", "exec-distill"}, "search": {"exec-tune", "exec-nas"}}


def _compiled(path: Path) -> tuple[dict, dict]:
    """(the executors' container specs, their Kubernetes platform configs) of a compiled pipeline."""
    spec, platform = yaml.safe_load_all(path.read_text())
    return ({name: e["container"] for name, e in spec["deploymentSpec"]["executors"].items()},
            platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"])


@pytest.mark.parametrize("name", ["train_and_serve", "search"])
def test_every_task_gets_kubeflows_minio_its_own_identity_and_the_image(name):
    containers, platform = _compiled(PIPELINES / f"{name}.yaml")
    assert set(platform) == set(containers), "a task without the cluster's settings"
    for executor, container in containers.items():
        assert container["image"] == SEGFLOW
        assert {e["name"]: e["value"] for e in container["env"]} == {
            "SEGFLOW_IMAGE": SEGFLOW, "SEGFLOW_S3_ENDPOINT": "http://minio-service.kubeflow:9000",
            "SEGFLOW_S3_SECRET": "mlpipeline-minio-artifact"}, executor
        config = platform[executor]
        assert {f["name"]: f["fieldPath"] for f in config["fieldPathAsEnv"]} == DOWNWARD, executor
        (minio,) = config["secretAsEnv"]
        assert minio["secretName"] == "mlpipeline-minio-artifact"
        assert {m["secretKey"]: m["envVar"] for m in minio["keyToEnv"]} == {
            "accesskey": "AWS_ACCESS_KEY_ID", "secretkey": "AWS_SECRET_ACCESS_KEY"}


@pytest.mark.parametrize("name", ["train_and_serve", "search"])
def test_the_platform_spec_holds_only_what_a_kfp_2_4_driver_reads(name):
    """No `optional` (2.4/2.5 drop it: an absent Secret then fails the pod), no secretNameParameter
    (unknown to 2.4.0's proto, which its parser refuses), no node selector."""
    for executor, config in _compiled(PIPELINES / f"{name}.yaml")[1].items():
        assert set(config) <= set(KFP_2_4_FIELDS), (executor, set(config) - set(KFP_2_4_FIELDS))
        for field, entries in config.items():
            for entry in entries:
                assert set(entry) <= KFP_2_4_FIELDS[field], (executor, field, entry)


@pytest.mark.parametrize("name", ["train_and_serve", "search"])
def test_only_the_steps_that_train_in_their_own_pod_request_a_gpu(name):
    containers, platform = _compiled(PIPELINES / f"{name}.yaml")
    on_gpu = {e for e, c in containers.items() if "accelerator" in c.get("resources", {})}
    assert on_gpu == GPU_STEPS[name]
    for executor in on_gpu:
        assert containers[executor]["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert containers[executor]["resources"]["accelerator"]["resourceCount"] == "1"
        assert platform[executor]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                                      "effect": "NoSchedule"}]


def test_the_deploy_step_mounts_no_secret_the_user_did_not_name():
    platform = _compiled(PIPELINES / "train_and_serve.yaml")[1]
    assert [s["secretName"] for s in platform["exec-deploy"]["secretAsEnv"]] == ["mlpipeline-minio-artifact"]


def test_compile_options_change_what_the_pods_get(tmp_path):
    """`segflow pipeline compile` as a user runs it, for a cluster with its own MinIO, image and no GPUs."""
    image = "registry.example.com/ml/segflow:dev"
    done = subprocess.run([SEGFLOW_CLI, "pipeline", "compile", "--out-dir", str(tmp_path),
                           "--s3-endpoint", "https://s3.example.com:9443", "--minio-secret", "team-minio",
                           "--image", image, "--no-gpu", "--torchserve-secret", "segflow-torchserve",
                           "--ray", "workers=3,worker_memory=16Gi"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for name in ("train_and_serve", "search"):
        containers, platform = _compiled(tmp_path / f"{name}.yaml")
        for executor, container in containers.items():
            assert container["image"] == image
            env = {e["name"]: e["value"] for e in container["env"]}
            # the train step's RayJob: 3 workers of 16Gi, and no GPUs (--no-gpu)
            ray = {"SEGFLOW_RAY_WORKERS": "3", "SEGFLOW_RAY_WORKER_MEMORY": "16Gi", "SEGFLOW_RAY_WORKER_GPUS": "0"}
            assert env == {"SEGFLOW_IMAGE": image, "SEGFLOW_S3_ENDPOINT": "https://s3.example.com:9443",
                           "SEGFLOW_S3_SECRET": "team-minio"} | (ray if executor == "exec-train" else {})
            assert "accelerator" not in container.get("resources", {}) and "tolerations" not in platform[executor]
            assert platform[executor]["secretAsEnv"][0]["secretName"] == "team-minio"
    torchserve = _compiled(tmp_path / "train_and_serve.yaml")[1]["exec-deploy"]["secretAsEnv"][1]
    assert torchserve == {"secretName": "segflow-torchserve", "keyToEnv": [
        {"secretKey": "management-url", "envVar": "SEGFLOW_TORCHSERVE_MANAGEMENT_URL"},
        {"secretKey": "management-key", "envVar": "SEGFLOW_TORCHSERVE_MANAGEMENT_KEY"}]}


def test_segflow_image_in_the_environment_names_the_image_as_docs_deploy_says(tmp_path):
    image = "registry.example.com/ml/segflow:pushed"
    done = subprocess.run([SEGFLOW_CLI, "pipeline", "compile", "--out-dir", str(tmp_path)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "SEGFLOW_IMAGE": image})
    assert done.returncode == 0, done.stderr
    for container in _compiled(tmp_path / "train_and_serve.yaml")[0].values():
        assert container["image"] == image
        assert {"name": "SEGFLOW_IMAGE", "value": image} in container["env"]


def test_a_bad_compile_option_is_refused_by_the_cli_with_the_fix(tmp_path):
    done = subprocess.run([SEGFLOW_CLI, "pipeline", "compile", "--out-dir", str(tmp_path),
                           "--s3-endpoint", "minio-service.kubeflow:9000"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "'minio-service.kubeflow:9000' is not a URL" in done.stderr and "http(s)://HOST[:PORT]" in done.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("settings", "message"), [
    ({"s3_endpoint": "http://minio:9000/bucket"}, "--s3-endpoint as http"),
    ({"minio_secret": "Team_MinIO"}, "--minio-secret 'Team_MinIO' is not a Kubernetes Secret name"),
    ({"minio_secret": ""}, "--minio-secret is empty.*mlpipeline-minio-artifact"),
    ({"torchserve_secret": "-ts"}, "--torchserve-secret '-ts' is not a Kubernetes Secret name"),
    ({"image": "segflow :dev"}, "--image 'segflow :dev' is not an image reference"),
    ({"ray": "workers=2,gpus=1"}, "--ray: unknown Ray size setting 'gpus'.*worker_gpus"),
    ({"ray": "workers=two"}, "--ray: Ray size setting workers='two' is not an integer"),
    ({"ray": "worker_memory=24GB"}, "--ray: .*worker_memory='24GB' is not a Kubernetes memory quantity"),
    ({"ray": "workers=0"}, "--ray: .*workers='0' must be at least 1"),
    ({"ray": "workers"}, "--ray: Ray size 'workers' is not KEY=VALUE"),
])
def test_conventions_name_the_bad_setting(settings, message):
    with pytest.raises(ConfigError, match=message):
        ClusterConventions(**settings)
