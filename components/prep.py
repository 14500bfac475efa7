"""prep step: the recipe's raw data (or the synthetic set) -> a versioned Dataset artifact."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from segflow.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def prep(recipe_json: str, data_path: str, dataset: Output[Dataset]) -> str:
    """Returns the dataset version (its content hash). `data_path`: a folder in the step's container, or the raw
    dataset uploaded to object storage (s3:// or KFP's minio:// URI); empty for the synthetic recipe."""
    import json

    from segflow.config import parse_recipe
    from segflow.data import prep as run_prep
    from segflow.progress import SILENT

    recipe = parse_recipe(json.loads(recipe_json), "pipeline recipe")
    result = run_prep(recipe, data_path or None, dataset.path, progress=SILENT)
    dataset.metadata.update({
        "version": result.version,
        "dataset_hash": result.manifest.dataset_hash,
        "format": result.manifest.format,
        "samples": {split: stats.samples for split, stats in result.manifest.splits.items()},
    })
    return result.version
