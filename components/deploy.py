"""deploy step: the packaged archive goes live on a running TorchServe, or the `helm upgrade` for it is emitted."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from segflow.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def deploy(archive: Input[Artifact], management_url: str, release: Output[Artifact]) -> str:
    """Returns the archive URI that went live, or that the logged `helm upgrade` command serves.

    TorchServe's management URL is `management_url`, else SEGFLOW_TORCHSERVE_MANAGEMENT_URL (in a
    cluster: from the Secret named by `segflow pipeline compile --torchserve-secret`); its management
    key is SEGFLOW_TORCHSERVE_MANAGEMENT_KEY.
    With a URL, the archive is registered as a new model version and made the default (no restart);
    the .mar is staged in `release` for TorchServe to download. Without one, the step logs the exact
    `helm upgrade` and records it in release.metadata.
    """
    from segflow.components._steps import release_archive

    return release_archive(archive, management_url, release)
