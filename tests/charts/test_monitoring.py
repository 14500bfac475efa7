"""The chart's pod, run as rendered, serves a segflow model; Prometheus scrapes it with the chart's rules.

No cluster runs here, so the kubelet's part is played by tests/support/pod.py: the rendered
Deployment's containers start from their own specs (command, env, volumes, security context) in
private mount namespaces with a read-only root, as uid 1000:

    fetch-model (init)  downloads the archive from a real S3 server (MinIO) and checks its sha256
    torchserve          TorchServe with the chart's config.properties and metrics.yaml
    gateway             Debian's nginx with the chart's nginx.conf and token template; the nginx
                        image's entrypoint is reduced to what it does for the chart (envsubst of
                        the templates, then nginx), since no image runs here

Then a real Prometheus scrapes TorchServe with the job prometheus-operator would build from the
chart's ServiceMonitor, loads the chart's PrometheusRule, and a cAdvisor stand-in serves the
containers' real CPU and memory (tests/support/cadvisor.py). Values differ from the defaults only
where a laptop needs it: free loopback ports, 1 s scrapes and `for:` durations of seconds, so the
down alert fires within seconds rather than minutes. Dashboard queries have Grafana's
$__rate_interval replaced by 10s and their variables by the values the dashboard defaults to.
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from segflow.serving.client import InferenceClient
from support import cadvisor
from support.helm import find, render_objects
from support.net import free_port, wait_for_port
from support.pod import Pod, namespaces_available
from support.prometheus import Prometheus, scrape_job
from support.serving import bad_inputs, encode, noise, save_tiny_segmenter, web_form

pytestmark = pytest.mark.slow
NAMESPACE, POD = "segflow", "segflow-6c9f8d7b5-q2x7k"
S3_SECRET = "segflow-minio"
# The nginx image's 20-envsubst-on-templates.sh, reduced to its effect for this chart.
NGINX_ENTRYPOINT = ("filter=$NGINX_ENVSUBST_FILTER; "
                    "names=$(awk 'END { for (n in ENVIRON) if (n ~ ENVIRON[\"NGINX_ENVSUBST_FILTER\"]) print n }' "
                    "</dev/null); "
                    "vars=$(for n in $names; do printf '${%s} ' \"$n\"; done); "
                    "for t in /etc/nginx/templates/*.template; do "
                    "envsubst \"$vars\" < \"$t\" > \"/etc/nginx/conf.d/$(basename \"$t\" .template)\"; done; "
                    "exec nginx -g 'daemon off;'")


@dataclass
class Release:
    pod: Pod
    objects: list[dict]
    gateway: str
    token: str
    prometheus: Prometheus
    torchserve: object  # the container's process
    logs: Path

    @property
    def predictions(self) -> str:
        return f"{self.gateway}/predictions/tiny"


def _missing() -> str | None:
    for tool, how in (("java", "openjdk-17-jre-headless"), ("prometheus", "prometheus"), ("nginx", "nginx")):
        if shutil.which(tool) is None:
            return f"no {tool} on PATH; install it (apt-get install -y {how})"
    return namespaces_available()


@pytest.fixture(scope="module")
def release(tmp_path_factory, s3_server):
    if reason := _missing():
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("release")
    ports = {k: free_port() for k in ("inference", "management", "metrics", "grpcInference", "grpcManagement")}
    gateway, web = free_port(), free_port()
    bucket = "chart-e2e"
    values = {
        "model": {"name": "tiny", "archiveUri": f"s3://{bucket}/tiny/archive"},
        "s3": {"endpoint": s3_server.endpoint, "existingSecret": S3_SECRET},
        "listenAddress": "127.0.0.1",
        "torchserve": {"ports": ports},
        "gateway": {"port": gateway},
        "service": {"port": gateway, "metricsPort": ports["metrics"]},
        "web": {"enabled": True, "port": web},
        "serviceMonitor": {"interval": "1s", "scrapeTimeout": "1s"},
        # 3 failed 1 s scrapes in a row, so one slow scrape on a busy machine is not an outage
        "prometheusRule": {"for": {"down": "3s", "errors": "1s", "latency": "1s", "queue": "1s"}},
    }
    objects = render_objects(values) + [_s3_secret(s3_server)]
    _publish_tiny_archive(s3_server, bucket, root)
    deployment = find(objects, "Deployment", "segflow")
    template = deployment["spec"]["template"]
    pod = Pod({**template["spec"], "hostname": POD}, objects, root / "pod")
    logs = root / "logs"
    logs.mkdir()
    kubelet_port = free_port()
    kubelet, prometheus = None, None
    try:
        fetched = pod.run("fetch-model", logs / "fetch-model.log", timeout=180)
        assert fetched == 0, (logs / "fetch-model.log").read_text()
        torchserve = pod.start("torchserve", logs / "torchserve.log")
        nginx = pod.start("gateway", logs / "gateway.log", command=["sh", "-ec", NGINX_ENTRYPOINT])
        _wait_ready(pod, torchserve, nginx, logs)
        kubelet = cadvisor.serve({(NAMESPACE, POD, "torchserve"): torchserve.pid,
                                  (NAMESPACE, POD, "gateway"): nginx.pid}, kubelet_port)
        prometheus = _prometheus(root / "prometheus", objects, template, ports["metrics"], kubelet_port)
        token = base64.b64decode(find(objects, "Secret", "segflow-auth")["data"]["token"]).decode()
        yield Release(pod, objects, f"http://127.0.0.1:{gateway}", token, prometheus, torchserve, logs)
    finally:
        if prometheus:
            prometheus.stop()
        if kubelet:
            kubelet.shutdown()
        pod.stop()


def _prometheus(root: Path, objects: list[dict], template: dict, metrics_port: int, kubelet_port: int) -> Prometheus:
    """Prometheus with the ServiceMonitor's job for the pod, the cAdvisor stand-in and the PrometheusRule."""
    pod = {"metadata": {"name": POD, **template["metadata"]}, "spec": template["spec"]}
    scrape = scrape_job(find(objects, "ServiceMonitor"), find(objects, "Service", "segflow"), pod, "torchserve",
                        f"127.0.0.1:{metrics_port}")
    kubelet = {"job_name": "kubelet", "honor_labels": True, "metrics_path": "/metrics",
               "static_configs": [{"targets": [f"127.0.0.1:{kubelet_port}"]}]}
    return Prometheus(root, [scrape, kubelet], find(objects, "PrometheusRule")["spec"]["groups"]).start()


def _s3_secret(s3_server) -> dict:
    """The Secret the chart expects to exist (k8s/ and the RayJob use the same one)."""
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in
               (("accesskey", s3_server.access_key), ("secretkey", s3_server.secret_key))}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": S3_SECRET, "namespace": NAMESPACE},
            "data": encoded}


def _publish_tiny_archive(s3_server, bucket: str, root: Path) -> None:
    """A tiny U-Net packaged as `tiny` into s3://BUCKET/tiny/archive, as `segflow package --out` would."""
    from minio import Minio

    from segflow.serving.archive import package

    client = Minio(s3_server.endpoint.removeprefix("http://"), access_key=s3_server.access_key,
                   secret_key=s3_server.secret_key, secure=False)
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    save_tiny_segmenter(str(root / "model"), {"batch_size": 4, "max_batch_delay_ms": 20})
    with pytest.MonkeyPatch.context() as env:
        for key, value in s3_server.env().items():
            env.setenv(key, value)
        package(str(root / "model"), f"s3://{bucket}/tiny/archive", name="tiny")


def _wait_ready(pod: Pod, torchserve, nginx, logs: Path, timeout: float = 240) -> None:
    """The torchserve container's startup probe, run as the kubelet runs it (an exec in the container)."""
    probe = pod.container("torchserve")["startupProbe"]["exec"]["command"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in (("torchserve", torchserve), ("gateway", nginx)):
            if process.poll() is not None:
                pytest.fail(f"the {name} container exited with {process.returncode}:\n"
                            f"{(logs / f'{name}.log').read_text()[-3000:]}")
        if pod.run("torchserve", logs / "probe.log", timeout=30, command=probe) == 0:
            return
        time.sleep(1)
    pytest.fail(f"the startup probe did not pass within {timeout:.0f} s:\n{(logs / 'probe.log').read_text()[-2000:]}\n"
                f"{(logs / 'torchserve.log').read_text()[-3000:]}")


def _get(url: str, headers: dict | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def _post(url: str, body: bytes, headers: dict) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_init_container_fetched_the_archive_and_checked_its_sha256(release):
    log = (release.logs / "fetch-model.log").read_text()
    assert "fetched tiny.mar" in log and "verified" in log, log
    assert (release.pod.volume_dirs["models"] / "tiny.mar").is_file()


def test_containers_run_as_the_chart_says_read_only_root_uid_1000_no_new_privileges(release):
    status = dict(line.split(":", 1) for line in Path(f"/proc/{_java_pid(release)}/status").read_text().splitlines())
    assert status["Uid"].split()[0] == "1000" and status["NoNewPrivs"].strip() == "1"
    assert status["CapEff"].strip() == "0" * 16
    assert (release.pod.volume_dirs["logs"] / "ts_log.log").is_file()  # TorchServe wrote only into its volumes
    assert (release.pod.volume_dirs["tmp"] / ".model_server.pid").is_file()


def _java_pid(release: Release) -> int:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes()
        except OSError:
            continue
        if b"org.pytorch.serve.ModelServer" in text and os.getpgid(int(cmdline.parent.name)) == release.torchserve.pid:
            return int(cmdline.parent.name)
    raise AssertionError("no TorchServe frontend in the torchserve container")


def test_the_gateway_admits_only_the_token_and_answers_ping_for_probes(release):
    image = encode(noise(40, 50), "PNG")
    assert _post(release.predictions, image, {"Content-Type": "image/png"}) == 401
    assert _post(release.predictions, image, {"Content-Type": "image/png", "Authorization": "Bearer wrong"}) == 401
    status, text = _get(f"{release.gateway}/predictions/tiny")
    assert status == 401 and json.loads(text)["type"] == "InvalidKeyException"
    with InferenceClient(release.predictions, release.token) as client:
        answer = client.predict(image, "json")
    assert answer.json()["width"] == 50
    status, text = _get(f"{release.gateway}/ping")  # no token: the kubelet's probes have none
    assert status == 200 and json.loads(text)["status"] == "Healthy"


def test_helm_test_pod_sends_an_image_through_the_service_and_passes(release, tmp_path):
    test_pod = find(release.objects, "Pod")
    service = f"{find(release.objects, 'Service', 'segflow')['metadata']['name']}.{NAMESPACE}.svc"
    pod = Pod(test_pod["spec"], release.objects, tmp_path / "pod", hosts={service: "127.0.0.1"})
    (name,) = [c["name"] for c in test_pod["spec"]["containers"]]
    try:
        status = pod.run(name, tmp_path / "test.log", timeout=120)
    finally:
        pod.stop()
    output = (tmp_path / "test.log").read_text()
    assert status == 0 and "ok: http://segflow.segflow.svc" in output, output


def test_the_web_page_pod_sends_an_image_through_the_service_with_the_secrets_token(release, tmp_path):
    """The chart's web pod as rendered (uid 1000, read-only root, token by secretKeyRef) in front of the gateway."""
    spec = find(release.objects, "Deployment", "segflow-web")["spec"]["template"]["spec"]
    pod = Pod(spec, release.objects, tmp_path / "pod", hosts={f"segflow.{NAMESPACE}.svc": "127.0.0.1"})
    page = f"http://127.0.0.1:{spec['containers'][0]['ports'][0]['containerPort']}"
    body, content_type = web_form("tile.png", encode(noise(60, 80), "PNG"), "overlay")
    try:
        web = pod.start("web", tmp_path / "web.log")
        wait_for_port(int(page.rsplit(":", 1)[1]), web, timeout=120)
        request = urllib.request.Request(f"{page}/api/predict", data=body, headers={"Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = response.read().decode()
        health = _get(f"{page}/healthz")  # the pod's probes
    finally:
        pod.stop()
    result = json.loads(answer)
    assert result["model"] == "tiny" and result["image"].startswith("data:image/png;base64,"), answer[:300]
    assert {c["name"] for c in result["classes"]} <= {"background", "square", "disc"} and result["classes"]
    assert health[0] == 200 and release.token not in answer


def dashboard_queries(objects: list[dict]) -> dict[str, str]:
    """'panel / legend' -> PromQL, with the dashboard's variables at their defaults."""
    (text,) = find(objects, "ConfigMap", "segflow-dashboard")["data"].values()
    dashboard = json.loads(text)
    variables = {v["name"]: v["current"]["value"] for v in dashboard["templating"]["list"] if v["type"] == "query"}
    queries = {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "10s")
            for name, value in variables.items():
                expr = expr.replace(f"${name}", value)
            queries[f"{panel['title']} / {target['legendFormat']}"] = expr
    return queries


def test_every_dashboard_query_returns_data(release):
    stop = threading.Event()
    traffic = threading.Thread(target=_traffic, args=(release, stop), daemon=True)
    traffic.start()
    try:
        for title, expr in dashboard_queries(release.objects).items():
            release.prometheus.wait_for(lambda e=expr: _positive(release.prometheus.query(e)), 60,
                                        f"dashboard query {title!r} returned no positive value: {expr}")
    finally:
        stop.set()
        traffic.join(timeout=60)


def _positive(result: list[dict]) -> list[dict]:
    """The samples that are data under the traffic above: finite and above zero (not a 0/0 or an idle counter)."""
    return [r for r in result if math.isfinite(float(r["value"][1])) and float(r["value"][1]) > 0]


def _traffic(release: Release, stop: threading.Event) -> None:
    """Requests of every kind the dashboard shows: good ones (batched), refused inputs (4xx), and a 5xx."""
    auth = {"Authorization": f"Bearer {release.token}"}
    bad = [case for case in bad_inputs() if case.reason in ("not_an_image", "too_many_pixels", "truncated")]
    images = [encode(noise(48, 64, seed), "PNG") for seed in range(4)]
    while not stop.is_set():
        png = {**auth, "Content-Type": "image/png"}
        threads = [threading.Thread(target=_post, args=(release.predictions, image, png)) for image in images]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for case in bad:
            _post(release.predictions, case.body, {**auth, "Content-Type": case.content_type})
        # a binary body declared as a form: TorchServe's frontend fails to decode it and answers 500
        _post(release.predictions, images[0], {**auth, "Content-Type": "application/x-www-form-urlencoded"})
        stop.wait(0.5)


def test_the_down_alert_fires_after_torchserve_is_stopped_by_its_prestop_hook(release):
    """Last in the module: it stops TorchServe the way the pod's termination would."""
    prometheus = release.prometheus
    prometheus.wait_for(lambda: prometheus.query('up{job="segflow"} == 1'), 30, "the metrics target never came up")
    prometheus.wait_for(lambda: prometheus.alerts().get("SegflowServingDown") != "firing", 30,
                        "SegflowServingDown fires while TorchServe is serving")
    container = release.pod.container("torchserve")
    hook = container["lifecycle"]["preStop"]["exec"]["command"]
    assert release.pod.run("torchserve", release.logs / "prestop.log", timeout=120, command=hook) == 0, \
        (release.logs / "prestop.log").read_text()
    assert release.torchserve.wait(timeout=60) is not None  # the launcher exits when its frontend stops
    firing = prometheus.wait_for(lambda: prometheus.alerts().get("SegflowServingDown") == "firing", 60,
                                 f"SegflowServingDown did not fire; alerts: {prometheus.alerts()}")
    assert firing
    assert prometheus.alerts().get("SegflowServingPodDown") == "firing"
    assert _get(f"{release.gateway}/ping")[0] == 502  # the gateway stays up and says its upstream is gone
