"""The pipeline's train step on a real node: a KubeRay RayJob trains with DDP across 2 worker pods.

Real here: the node (tests/support/node.py), KubeRay's operator built from its Go module and
deployed from the manifests it ships (tests/support/kuberay.py), MinIO where Kubeflow keeps it
(minio-service.kubeflow:9000, Secret mlpipeline-minio-artifact in the profile namespace), the
segflow image `make images` builds, running the train component's code as the compiled pipeline
gives it (pipelines/train_and_serve.yaml: its command, and the env its Kubernetes platform spec
asks for), in a profile namespace, as the ServiceAccount Kubeflow runs steps as (default-editor),
with the RBAC k8s/ ships.

Stand-in, said here: no KFP backend runs on this machine (its driver and launcher are Go programs
from github.com/kubeflow/pipelines, which the Go module proxy here refuses). The test does what
KFP's driver would: it writes the step's executor input (the dataset artifact's minio:// URI, the
output artifacts' URIs) and creates the pod with the compiled pipeline's env; the pod then prints
the executor output the component wrote, which KFP's launcher would upload.

The pipeline is compiled as a user would for this cluster (`segflow pipeline compile --no-gpu --ray ...`):
a Ray cluster sized for a 2-core node (2 workers of 0.6 CPU, no GPU). GPUs are not exercised here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from segflow.components.rayjob import GROUP, PLURAL, VERSION, ClusterSettings, rayjob_manifest, submit_and_follow
from segflow.errors import PipelineError
from support import gobuild, node_images
from support.helm import helm_cli
from support.kfp_pods import OUTPUT_METADATA, artifact, deploy_step_pod, executor_output, step_pod
from support.kuberay import kubeflow_minio, kubeflow_rbac, kubeflow_secret, kuberay_operator
from support.serving import encode, noise, post_prediction, tiny_segmenter

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
PROFILE = "kubeflow-user-example-com"  # the namespace of Kubeflow's example profile
STEP_SA = "default-editor"  # the ServiceAccount Kubeflow runs a profile's pipeline steps as
RECIPE_SET = ["data.num_images=240", "training.epochs=4"]
# How a user compiles the pipeline for this cluster: no GPUs, a Ray cluster that fits 2 cores.
COMPILE = ["--no-gpu", "--ray", "workers=2,worker_cpus=0.6,worker_memory=3Gi,head_cpus=0.2,head_memory=3Gi"]


@pytest.fixture(scope="module")
def cluster(kube_node, segflow_image):
    """The operator, Kubeflow's MinIO, and a profile namespace with its Secret, RBAC and the segflow image."""
    kube_node.load_images([segflow_image])
    rbac = _profile_rbac(PROFILE)
    with kuberay_operator(kube_node), kubeflow_minio(kube_node) as minio:
        try:
            kube_node.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PROFILE}},
                             kubeflow_secret(PROFILE), *rbac])
            yield kube_node, minio, segflow_image.reference
        finally:
            kube_node.kubectl("delete", "namespace", PROFILE, "--ignore-not-found", "--wait=true", check=False,
                              timeout=300)
            roles = [o["metadata"]["name"] for o in rbac if o["kind"] == "ClusterRole"]
            kube_node.kubectl("delete", "clusterrole", *roles, "--ignore-not-found", check=False)


def _profile_rbac(namespace: str) -> list[dict]:
    """A profile's RBAC as Kubeflow 1.10 makes it, plus what k8s/ ships for segflow's steps.

    k8s/kubeflow/rayjob-runner.yaml and release-deployer.yaml add the train and deploy steps' rules to
    kubeflow-edit through its aggregation label; the node's kube-controller-manager does the aggregating.
    """
    shipped = [o for name in ("rayjob-runner.yaml", "release-deployer.yaml")
               for o in yaml.safe_load_all((REPO / "k8s" / "kubeflow" / name).read_text()) if o]
    return [*kubeflow_rbac([namespace]), *shipped]


@pytest.fixture
def api(cluster):
    from kubernetes import client

    node = cluster[0]
    return client.CustomObjectsApi(node.api.client()), client.CoreV1Api(node.api.client())


def _compiled(folder: Path, *options: str) -> Path:
    """train_and_serve compiled by `segflow pipeline compile` with COMPILE, as a user would for this cluster."""
    subprocess.run([str(Path(sys.executable).with_name("segflow")), "pipeline", "compile", "--out-dir", str(folder),
                    *COMPILE, *options], check=True, capture_output=True, text=True)
    return folder / "train_and_serve.yaml"


def _train_step_pod(pipeline: Path, name: str, recipe_json: str, dataset_uri: str, root: str) -> dict:
    """The train step's pod as KFP's driver would make it, cluster=True, printing the executor output at the end."""
    executor_input = {
        "inputs": {"parameterValues": {"recipe_json": recipe_json, "overrides_json": "{}", "cluster": True},
                   "artifacts": {"dataset": artifact("dataset", "system.Dataset", dataset_uri)}},
        "outputs": {"parameters": {"Output": {"outputFile": "/tmp/kfp_outputs/Output"}},
                    "artifacts": {"run": artifact("run", "system.Model", f"{root}/run"),
                                  "metrics": artifact("metrics", "system.Metrics", f"{root}/metrics"),
                                  "report": artifact("report", "system.HTML", f"{root}/report")},
                    "outputFile": OUTPUT_METADATA}}
    return step_pod(pipeline, "train", executor_input, name=name, namespace=PROFILE, service_account=STEP_SA)


def _prep_quickstart(minio, monkeypatch) -> tuple[object, str]:
    """The quickstart dataset (smaller), prepared into Kubeflow's MinIO as a prep step would have."""
    from segflow.config import load_recipe
    from segflow.data import prep
    from segflow.progress import SILENT

    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    recipe = load_recipe("quickstart", RECIPE_SET)
    uri = "s3://mlpipeline/v2/artifacts/e2e/prep/dataset"
    prep(recipe, None, uri, progress=SILENT)
    return recipe, uri


def _wait_for_checkpoint(node, out: str, pod: str, timeout: float) -> None:
    """Until Ray Train has written a checkpoint of the run into MinIO (the step's pod still running)."""
    from segflow.store import open_store

    store = open_store(out)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any("checkpoint_" in info.key for info in store.list("ray")):
            return
        phase = node.kubectl("-n", PROFILE, "get", "pod", pod, "-o", "jsonpath={.status.phase}").stdout
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(2)
    raise AssertionError(f"no checkpoint under {out}/ray within {timeout:.0f} s:\n{node.diagnose(PROFILE)}")


def _workers(node, kind: str = "worker") -> set[str]:
    return set(node.kubectl("-n", PROFILE, "get", "pods", "-l", f"ray.io/node-type={kind}", "-o",
                            "jsonpath={.items[*].metadata.name}").stdout.split())


def _heads(node) -> set[str]:
    return _workers(node, "head")


def _wait_finished(node, pod: str, timeout: float) -> tuple[str, set[str]]:
    """The step pod's final phase, and every Ray worker pod seen meanwhile."""
    deadline, seen = time.monotonic() + timeout, set()
    while time.monotonic() < deadline:
        seen |= _workers(node)
        phase = node.kubectl("-n", PROFILE, "get", "pod", pod, "-o", "jsonpath={.status.phase}").stdout
        if phase in ("Succeeded", "Failed"):
            return phase, seen
        time.sleep(3)
    raise AssertionError(f"the train step did not finish within {timeout:.0f} s:\n{node.diagnose(PROFILE)}")


@pytest.mark.timeout(1800)  # the image into the node, a Ray cluster of 3 pods on 2 cores, a restart, a local run
def test_the_train_step_trains_with_ddp_on_two_worker_pods_and_survives_losing_one(cluster, monkeypatch, tmp_path):
    from segflow.config import recipe_to_json
    from segflow.progress import SILENT
    from segflow.store import open_store
    from segflow.train import train

    node, minio, _ = cluster
    pipeline = _compiled(tmp_path / "compiled")
    recipe, dataset = _prep_quickstart(minio, monkeypatch)
    root = "minio://mlpipeline/v2/artifacts/e2e/train"
    out = "s3://mlpipeline/v2/artifacts/e2e/train/run"
    started = time.monotonic()
    node.apply([_train_step_pod(pipeline, "train", recipe_to_json(recipe), dataset.replace("s3://", "minio://"), root)])

    # DDP across two pods: both workers of the job's Ray cluster run, on their own pod addresses
    _wait_for_checkpoint(node, out, "train", timeout=600)
    workers = json.loads(node.kubectl("-n", PROFILE, "get", "pods", "-l", "ray.io/node-type=worker", "-o",
                                      "json").stdout)["items"]
    assert len(workers) == 2 and len({w["status"]["podIP"] for w in workers}) == 2
    killed = workers[0]["metadata"]["name"]
    node.kubectl("-n", PROFILE, "delete", "pod", killed, "--grace-period=0", "--force")

    phase, seen = _wait_finished(node, "train", timeout=900)
    log = node.kubectl("-n", PROFILE, "logs", "train").stdout
    assert phase == "Succeeded", f"the train step ended {phase}:\n{log[-4000:]}\n{node.diagnose(PROFILE)}"
    assert seen - {w["metadata"]["name"] for w in workers}, "KubeRay never replaced the killed worker pod"
    cluster_s = time.monotonic() - started
    outputs = executor_output(log)
    quality = outputs["parameterValues"]["Output"]
    model = outputs["artifacts"]["run"]["artifacts"][0]["metadata"]
    # the model and its evaluation are in MinIO, where the step's Model artifact says
    assert open_store(model["model_uri"]).list(), model
    history = json.loads(open_store(out).get_text("eval/history.json"))
    assert [e["epoch"] for e in history] == list(range(1, recipe.training.epochs + 1))  # resumed, not restarted
    job = json.loads(node.kubectl("-n", PROFILE, "get", "rayjobs", "-o", "json").stdout)["items"][0]
    assert job["status"]["jobStatus"] == "SUCCEEDED" and not job["status"].get("failed")  # Ray Train recovered

    # the same recipe trained here, in-process, reaches the same quality within noise
    started = time.monotonic()
    local = train(recipe, str(tmp_path / "local"), dataset_uri=dataset, progress=SILENT)
    local_quality = local.evaluation.evaluation.metrics["miou"]
    print(f"cluster: mIoU {quality:.4f} in {cluster_s:.0f} s (a worker pod killed after the first checkpoint); "
          f"local: mIoU {local_quality:.4f} in {time.monotonic() - started:.0f} s")
    assert abs(quality - local_quality) <= 0.05
    # the Ray cluster is released soon after the job (ttlSecondsAfterFinished), not held with its resources
    deadline = time.monotonic() + 180
    while _workers(node) | _heads(node) and time.monotonic() < deadline:
        time.sleep(3)
    assert not _workers(node) | _heads(node), "the finished RayJob's Ray cluster still holds its pods"


def _manifest(name: str, image: str, **spec) -> dict:
    settings = ClusterSettings(namespace=PROFILE, image=image, workers=1, worker_gpus=0, worker_cpus=0.2,
                               worker_memory="1Gi", head_cpus=0.1, head_memory="1Gi")
    manifest = rayjob_manifest(name, "quickstart", "s3://mlpipeline/none", "s3://mlpipeline/none", settings)
    manifest["spec"].update(spec)
    return manifest


def _gone(custom, name: str, timeout: float) -> bool:
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            custom.get_namespaced_custom_object(GROUP, VERSION, PROFILE, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        time.sleep(0.5)
    return False


def test_a_rayjob_kuberay_refuses_ends_the_step_with_the_operators_message_within_a_minute(cluster, api):
    custom, core = api
    manifest = _manifest("segflow-invalid", cluster[2], shutdownAfterJobFinishes=False)  # with a TTL: refused
    started = time.monotonic()
    with pytest.raises(PipelineError, match="ValidationFailed.*shutdownAfterJobFinishes set to false cannot have "
                                            "TTLSecondsAfterFinished"):
        submit_and_follow(custom, manifest, core=core, poll_s=1, log=lambda _: None)
    assert time.monotonic() - started < 60


def test_a_missing_image_ends_the_step_with_the_kubelets_message_and_deletes_the_rayjob(cluster, api):
    custom, core = api
    manifest = _manifest("segflow-no-image", "localhost/segflow-test/absent:1")
    started = time.monotonic()
    with pytest.raises(PipelineError, match=r"cannot start: pod .*absent:1.*(ErrImagePull|ImagePullBackOff)"):
        submit_and_follow(custom, manifest, core=core, poll_s=1, log=lambda _: None)
    assert time.monotonic() - started < 60
    assert _gone(custom, "segflow-no-image", 30)


def test_cancelling_the_step_deletes_its_rayjob(cluster, api, tmp_path):
    """SIGTERM, as the kubelet sends when a cancelled KFP run's pod is deleted."""
    custom, _ = api
    node = cluster[0]
    manifest = _manifest("segflow-cancelled", cluster[2], suspend=True)  # a job that waits, holding nothing
    (tmp_path / "job.json").write_text(json.dumps(manifest))
    step = subprocess.Popen(
        [sys.executable, "-c", "import json, sys\nfrom kubernetes import client, config\n"
         "from segflow.components.rayjob import submit_and_follow\nconfig.load_kube_config()\n"
         "submit_and_follow(client.CustomObjectsApi(), json.load(open(sys.argv[1])), poll_s=1)\n",
         str(tmp_path / "job.json")],
        env=os.environ | {"KUBECONFIG": str(node.api.kubeconfig)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        deadline = time.monotonic() + 60
        while "created" not in (line := step.stdout.readline()):
            assert time.monotonic() < deadline and line, "the step did not create its RayJob"
        step.terminate()
        output = step.communicate(timeout=30)[0]
    finally:
        step.kill()
    assert step.returncode == 143, output
    assert "deleted RayJob" in output
    assert _gone(custom, "segflow-cancelled", 30)


def test_the_rayjob_goes_with_the_step_pod_it_belongs_to(cluster, api):
    """Killed without a chance to clean up, the step still leaves nothing: the RayJob is owned by its pod."""
    from kubernetes import client

    custom, core = api
    pause = node_images.node_images().pause.reference  # on the node already: every pod's sandbox
    pod = core.create_namespaced_pod(PROFILE, client.V1Pod(
        metadata=client.V1ObjectMeta(name="step"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="main", image=pause,
                                                             image_pull_policy="Never")])))
    manifest = _manifest("segflow-owned", cluster[2], suspend=True)
    manifest["metadata"]["ownerReferences"] = rayjob_manifest(
        "x", "r", "s3://d/d", "s3://d/o", ClusterSettings(owner=("step", pod.metadata.uid)))["metadata"][
        "ownerReferences"]
    custom.create_namespaced_custom_object(GROUP, VERSION, PROFILE, PLURAL, manifest)
    core.delete_namespaced_pod("step", PROFILE, grace_period_seconds=0)
    assert _gone(custom, "segflow-owned", 60), "the garbage collector left the RayJob of a deleted pod"


SERVED = "tiny"  # the served model's name
SERVED_ARCHIVE = f"s3://mlpipeline/serving/{SERVED}/archive"


def _publish(minio, folder: Path, seed: int, monkeypatch) -> tuple[str, str]:
    """`segflow package` of a tiny U-Net into Kubeflow's MinIO: (archive version, model version)."""
    from segflow.models.artifact import save_model
    from segflow.serving.archive import package

    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    model, config = tiny_segmenter(seed)
    card = save_model(str(folder / "model"), model, config, {"recipe": {"name": SERVED}}, [])
    return package(str(folder / "model"), SERVED_ARCHIVE, name=SERVED).version, card["version"]


def _served_version(node, timeout: float = 60) -> str:
    """The model version the release's Service answers with (X-Segflow-Model-Version), through the gateway."""
    import base64

    spec = json.loads(node.kubectl("-n", PROFILE, "get", "service", "segflow", "-o", "json").stdout)["spec"]
    (port,) = [p["port"] for p in spec["ports"] if p["name"] == "http"]
    token = base64.b64decode(node.kubectl("-n", PROFILE, "get", "secret", "segflow-auth", "-o",
                                          "jsonpath={.data.token}").stdout).decode()
    status, headers, body = post_prediction(f"http://{spec['clusterIP']}:{port}/predictions/{SERVED}", token,
                                            encode(noise(30, 30), "PNG"), timeout=timeout)
    assert status == 200, body[:300]
    return headers["X-Segflow-Model-Version"]


@pytest.mark.timeout(1500)
def test_the_deploy_step_upgrades_the_serving_release_and_the_new_version_answers(cluster, serve_image, monkeypatch,
                                                                                 tmp_path):
    """The chart serves archive v1 in the profile namespace; the pipeline's deploy step (compiled with
    --helm-release segflow) runs helm upgrade as default-editor, and the Service then answers with v2."""
    node, minio, _ = cluster
    node.load_images([serve_image])
    node.api.install_crds([crd for crd in gobuild.prometheus_operator_crds()  # the chart's monitoring kinds
                           if crd.name.endswith(("_servicemonitors.yaml", "_prometheusrules.yaml"))])
    v1, model_v1 = _publish(minio, tmp_path / "v1", 0, monkeypatch)
    v2, model_v2 = _publish(minio, tmp_path / "v2", 1, monkeypatch)
    values = {"model": {"name": SERVED, "archiveUri": SERVED_ARCHIVE, "archiveVersion": v1},
              "s3": {"endpoint": minio.in_cluster, "existingSecret": "mlpipeline-minio-artifact"},
              "torchserve": {"resources": {"requests": {"cpu": "200m", "memory": "1Gi"},
                                           "limits": {"cpu": "2", "memory": "4Gi"}}}}
    # installed by an admin with the helm command: the release's objects are field manager "helm"'s
    helm_cli(node.api.kubeconfig, "install", "segflow", str(REPO / "charts" / "segflow"), "-n", PROFILE,
             "--wait=watcher", "--timeout=7m", values=values)
    try:
        assert _served_version(node) == model_v1

        pipeline = _compiled(tmp_path / "compiled", "--helm-release", "segflow")
        started = time.monotonic()
        node.apply([deploy_step_pod(pipeline, SERVED_ARCHIVE.replace("s3://", "minio://"), v2,
                                    "minio://mlpipeline/v2/artifacts/e2e/deploy/release", name="deploy",
                                    namespace=PROFILE, service_account=STEP_SA)])
        phase, _ = _wait_finished(node, "deploy", timeout=900)
        log = node.kubectl("-n", PROFILE, "logs", "deploy").stdout
        assert phase == "Succeeded", f"the deploy step ended {phase}:\n{log[-4000:]}\n{node.diagnose(PROFILE)}"
        release = executor_output(log)["artifacts"]["release"]["artifacts"][0]["metadata"]
        print(f"deploy step: helm upgrade to archive {v2} done in {time.monotonic() - started:.0f} s")
        assert release["mode"] == "helm-release" and release["revision"] == 2
        assert release["previous_version"] == v1 and release["namespace"] == PROFILE
        assert _served_version(node) == model_v2  # the Service answers with the new model
    finally:
        helm_cli(node.api.kubeconfig, "uninstall", "segflow", "-n", PROFILE, "--wait", "--timeout=3m")
