"""Plain functions behind the components: what each step does, testable without KFP.

Component bodies are shipped to the cluster as source code, so they stay a few lines that
import from here (installed in the segflow image) and move artifacts in and out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from segflow.config import with_overrides
from segflow.config.recipe import Recipe
from segflow.evaluate import to_html
from segflow.evaluate.metrics import QUALITY, scalars
from segflow.layout import EVAL, RUN, ModelRecord
from segflow.progress import SILENT
from segflow.store import download_tree, open_store


def train_locally(recipe: Recipe, overrides: dict[str, Any], dataset, run) -> ModelRecord:
    """Train `recipe` (with overrides) on the Dataset artifact's folder into the Model artifact `run`'s folder."""
    from segflow.train import train

    outcome = train(with_overrides(recipe, overrides) if overrides else recipe, run.path, dataset_uri=dataset.path,
                    progress=SILENT)
    return outcome.record


def train_in_cluster(recipe: Recipe, overrides: dict[str, Any], dataset, run) -> ModelRecord:
    """Train as a KubeRay RayJob, which reads and writes the artifacts' object-store URIs; the evaluation is
    copied back so the step can publish it."""
    from segflow.components.rayjob import to_s3, train_on_cluster

    result = train_on_cluster(with_overrides(recipe, overrides) if overrides else recipe, dataset.uri, run.uri)
    download_tree(open_store(to_s3(run.uri)), RUN.eval.root, Path(run.path) / RUN.eval.root)
    return result


def publish_evaluation(eval_dir: Path, metrics, report, report_md: Path | None = None) -> float:
    """Log an evaluation's scalars to a KFP Metrics artifact, write the HTML report, return quality.

    The HTML is eval_dir/report.md, or `report_md` (a search or distillation report whose figures are
    the evaluation's).
    """
    values = json.loads((eval_dir / EVAL.metrics).read_text())
    for key, value in scalars(values).items():
        metrics.log_metric(key, value)
    markdown = (report_md or eval_dir / EVAL.report).read_text()
    Path(report.path).write_text(to_html(markdown, eval_dir / EVAL.figures, report_md.parent if report_md else None))
    task = "segmentation" if "miou" in values else "classification"
    return float(values[QUALITY[task]])


def store_uri(artifact) -> str:
    """Where segflow's store reaches an artifact: its object-store URI in a cluster, its folder under kfp.local."""
    if urlparse(artifact.uri).scheme in ("minio", "s3"):
        from segflow.components.rayjob import to_s3

        return to_s3(artifact.uri)
    return artifact.path


def release_archive(archive, management_url: str, release) -> str:
    """Make the archive live: upgrade the Helm release named at compile time, else register it on TorchServe
    when a management URL is known, else log the `helm upgrade` for it."""
    from segflow.serving.deploy import MANAGEMENT_URL_ENV
    from segflow.serving.release import RELEASE_ENV

    archive_uri = store_uri(archive)
    url = management_url or os.environ.get(MANAGEMENT_URL_ENV, "")
    Path(release.path).mkdir(parents=True, exist_ok=True)
    if os.environ.get(RELEASE_ENV):
        _upgrade_release(archive_uri, archive.metadata["version"], release)
    elif url:
        _register_on_torchserve(archive_uri, url, release)
    else:
        from segflow.serving.deploy import helm_command

        command = helm_command(archive_uri, archive.metadata["version"])
        print(f"no Helm release ({RELEASE_ENV}) nor TorchServe management URL ({MANAGEMENT_URL_ENV}); serve this "
              f"archive with:\n{command}")
        release.metadata.update({"mode": "helm", "helm_command": command})
    release.metadata["archive_uri"] = archive_uri
    (Path(release.path) / "release.json").write_text(json.dumps(release.metadata, indent=2))
    return archive_uri


def _upgrade_release(archive_uri: str, archive_version: str, release) -> None:
    """`helm upgrade` of the release SEGFLOW_HELM_RELEASE in SEGFLOW_HELM_NAMESPACE, else the step's own namespace."""
    from segflow.errors import ServingError
    from segflow.serving.release import NAMESPACE_ENV, RELEASE_ENV, upgrade_release

    name = os.environ[RELEASE_ENV]
    namespace = os.environ.get(NAMESPACE_ENV) or os.environ.get("SEGFLOW_NAMESPACE", "")
    if not namespace:
        raise ServingError(f"{RELEASE_ENV}={name} names no namespace: set {NAMESPACE_ENV}, or compile with "
                           f"--helm-release {name}/NAMESPACE (in a cluster the step's own namespace is the default)")
    done = upgrade_release(archive_uri, archive_version, name, namespace)
    print(f"Helm release {namespace}/{name} revision {done.revision} ({done.status}) serves archive version "
          f"{archive_version} (before: {done.previous_version or 'the latest'} of {done.previous_uri})")
    release.metadata.update({"mode": "helm-release", "release": name, "namespace": namespace,
                             "revision": done.revision, "status": done.status,
                             "previous_version": done.previous_version, "previous_uri": done.previous_uri})


def _register_on_torchserve(archive_uri: str, url: str, release) -> None:
    from segflow.serving.deploy import MANAGEMENT_KEY_ENV, deploy

    done = deploy(archive_uri, url, os.environ.get(MANAGEMENT_KEY_ENV), store_uri(release))
    print(f"{done.name} version {done.version} is live on {url} (default before: {done.previous or 'none'})")
    release.metadata.update({"mode": "torchserve", "management_url": url, "name": done.name,
                             "version": done.version, "previous": done.previous or "",
                             "registered": done.registered})
