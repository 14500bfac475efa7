"""`segflow deploy`: a packaged archive version goes live on a running TorchServe, without a restart.

    1. the archive's .mar is fetched and its sha256 checked against the manifest (as `segflow serve` does);
    2. it is staged as STAGING/NAME-<archive version>.mar, at a URL TorchServe can download from:
       a file:// URL for a local folder, a presigned GET for S3/MinIO (the cluster);
    3. TorchServe's management API registers it as version <model version> of NAME (TorchServe
       names the copy in its model store by the URL's last path segment, so each archive version
       needs a name of its own) and starts its worker;
    4. that version becomes the default: /predictions/NAME answers with it from the next request,
       while the earlier versions stay registered for a rollback (`segflow deploy` of an older archive).

A version TorchServe already has (same model version, i.e. the same weights) is not registered
again, only made the default: deploying twice, or rolling back, is one cheap call.

Without a TorchServe to talk to, `helm_command` gives the `helm upgrade` that points the chart at
the archive instead. That is how versions go live with the chart (charts/segflow): its replicas
fetch the archive at start and expose no management API, so a rollout replaces the pods.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from segflow.serving.archive import resolve_archive
from segflow.serving.management import ManagementClient
from segflow.store import open_store, read_manifest

HELM_RELEASE, HELM_CHART, HELM_NAMESPACE = "segflow", "charts/segflow", "segflow"  # as docs/deploy.md installs it
# The chart's values that select the served archive: its URI and the version id to pin.
HELM_ARCHIVE_URI, HELM_ARCHIVE_VERSION = "model.archiveUri", "model.archiveVersion"
STAGED_URL_EXPIRY_S = 3600
# Where TorchServe's management API is and its key, as the environment gives them (in a cluster: a Secret).
MANAGEMENT_URL_ENV = "SEGFLOW_TORCHSERVE_MANAGEMENT_URL"
MANAGEMENT_KEY_ENV = "SEGFLOW_TORCHSERVE_MANAGEMENT_KEY"


@dataclass(frozen=True)
class Deployment:
    name: str
    version: str  # TorchServe's model version: the model artifact's version (the weights' hash)
    archive_uri: str
    archive_version: str
    previous: str | None  # the default version before this deployment, None if the model was new
    registered: bool  # False when TorchServe already had this version and it was only made the default
    message: str


def deploy(archive_uri: str, management_url: str, token: str | None, staging_uri: str) -> Deployment:
    """Make the latest version of `archive_uri` the live version of its model on TorchServe."""
    client = ManagementClient(management_url, token)
    archive_version, manifest = read_manifest(open_store(archive_uri))
    name, version = manifest["name"], manifest["model"]["version"]
    previous = client.default_version(name)
    registered = version not in {v.version for v in client.versions(name)}
    if registered:
        url = stage(archive_uri, staging_uri, f"{name}-{archive_version}.mar")
        client.register(url)
    message = client.set_default(name, version)
    return Deployment(name, version, archive_uri, archive_version, previous, registered, message)


def default_staging_uri(archive_uri: str) -> str:
    """`deploy/` beside the archive artifact: runs/x/archive -> runs/x/deploy."""
    stripped = archive_uri.rstrip("/")
    parent = stripped.rpartition("/")[0]
    if parent.endswith(":/"):  # an archive at a bucket's root: s3://bucket -> s3://bucket/deploy
        return f"{stripped}/deploy"
    return f"{parent}/deploy" if parent else "deploy"


def stage(archive_uri: str, staging_uri: str, file_name: str) -> str:
    """Copy the verified .mar to STAGING/FILE_NAME and return the URL TorchServe downloads it from."""
    staging = open_store(staging_uri)
    with tempfile.TemporaryDirectory(prefix="segflow-deploy-") as tmp:
        mar, _ = resolve_archive(archive_uri, Path(tmp))  # refuses an archive whose sha256 changed
        staging.put_file(file_name, mar)
    return staging.fetch_url(file_name, STAGED_URL_EXPIRY_S)


def helm_command(archive_uri: str, archive_version: str) -> str:
    """The `helm upgrade` that makes the chart serve this archive version."""
    return (f"helm upgrade {HELM_RELEASE} {HELM_CHART} -n {HELM_NAMESPACE} --reuse-values "
            f"--set {HELM_ARCHIVE_URI}={archive_uri} --set {HELM_ARCHIVE_VERSION}={archive_version}")
