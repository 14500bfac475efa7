"""charts/segflow on a real Kubernetes node: `helm install`, serve, `helm test`, upgrade, rollback, scale, heal.

The node is tests/support/node.py (kubelet, containerd, kube-proxy, CoreDNS, all real); the pods
run the segflow-serve image that `make images` builds (tools/imagebuild), imported into the node,
and the chart's own MinIO runs MinIO's server built from its Go module in an image made the same
way. The Helm SDK (helm-python-sdk, Helm 4) installs the chart from charts/segflow with its
defaults, except: the release's MinIO is on (the demo path of docs/deploy.md) with that image,
and CPU requests are smaller, so that a rolling upgrade's extra pod fits a 2-core node.

The test process is a client outside the pods: it reaches Services at their ClusterIPs through
kube-proxy's rules, as a pod would, and pods' own addresses on the node's bridge. Not exercised
here: NetworkPolicy (the bridge CNI plugin does not enforce it) and GPUs.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support import gobuild, node_images
from support.helm import CHART
from support.serving import encode, noise, post_prediction, reference_mask, tiny_segmenter

pytestmark = pytest.mark.slow
RELEASE, NAMESPACE = "segflow", "segflow-e2e"  # a namespace of its own: the docs' test uses `segflow`
MODEL = "tiny"
BUCKET = "segflow"
ARCHIVE = f"s3://{BUCKET}/{MODEL}/archive"
SMALL = {"requests": {"cpu": "200m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}


@dataclass
class Release:
    """The installed release, the node it runs on, and the archive versions published for it."""

    node: object
    helm: object
    values: dict
    versions: dict[str, str] = field(default_factory=dict)  # archive version -> model version (X-Segflow-Model-Version)
    models: dict[str, tuple] = field(default_factory=dict)  # archive version -> (model, config), for reference masks

    def service(self, name: str = RELEASE, port: str = "http") -> str:
        spec = json.loads(self.node.kubectl("-n", NAMESPACE, "get", "service", name, "-o", "json").stdout)["spec"]
        (number,) = [p["port"] for p in spec["ports"] if p["name"] == port]
        return f"http://{spec['clusterIP']}:{number}"

    def secret(self, name: str, key: str) -> str:
        data = self.node.kubectl("-n", NAMESPACE, "get", "secret", name, "-o", f"jsonpath={{.data.{key}}}").stdout
        return base64.b64decode(data).decode()

    @property
    def token(self) -> str:
        return self.secret(f"{RELEASE}-auth", "token")

    def serving_pods(self) -> list[dict]:
        listed = self.node.kubectl("-n", NAMESPACE, "get", "pods", "-l",
                                   f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=serving",
                                   "-o", "json").stdout
        return [p for p in json.loads(listed)["items"] if not p["metadata"].get("deletionTimestamp")]

    def rollout(self, timeout: float = 420) -> None:
        self.node.wait_ready("deployment", RELEASE, NAMESPACE, timeout)


@pytest.fixture(scope="module")
def release(kube_node, serve_image, tmp_path_factory):
    import helm_python

    minio = node_images.minio()
    kube_node.load_images([serve_image, minio])
    # the kinds of the chart's ServiceMonitor and PrometheusRule (test_cluster_monitoring.py runs their operator)
    kube_node.api.install_crds([crd for crd in gobuild.prometheus_operator_crds()
                                if crd.name.endswith(("_servicemonitors.yaml", "_prometheusrules.yaml"))])
    repository, tag = minio.reference.rsplit(":", 1)
    values = {"model": {"name": MODEL, "archiveUri": ARCHIVE},
              "minio": {"enabled": True, "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"}},
              "torchserve": {"resources": SMALL}}
    helm = helm_python.Config(kubeconfig_path=str(kube_node.api.kubeconfig), namespace=NAMESPACE)
    # Returns once the post-install hook made the bucket; the serving pod's init container waits
    # (failing, restarted by the kubelet) for an archive, which the test then publishes and pins, as
    # docs/deploy.md says to: a rollback can only return to a version a revision names.
    helm.install(str(CHART), RELEASE, values, namespace=NAMESPACE, create_namespace=True, timeout=300)
    release = Release(kube_node, helm, values)
    version = _publish(release, tmp_path_factory.mktemp("v1"), seed=0)
    helm.upgrade(str(CHART), RELEASE, {"model": {"archiveVersion": version}}, namespace=NAMESPACE,
                 reuse_values=True, timeout=300)
    release.rollout()
    yield release
    helm.uninstall(RELEASE, timeout=120)
    # the Secrets the chart keeps on uninstall (helm.sh/resource-policy: keep) go with the namespace
    kube_node.kubectl("delete", "namespace", NAMESPACE, "--wait=true", timeout=180)


def _publish(release: Release, folder: Path, seed: int) -> str:
    """`segflow package` of a tiny U-Net into the release's MinIO through its Service; the archive version."""
    from minio import Minio

    from segflow.models.artifact import save_model
    from segflow.serving.archive import package

    endpoint = release.service(f"{RELEASE}-minio", "s3")
    keys = {"SEGFLOW_S3_ENDPOINT": endpoint, "AWS_ACCESS_KEY_ID": release.secret(f"{RELEASE}-minio", "accesskey"),
            "AWS_SECRET_ACCESS_KEY": release.secret(f"{RELEASE}-minio", "secretkey")}
    assert Minio(endpoint.removeprefix("http://"), keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"],
                 secure=False).bucket_exists(BUCKET), "the chart's post-install hook did not create the bucket"
    model, config = tiny_segmenter(seed)
    with pytest.MonkeyPatch.context() as env:
        for key, value in keys.items():
            env.setenv(key, value)
        card = save_model(str(folder / "model"), model, config, {"recipe": {"name": MODEL}}, [])
        archive = package(str(folder / "model"), ARCHIVE, name=MODEL)
    release.versions[archive.version] = card["version"]
    release.models[archive.version] = (model, config)
    return archive.version


def _predict(url: str, token: str, image: np.ndarray, timeout: float = 60) -> tuple[int, dict, bytes]:
    return post_prediction(f"{url}/predictions/{MODEL}", token, encode(image, "PNG"), timeout=timeout)


def _eventually_served(release: Release, version: str, timeout: float = 30) -> None:
    """Until the Service answers with archive VERSION's model: the pods a rollout replaced keep answering
    for their preStop's few seconds, while kube-proxy stops sending them new connections."""
    expected, seen = release.versions[version], None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, headers, body = _predict(release.service(), release.token, noise(30, 30))
        assert status == 200, body[:300]
        if (seen := headers["X-Segflow-Model-Version"]) == expected:
            return
        time.sleep(1)
    raise AssertionError(f"the Service still answers with model {seen}, not {expected}, "
                         f"{timeout:.0f} s after the rollout")


def _mask(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)))


def test_the_init_container_fetched_the_archive_and_checked_its_sha256(release):
    (pod,) = release.serving_pods()
    log = release.node.kubectl("-n", NAMESPACE, "logs", pod["metadata"]["name"], "-c", "fetch-model").stdout
    (version,) = release.versions  # an archive's version is its .mar's sha256 prefix
    assert f"fetched {MODEL}.mar" in log and f"sha256 {version} verified" in log, log
    assert all(c["ready"] for c in pod["status"]["containerStatuses"]), pod["status"]["containerStatuses"]


def test_a_prediction_through_the_service_equals_the_in_process_mask(release):
    (version,) = release.versions
    model, config = release.models[version]
    image = noise(90, 120, seed=3)
    status, headers, body = _predict(release.service(), release.token, image)
    assert status == 200, body[:500]
    assert headers["X-Segflow-Model-Version"] == release.versions[version]
    assert np.array_equal(_mask(body), reference_mask(model, config, image))


def test_the_gateway_refuses_a_missing_or_wrong_token_and_answers_ping_without_one(release):
    status, _, body = _predict(release.service(), "wrong", noise(20, 20))
    assert status == 401 and json.loads(body)["type"] == "InvalidKeyException", body
    request = urllib.request.Request(f"{release.service()}/predictions/{MODEL}", data=b"x", method="POST",
                                     headers={"Content-Type": "image/png"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 401 and f"kubectl get secret {RELEASE}-auth" in refused.value.read().decode()
    with urllib.request.urlopen(f"{release.service()}/ping", timeout=30) as ping:  # probes and load balancers
        assert json.loads(ping.read())["status"] == "Healthy"


def test_helm_test_passes(release):
    result = release.helm.test(RELEASE, timeout=300, logs=True)
    assert f"ok: http://{RELEASE}.{NAMESPACE}.svc" in json.dumps(result), result


class Client(threading.Thread):
    """A client that keeps sending images through the Service, one connection per request, until stopped."""

    def __init__(self, url: str, token: str):
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.stop = threading.Event()
        self.answers: Counter = Counter()  # model version (or the failure) -> count
        self.failures: list[str] = []

    def run(self) -> None:
        image = noise(48, 64, seed=7)
        while not self.stop.is_set():
            try:
                status, headers, body = _predict(self.url, self.token, image, timeout=30)
            except OSError as exc:
                self.failures.append(f"{time.strftime('%X')} {exc}")
                continue
            if status == 200:
                self.answers[headers.get("X-Segflow-Model-Version")] += 1
            else:
                self.failures.append(f"{time.strftime('%X')} HTTP {status}: {body[:200]!r}")

    def __enter__(self) -> Client:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join(timeout=60)


def test_upgrade_to_a_new_model_version_loses_no_request_and_keeps_the_token(release, tmp_path):
    token, (old,) = release.token, release.versions
    new = _publish(release, tmp_path, seed=1)
    with Client(release.service(), token) as client:
        time.sleep(2)
        release.helm.upgrade(str(CHART), RELEASE, {"model": {"archiveVersion": new}}, namespace=NAMESPACE,
                             reuse_values=True, timeout=300)
        release.rollout()
        time.sleep(2)
    assert not client.failures, f"{len(client.failures)} failed requests during the rollout: {client.failures[:5]}"
    assert client.answers[release.versions[old]] and client.answers[release.versions[new]], client.answers
    assert release.token == token  # the auth Secret's `lookup` kept it
    _eventually_served(release, new)


def test_rollback_serves_the_previous_version_again(release):
    old, _new = release.versions
    release.helm.rollback(RELEASE, timeout=300)
    release.rollout()
    _eventually_served(release, old)


def test_kubectl_scale_to_two_replicas_and_both_answer(release):
    release.node.kubectl("-n", NAMESPACE, "scale", f"deployment/{RELEASE}", "--replicas=2")
    release.rollout()
    pods = release.serving_pods()
    assert len(pods) == 2
    port = release.values.get("gateway", {}).get("port", 8000)
    for pod in pods:  # each pod's own gateway, past the Service's load balancing
        status, _, body = _predict(f"http://{pod['status']['podIP']}:{port}", release.token, noise(30, 30))
        assert status == 200, (pod["metadata"]["name"], body[:300])


def test_a_deleted_pod_is_replaced_and_serves_again(release):
    victim = release.serving_pods()[0]["metadata"]["name"]
    release.node.kubectl("-n", NAMESPACE, "delete", "pod", victim, "--wait=true", timeout=180)
    release.rollout()
    names = [p["metadata"]["name"] for p in release.serving_pods()]
    assert victim not in names and len(names) == 2, names
    status, _, _ = _predict(release.service(), release.token, noise(30, 30))
    assert status == 200
