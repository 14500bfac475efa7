"""nas step: a DARTS architecture search (NNI), the chosen cells retrained from scratch -> Model, Metrics, HTML."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from segflow.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def nas(recipe_json: str, dataset: Input[Dataset], search_epochs: int, space_json: str,
        run: Output[Model], metrics: Output[Metrics], report: Output[HTML]) -> float:
    """Returns the retrained model's quality metric (mIoU or accuracy).

    `search_epochs` 0 keeps the recipe's search.max_epochs; `space_json` sizes the search space
    (e.g. {"cells": 2, "width": 8, "nodes": 3}; "{}" for the defaults). The Model artifact is the run
    folder: architecture.json, model/ (a plain `darts` model), eval/; the HTML report is the search's.
    """
    import json
    from pathlib import Path

    from segflow.components._steps import publish_evaluation
    from segflow.compress import NAS_REPORT
    from segflow.compress import nas as run_nas
    from segflow.config import parse_recipe
    from segflow.layout import RUN
    from segflow.progress import SILENT

    recipe = parse_recipe(json.loads(recipe_json), "pipeline recipe")
    Path(run.path).mkdir(parents=True, exist_ok=True)
    result = run_nas(recipe, run.path, dataset_uri=dataset.path, search_epochs=search_epochs or None,
                     space_settings=json.loads(space_json or "{}"), progress=SILENT)
    run.metadata.update(result.retrained.record.metadata() | {
        "framework": "pytorch", "model": "darts", "architecture": result.architecture_uri})
    return publish_evaluation(Path(run.path) / RUN.eval.root, metrics, report, Path(run.path) / NAS_REPORT)
