"""train step: Ray Train (locally, or a KubeRay RayJob in a cluster) -> Model, Metrics, HTML report."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from segflow.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train(recipe_json: str, overrides_json: str, dataset: Input[Dataset], cluster: bool,
          run: Output[Model], metrics: Output[Metrics], report: Output[HTML]) -> float:
    """Train and evaluate; returns the recipe's quality metric (mIoU or accuracy) for gating.

    `overrides_json` holds recipe overrides from an earlier step (the best search trial).
    The Model artifact is the whole run folder: run.path/model is the model artifact URI.
    """
    import json
    from pathlib import Path

    from segflow.components._steps import publish_evaluation, train_in_cluster, train_locally
    from segflow.config import parse_recipe
    from segflow.layout import RUN

    raw = json.loads(recipe_json)
    recipe = parse_recipe(raw, "pipeline recipe")
    overrides = json.loads(overrides_json or "{}")
    Path(run.path).mkdir(parents=True, exist_ok=True)
    model = (train_in_cluster if cluster else train_locally)(recipe, overrides, dataset, run)
    run.metadata.update(model.metadata() | {"framework": "pytorch", "model": recipe.model.name})
    return publish_evaluation(Path(run.path) / RUN.eval.root, metrics, report)
