"""deploy step: the packaged archive goes live (the chart's Helm release upgraded, or a running TorchServe), or the
`helm upgrade` for it is emitted."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from segflow.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def deploy(archive: Input[Artifact], management_url: str, release: Output[Artifact]) -> str:
    """Returns the archive URI that went live, or that the logged `helm upgrade` command serves.

    With SEGFLOW_HELM_RELEASE (`segflow pipeline compile --helm-release NAME[/NAMESPACE]`), the step upgrades
    that release of charts/segflow to the archive's version and waits for the rollout; a rollout that fails
    is rolled back by Helm (the previous version keeps serving) and fails the step. release.metadata records
    mode "helm-release", the revision, the namespace and the previous version.
    Otherwise TorchServe's management URL is `management_url`, else SEGFLOW_TORCHSERVE_MANAGEMENT_URL (in a
    cluster: from the Secret named by `segflow pipeline compile --torchserve-secret`); its management
    key is SEGFLOW_TORCHSERVE_MANAGEMENT_KEY.
    With a URL, the archive is registered as a new model version and made the default (no restart);
    the .mar is staged in `release` for TorchServe to download. Without one, the step logs the exact
    `helm upgrade` and records it in release.metadata.
    """
    from segflow.components._steps import release_archive

    return release_archive(archive, management_url, release)
