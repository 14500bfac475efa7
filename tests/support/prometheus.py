"""A real Prometheus (Debian's package) as a local process, with the scrape jobs and rule files a test gives.

`scrape_job` turns a rendered ServiceMonitor into the scrape job prometheus-operator would
generate for one pod behind the selected Service: the same path, interval and target labels
(job = the Service's name, namespace, service, pod, container, endpoint), so rules and dashboard
queries written against those labels are checked as they will run in the cluster.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from support.net import free_port, wait_for_port


def binary(name: str = "prometheus") -> str | None:
    return shutil.which(name)


def scrape_job(monitor: dict, service: dict, pod: dict, container: str, target: str) -> dict:
    """The scrape job for `pod`'s `container` behind `service`, as prometheus-operator builds it from `monitor`.

    Fails (AssertionError) where the operator would find no target: a selector that does not
    match the Service, a port name the Service lacks, a targetPort the container does not expose.
    """
    spec = monitor["spec"]
    namespace = service["metadata"]["namespace"]
    assert namespace in spec["namespaceSelector"]["matchNames"], "the ServiceMonitor looks in another namespace"
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items(), \
        "the ServiceMonitor's selector does not match the Service's labels"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items(), "the Service selects no pod"
    (endpoint,) = spec["endpoints"]
    port = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert any(p.get("name") == port["targetPort"] for p in containers[container].get("ports", [])), \
        f"the Service's {endpoint['port']} port targets {port['targetPort']}, which {container} does not expose"
    labels = {"namespace": namespace, "service": service["metadata"]["name"], "pod": pod["metadata"]["name"],
              "container": container, "endpoint": endpoint["port"]}
    return {"job_name": service["metadata"]["name"], "metrics_path": endpoint.get("path", "/metrics"),
            "scheme": endpoint.get("scheme", "http"), "scrape_interval": endpoint["interval"],
            "scrape_timeout": endpoint["scrapeTimeout"], "static_configs": [{"targets": [target], "labels": labels}]}


class Prometheus:
    """prometheus --config.file=... on a free loopback port; stop() always ends it."""

    def __init__(self, root: Path, scrape_configs: list[dict], rules: list[dict], interval: str = "1s"):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        (root / "rules.yaml").write_text(yaml.safe_dump({"groups": rules}, sort_keys=False))
        config = {"global": {"scrape_interval": interval, "evaluation_interval": interval},
                  "rule_files": [str(root / "rules.yaml")], "scrape_configs": scrape_configs}
        (root / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> Prometheus:
        self._log = open(self.root / "prometheus.log", "w")
        self.process = subprocess.Popen(
            [binary(), f"--config.file={self.root / 'prometheus.yml'}", f"--storage.tsdb.path={self.root / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, self.process)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self._log.close()
            self.process = None

    def _get(self, path: str, params: dict | None = None) -> dict:
        url = f"{self.url}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            return json.load(exc)

    def query(self, expr: str) -> list[dict]:
        """The instant vector `expr` gives now; a bad query raises with Prometheus' message."""
        answer = self._get("/api/v1/query", {"query": expr})
        if answer["status"] != "success":
            raise ValueError(f"{expr}: {answer.get('error')}")
        return answer["data"]["result"]

    def alerts(self) -> dict[str, str]:
        """alertname -> state (pending, firing) of the active alerts."""
        return {a["labels"]["alertname"]: a["state"] for a in self._get("/api/v1/alerts")["data"]["alerts"]}

    def targets(self) -> list[dict]:
        return self._get("/api/v1/targets")["data"]["activeTargets"]

    def wait_for(self, check, timeout: float, what: str):
        """Poll `check()` every 0.5 s until it returns something truthy; fail with `what` after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            time.sleep(0.5)
        raise AssertionError(f"after {timeout:.0f} s: {what}")
