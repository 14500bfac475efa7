"""charts/segflow rendered with the Helm SDK (helm-python-sdk), as `helm template` renders it: no cluster.

Rendering merges the values with the chart's defaults and checks them against
values.schema.json first, so invalid values raise here exactly where `helm install` refuses them.
"""

from __future__ import annotations

import functools
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "segflow"
RELEASE = NAMESPACE = "segflow"
# Every supported shape of values: rendered and validated offline (test_render), applied to a real API server
# (test_apiserver).
VALUE_SETS = {
    "default": {},
    "gpu": {"gpu": {"enabled": True, "count": 2}, "tolerations": [{"key": "dedicated", "operator": "Equal",
                                                                      "value": "ml", "effect": "NoSchedule"}]},
    "hpa_cpu": {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6}},
    "hpa_requests": {"autoscaling": {"enabled": True, "metric": "requests", "targetRequestsPerSecond": 25}},
    "minio": {"minio": {"enabled": True, "persistence": {"enabled": True, "storageClass": "standard"}}},
    "ingress": {"ingress": {"enabled": True, "className": "nginx",
                            "tls": [{"secretName": "segflow-tls", "hosts": ["segflow.example.com"]}]}},
    "own_secrets_and_peers": {"auth": {"existingSecret": "segflow-token"}, "model": {"archiveVersion": "3f2a9c01"},
                              "networkPolicy": {"inferenceFrom": [
                                  {"namespaceSelector": {"matchLabels": {"team": "apps"}}}]}},
    "web": {"web": {"enabled": True, "replicaCount": 2},
            "networkPolicy": {"inferenceFrom": [{"namespaceSelector": {"matchLabels": {"team": "apps"}}}],
                              "webFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name":
                                                                                 "ingress-nginx"}}}]}},
    "no_monitoring": {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False},
                      "dashboard": {"enabled": False}, "networkPolicy": {"enabled": False},
                      "podDisruptionBudget": {"enabled": False}},
}


@functools.cache
def chart():
    import helm_python

    return helm_python.Chart.load(CHART)


def render(values: dict | None = None, release: str = RELEASE, namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path (relative to the chart) -> rendered text, empty templates left out."""
    rendered = chart().render(values or {}, name=release, namespace=namespace, is_install=True)
    return {path.split("/", 1)[1]: text for path, text in rendered.items() if text.strip()}


def render_objects(values: dict | None = None, release: str = RELEASE, namespace: str = NAMESPACE) -> list[dict]:
    """Every object the release creates (hooks and the test pod included), namespaced as an install does."""
    objects = []
    for path, text in render(values, release, namespace).items():
        if path.endswith(".txt"):
            continue
        for obj in yaml.safe_load_all(text):
            if obj:
                obj["metadata"].setdefault("namespace", namespace)
                objects.append(obj)
    return objects


def find(objects: list[dict], kind: str, name: str | None = None) -> dict:
    """The one object of `kind` (and `name`, when several)."""
    matches = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    kinds = [o["kind"] for o in objects]
    assert len(matches) == 1, f"{len(matches)} {kind} objects named {name or 'anything'} in {kinds}"
    return matches[0]


def helm_cli(kubeconfig: Path, *args: str, values: dict | None = None, timeout: float = 600) -> str:
    """The helm command (Helm 4, built from its Go module by gobuild.helm()) as an admin types it; its output.

    Releases a person installs this way are owned by field manager "helm", which is what the pipeline's
    deploy step has to live with (segflow.serving.release); the Helm SDK in the test process would be "python".
    VALUES, when given, go in as a `-f` file.
    """
    import subprocess
    import tempfile

    from support import gobuild
    from support.real import unavailable

    built = gobuild.helm()
    if not built.ok:
        unavailable(f"no helm command: {built.error.splitlines()[0]}")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump(values or {}, file)
        file.flush()
        result = subprocess.run([str(built.binaries["helm"]), "--kubeconfig", str(kubeconfig), *args,
                                 *(["-f", file.name] if values is not None else [])],
                                capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result.stdout
