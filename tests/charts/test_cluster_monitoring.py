"""charts/segflow watched by a real prometheus-operator and Prometheus: its ServiceMonitor, PrometheusRule and Grafana
dashboard checked on a real node, as kube-prometheus-stack would run them.

The node is tests/support/node.py; tests/support/monitoring.py deploys the operator (built from its
Go module, with the CRDs it ships), a Prometheus (3.5, also built from its Go module) and the
kubelet's cAdvisor ServiceMonitor. The chart is installed with the Helm SDK as test_cluster.py
installs it (its MinIO on, small CPU requests), as a release of its own in a namespace of its own,
with 2 s scrapes and `for:` durations of seconds, so that data and alerts come within a test's patience.

The tests share one release, in order, because TorchServe's counters only grow: first it answers
2xx and 5xx only (the error alert must fire although no 4xx was ever counted), then every kind of
answer the dashboard shows, then its Deployment is scaled to 0 (the down alert). Grafana's server
is not obtainable here: its $__rate_interval becomes the 1m Grafana computes for a data source
with the default 15 s scrape interval (4 x 15 s), and the dashboard's variables their defaults.
"""

from __future__ import annotations

import base64
import json
import math
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import node_images
from support.helm import CHART
from support.monitoring import prometheus_operator
from support.real import unavailable
from support.serving import bad_inputs, encode, noise, post_prediction, save_tiny_segmenter

pytestmark = pytest.mark.slow
RELEASE = NAMESPACE = "segflow-mon"
MODEL, BUCKET = "tiny", "segflow"
ARCHIVE = f"s3://{BUCKET}/{MODEL}/archive"
SMALL = {"requests": {"cpu": "200m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
VALUES = {
    "model": {"name": MODEL, "archiveUri": ARCHIVE},
    "torchserve": {"resources": SMALL},
    "serviceMonitor": {"interval": "2s", "scrapeTimeout": "2s"},
    # 3 failed scrapes in a row, so one slow scrape on a busy node is not an outage
    "prometheusRule": {"for": {"down": "6s", "errors": "4s", "latency": "4s", "queue": "4s"}},
}
SELECTOR = f'namespace="{NAMESPACE}", job="{RELEASE}"'
# SegflowServingErrors' expression before the fix: its denominator, a sum of three sums, is empty
# until a 2xx, a 4xx and a 5xx have each been answered.
OLD_ERRORS = (f"sum(rate(Requests5XX{{{SELECTOR}}}[5m])) / (sum(rate(Requests2XX{{{SELECTOR}}}[5m])) "
              f"+ sum(rate(Requests4XX{{{SELECTOR}}}[5m])) + sum(rate(Requests5XX{{{SELECTOR}}}[5m]))) > 0.05")
# Grafana's $__rate_interval at its default 15 s scrape interval. Not less: cAdvisor's samples carry the
# times it collected them (every 10-20 s here), so a 10 s or 20 s window often holds fewer than two.
GRAFANA_RATE_INTERVAL = "1m"


@dataclass
class Release:
    """The installed release and the node it runs on."""

    node: object

    def kubectl_json(self, *args: str) -> dict:
        return json.loads(self.node.kubectl("-n", NAMESPACE, *args, "-o", "json").stdout)

    def service(self, name: str = RELEASE, port: str = "http") -> str:
        spec = self.kubectl_json("get", "service", name)["spec"]
        (number,) = [p["port"] for p in spec["ports"] if p["name"] == port]
        return f"http://{spec['clusterIP']}:{number}"

    def secret(self, name: str, key: str) -> str:
        return base64.b64decode(self.kubectl_json("get", "secret", name)["data"][key]).decode()

    @property
    def predictions(self) -> str:
        return f"{self.service()}/predictions/{MODEL}"

    def serving_pod(self) -> str:
        listed = self.kubectl_json("get", "pods", "-l",
                                   f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=serving")
        (pod,) = [p["metadata"]["name"] for p in listed["items"] if not p["metadata"].get("deletionTimestamp")]
        return pod


@pytest.fixture(scope="module")
def monitoring(kube_node):
    from imagebuild import ImageBuildError

    try:
        with prometheus_operator(kube_node) as monitoring:
            yield monitoring
    except (node_images.ImagesUnavailable, ImageBuildError) as exc:
        unavailable(f"no prometheus-operator or Prometheus image: {exc}")


@pytest.fixture(scope="module")
def release(kube_node, serve_image, monitoring, tmp_path_factory):
    import helm_python

    minio = node_images.minio()
    kube_node.load_images([serve_image, minio])
    repository, tag = minio.reference.rsplit(":", 1)
    values = {**VALUES, "minio": {"enabled": True, "image": {"repository": repository, "tag": tag,
                                                             "pullPolicy": "Never"}}}
    helm = helm_python.Config(kubeconfig_path=str(kube_node.api.kubeconfig), namespace=NAMESPACE)
    # Returns once the post-install hook made the bucket; the serving pod's init container retries
    # until the archive published below is there.
    helm.install(str(CHART), RELEASE, values, namespace=NAMESPACE, create_namespace=True, timeout=300)
    release = Release(kube_node)
    try:
        _publish(release, tmp_path_factory.mktemp("model"))
        kube_node.wait_ready("deployment", RELEASE, NAMESPACE, 420)
        yield release
    finally:
        helm.uninstall(RELEASE, timeout=120)
        kube_node.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def _publish(release: Release, folder: Path) -> None:
    """`segflow package` of a tiny U-Net into the release's MinIO, through its Service."""
    from segflow.serving.archive import package

    keys = {"SEGFLOW_S3_ENDPOINT": release.service(f"{RELEASE}-minio", "s3"),
            "AWS_ACCESS_KEY_ID": release.secret(f"{RELEASE}-minio", "accesskey"),
            "AWS_SECRET_ACCESS_KEY": release.secret(f"{RELEASE}-minio", "secretkey")}
    with pytest.MonkeyPatch.context() as env:
        for key, value in keys.items():
            env.setenv(key, value)
        save_tiny_segmenter(str(folder / "model"), {})
        package(str(folder / "model"), ARCHIVE, name=MODEL)


def _status(url: str, token: str, body: bytes, content_type: str) -> int:
    """The answer's status; 0 where no answer came (a refused or reset connection)."""
    try:
        return post_prediction(url, token, body, content_type)[0]
    except OSError:
        return 0


def _requests(kinds: tuple[str, ...]) -> list[tuple[bytes, str]]:
    """(body, content type) of one round of requests that TorchServe answers with the given status classes."""
    good = [(encode(noise(48, 64, seed), "PNG"), "image/png") for seed in range(2)]
    refused = [(case.body, case.content_type) for case in bad_inputs()
               if case.reason in ("not_an_image", "too_many_pixels", "truncated")]
    # a binary body declared as a form: TorchServe's frontend fails to decode it and answers 500
    failing = [(good[0][0], "application/x-www-form-urlencoded")]
    return [request for kind in kinds for request in {"2xx": good, "4xx": refused, "5xx": failing}[kind]]


class Traffic(threading.Thread):
    """Rounds of requests of the given kinds through the Service until stopped; the answers counted by status."""

    def __init__(self, release: Release, kinds: tuple[str, ...]):
        super().__init__(daemon=True)
        self.url, self.token = release.predictions, release.secret(f"{RELEASE}-auth", "token")
        self.requests = _requests(kinds)
        self.stop = threading.Event()
        self.statuses: Counter = Counter()

    def run(self) -> None:
        while not self.stop.is_set():
            for body, content_type in self.requests:
                self.statuses[_status(self.url, self.token, body, content_type)] += 1
            self.stop.wait(0.3)

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join(timeout=120)


def _positive(result: list[dict]) -> list[dict]:
    """The samples that are data under traffic: finite and above zero (not a 0/0 or an idle counter)."""
    return [r for r in result if math.isfinite(float(r["value"][1])) and float(r["value"][1]) > 0]


def test_the_operator_made_a_scrape_job_of_the_servicemonitor_and_the_pod_is_an_up_target(release, monitoring):
    jobs = {job["job_name"]: job for job in monitoring.generated_config()["scrape_configs"]}
    name = f"serviceMonitor/{NAMESPACE}/{RELEASE}/0"
    assert name in jobs, f"no scrape job {name} in the operator's configuration: {sorted(jobs)}"
    assert (jobs[name]["scrape_interval"], jobs[name]["metrics_path"]) == ("2s", "/metrics"), jobs[name]
    pod = release.serving_pod()
    wanted = {"job": RELEASE, "namespace": NAMESPACE, "service": RELEASE, "pod": pod, "container": "torchserve",
              "endpoint": "metrics"}
    target = monitoring.wait_for(
        lambda: [t for t in monitoring.targets() if t["labels"].items() >= wanted.items() and t["health"] == "up"],
        60, lambda: f"no up target labelled {wanted}: {[(t['labels'], t['health']) for t in monitoring.targets()]}")
    assert target[0]["scrapeUrl"].endswith(":8082/metrics"), target


def test_prometheus_loaded_every_alert_of_the_prometheusrule(release, monitoring):
    spec = release.kubectl_json("get", "prometheusrule", RELEASE)["spec"]
    written = {rule["alert"]: rule for group in spec["groups"] for rule in group["rules"]}
    file = f"{NAMESPACE}-{RELEASE}-"  # the operator names each rule file NAMESPACE-NAME-UID.yaml
    groups = monitoring.wait_for(lambda: [g for g in monitoring.rules() if file in g["file"]], 60,
                                 lambda: f"no rule file {file}*: {[g['file'] for g in monitoring.rules()]}")
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert sorted(loaded) == sorted(written)
    assert all(rule["health"] == "ok" for rule in loaded.values()), loaded
    assert loaded["SegflowServingErrors"]["duration"] == 4


def test_the_error_alert_fires_on_5xx_although_no_4xx_was_ever_counted(release, monitoring):
    """First in the module with traffic: the pod's Requests4XX counter does not exist yet."""
    with Traffic(release, ("2xx", "5xx")) as traffic:
        monitoring.wait_for(lambda: monitoring.alerts().get("SegflowServingErrors") == "firing", 120,
                            lambda: f"SegflowServingErrors did not fire: alerts {monitoring.alerts()}, "
                                    f"answers {dict(traffic.statuses)}")
        assert monitoring.query(f"Requests2XX{{{SELECTOR}}}") and monitoring.query(f"Requests5XX{{{SELECTOR}}}")
        assert not monitoring.query(f"Requests4XX{{{SELECTOR}}}"), "a 4xx was counted: the case is not the one meant"
        assert not monitoring.query(OLD_ERRORS), "the expression before the fix fires here too"
    assert set(traffic.statuses) == {200, 500}, traffic.statuses


def dashboard_queries(release: Release) -> dict[str, str]:
    """'panel / legend' -> PromQL of the installed dashboard, with Grafana's variables replaced as it would."""
    (text,) = release.kubectl_json("get", "configmap", f"{RELEASE}-dashboard")["data"].values()
    dashboard = json.loads(text)
    variables = {v["name"]: v["current"]["value"] for v in dashboard["templating"]["list"] if v["type"] == "query"}
    queries = {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", GRAFANA_RATE_INTERVAL)
            for name, value in variables.items():
                expr = expr.replace(f"${name}", value)
            queries[f"{panel['title']} / {target['legendFormat']}"] = expr
    return queries


def test_every_dashboard_query_returns_data_from_prometheus_and_the_kubelet(release, monitoring):
    queries = dashboard_queries(release)

    def without_data() -> dict[str, str]:
        return {title: expr for title, expr in queries.items() if not _positive(monitoring.query(expr))}

    with Traffic(release, ("2xx", "4xx", "5xx")):
        monitoring.wait_for(lambda: not without_data(), 90,
                            lambda: f"dashboard queries without a positive value: {without_data()}"
                                    f"{_unlabelled_cadvisor(monitoring)}")


def _unlabelled_cadvisor(monitoring) -> str:
    """Why the CPU and memory panels can be empty while cAdvisor is scraped: its series lack pod labels."""
    scraped = monitoring.query('container_cpu_usage_seconds_total{job="kubelet"}')
    if scraped and not monitoring.query(f'container_cpu_usage_seconds_total{{job="kubelet", namespace="{NAMESPACE}"}}'):
        return ("; cAdvisor reports cgroups without namespace/pod/container labels: the kubelet's cAdvisor could "
                "not reach containerd (the kubelet's --containerd flag must name the node's containerd socket)")
    return ""


# What each container's processes are checked for, inside the container (its own PID namespace).
PROCESSES = """
import glob, json
processes = {}
for path in glob.glob('/proc/[0-9]*/status'):
    try:
        fields = dict(line.split(':', 1) for line in open(path).read().splitlines())
    except OSError:
        continue
    processes[path.split('/')[2]] = [fields[k].split()[0] for k in ('Name', 'Uid', 'NoNewPrivs', 'CapEff')]
try:
    open('/segflow-write-check', 'w')
    root = 'writable'
except OSError as exc:
    root = exc.strerror
print(json.dumps({'processes': processes, 'root': root}))
"""


@pytest.mark.parametrize("container, main", [("torchserve", "java"), ("gateway", "nginx")])
def test_every_process_runs_as_uid_1000_without_privileges_on_a_read_only_root(release, container, main):
    seen = json.loads(release.node.kubectl("-n", NAMESPACE, "exec", release.serving_pod(), "-c", container, "--",
                                           "python", "-c", PROCESSES).stdout)
    processes = seen["processes"].values()
    assert main in {name for name, *_ in processes}, seen
    assert all((uid, no_new_privs, caps) == ("1000", "1", "0" * 16) for _, uid, no_new_privs, caps in processes), seen
    assert seen["root"] == "Read-only file system", seen


def test_the_down_alert_fires_once_the_deployment_is_scaled_to_0(release, monitoring):
    """Last in the module: the release serves no more."""
    assert monitoring.alerts().get("SegflowServingDown") is None, monitoring.alerts()
    release.node.kubectl("-n", NAMESPACE, "scale", f"deployment/{RELEASE}", "--replicas=0")
    monitoring.wait_for(lambda: monitoring.alerts().get("SegflowServingDown") == "firing", 120,
                        lambda: f"SegflowServingDown did not fire: alerts {monitoring.alerts()}")
