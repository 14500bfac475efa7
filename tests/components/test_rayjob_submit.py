"""The train step's cluster mode: the RayJob it builds, and how it follows one to the end.

Here submit-and-follow runs with the real kubernetes Python client against a loopback HTTP
server that replays recorded RayJob statuses (tests/components/recorded/*.json, the shape
KubeRay 1.7 writes), so it is checked where no kube-apiserver can be built; with Go,
test_rayjob_apiserver.py follows the same statuses through a real kube-apiserver.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kubernetes import client

from segflow.components.rayjob import ClusterSettings, rayjob_manifest, submit_and_follow, to_s3
from segflow.errors import PipelineError
from support.crd import validate

RECORDED = Path(__file__).parent / "recorded"


def manifest(name="segflow-quickstart-1"):
    return rayjob_manifest(name, "s3://runs/q/recipe.json", "s3://mlpipeline/data/q", "s3://mlpipeline/runs/q",
                           ClusterSettings())


def test_the_rayjob_validates_against_the_kuberay_crd():
    job = manifest()
    assert validate(job) == []
    assert job["spec"]["entrypoint"].startswith("segflow train s3://runs/q/recipe.json --dataset s3://mlpipeline")
    assert job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"][
        "limits"]["nvidia.com/gpu"] == "1"


def test_kfp_minio_uris_become_s3():
    assert to_s3("minio://mlpipeline/v2/artifacts/x") == "s3://mlpipeline/v2/artifacts/x"
    with pytest.raises(PipelineError, match="not in object storage"):
        to_s3("/tmp/local")


class _Replay(BaseHTTPRequestHandler):
    statuses: list = []
    created: list = []

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).created.append((self.path, body))
        self._send(201, body)

    def do_GET(self):
        job = dict(type(self).created[-1][1])
        job["status"] = type(self).statuses.pop(0) if len(type(self).statuses) > 1 else type(self).statuses[0]
        self._send(200, job)

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Replay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
    yield client.CustomObjectsApi(client.ApiClient(configuration))
    server.shutdown()


def replay(name):
    _Replay.statuses = json.loads((RECORDED / name).read_text())["statuses"]
    _Replay.created = []


def test_follows_a_job_to_success(api):
    replay("rayjob_succeeded.json")
    status = submit_and_follow(api, manifest(), poll_s=0.01)
    assert status["jobStatus"] == "SUCCEEDED"
    path, body = _Replay.created[0]
    assert path == "/apis/ray.io/v1/namespaces/segflow/rayjobs" and body["kind"] == "RayJob"


def test_a_failed_job_fails_the_step_with_the_jobs_message(api):
    replay("rayjob_failed.json")
    with pytest.raises(PipelineError, match=r"(?s)ended Failed \(AppFailed\), job FAILED: "
                                            r"Job entrypoint command failed.*NaN/inf in epoch 3"):
        submit_and_follow(api, manifest(), poll_s=0.01)


def test_a_job_that_never_ends_times_out(api):
    replay("rayjob_succeeded.json")
    _Replay.statuses = _Replay.statuses[:3]
    with pytest.raises(PipelineError, match="did not finish within"):
        submit_and_follow(api, manifest(), poll_s=0.01, timeout_s=0.3)


def test_the_step_sizes_and_places_the_rayjob_from_the_env_the_pipeline_compiled_in(monkeypatch):
    for name, value in {"SEGFLOW_NAMESPACE": "kubeflow-user-example-com", "SEGFLOW_POD_NAME": "train-abc",
                        "SEGFLOW_POD_UID": "0f6c", "SEGFLOW_IMAGE": "registry.example.com/segflow:1",
                        "SEGFLOW_S3_SECRET": "team-minio", "SEGFLOW_RAY_WORKERS": "3",
                        "SEGFLOW_RAY_WORKER_GPUS": "0", "SEGFLOW_RAY_WORKER_CPUS": "1.5"}.items():
        monkeypatch.setenv(name, value)
    job = rayjob_manifest("segflow-q-1", "s3://r", "s3://d", "s3://o", ClusterSettings.from_env())
    assert validate(job) == []
    assert job["metadata"]["namespace"] == "kubeflow-user-example-com"
    assert job["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Pod", "name": "train-abc",
                                                   "uid": "0f6c"}]
    (workers,) = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    worker = workers["template"]["spec"]["containers"][0]
    assert workers["replicas"] == 3 and worker["image"] == "registry.example.com/segflow:1"
    assert worker["resources"]["limits"] == {"cpu": "1500m", "memory": "24Gi"}  # no GPU asked for
    assert "--workers 3 --set training.use_gpu=false --set training.cpus_per_worker=1.5" in job["spec"]["entrypoint"]
    secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in worker["env"] if "valueFrom" in e}
    assert secrets == {"team-minio"}


def test_a_bad_ray_size_in_the_env_names_the_setting(monkeypatch):
    monkeypatch.setenv("SEGFLOW_RAY_WORKER_CPUS", "four")
    with pytest.raises(PipelineError, match="worker_cpus='four' is not a number"):
        ClusterSettings.from_env()


def test_job_names_are_what_kuberay_accepts():
    from segflow.components.rayjob import MAX_NAME, job_name

    for recipe in ("quickstart", "kitti-road", "COCO_Stuff 182 classes, a very long recipe name indeed"):
        name = job_name(recipe)
        assert len(name) <= MAX_NAME and name[0].isalpha() and name.replace("-", "").isalnum() and name.islower()
    assert job_name("quickstart") != job_name("quickstart")  # one RayJob per submission
