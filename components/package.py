"""package step: a trained model -> a TorchServe archive (.mar) published with its sha256."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from segflow.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def package(model: Input[Model], archive: Output[Artifact]) -> str:
    """Returns the archive's sha256 (also in archive.metadata with the model name and version)."""
    from segflow.layout import ModelRecord
    from segflow.serving.archive import package as build_archive

    built = build_archive(ModelRecord.from_metadata(model.metadata).uri, archive.path)
    archive.metadata.update({"name": built.manifest["name"], "version": built.version,
                             "mar": f"{built.version}/{built.manifest['mar']}",
                             "mar_sha256": built.manifest["mar_sha256"]})
    return built.manifest["mar_sha256"]
