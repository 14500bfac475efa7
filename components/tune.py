"""tune step: a hyperparameter search (Ray Tune or NNI) -> the best trial's Model, Metrics, HTML, overrides."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from segflow.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def tune(recipe_json: str, dataset: Input[Dataset], backend: str, algo: str, trials: int, max_epochs: int,
         run: Output[Model], metrics: Output[Metrics], report: Output[HTML]) -> str:
    """Returns the best configuration as recipe overrides (JSON), for the train step's `overrides_json`.

    Empty `backend`/`algo` and 0 `trials`/`max_epochs` keep the recipe's search section. The Model
    artifact is the search's run folder: model/ (the best trial's best epoch), eval/, search.json and
    hyperparameter-optimization.md, which is also the HTML report.
    """
    import json
    from pathlib import Path

    from segflow.components._steps import publish_evaluation
    from segflow.config import parse_recipe, with_overrides
    from segflow.layout import RUN
    from segflow.progress import SILENT
    from segflow.search import recipe_key
    from segflow.search import tune as search_tune

    recipe = parse_recipe(json.loads(recipe_json), "pipeline recipe")
    chosen = {"search.backend": backend, "search.algo": algo, "search.trials": trials, "search.max_epochs": max_epochs}
    recipe = with_overrides(recipe, {key: value for key, value in chosen.items() if value})
    Path(run.path).mkdir(parents=True, exist_ok=True)
    result = search_tune.tune(recipe, run.path, dataset_uri=dataset.path, progress=SILENT)
    run.metadata.update(result.model.record.metadata() | {
        "framework": "pytorch", "model": recipe.model.name, "backend": result.backend, "algo": result.algo,
        "best_trial": result.best.name})
    publish_evaluation(Path(run.path) / RUN.eval.root, metrics, report, Path(run.path) / search_tune.REPORT)
    return json.dumps({recipe_key(name): value for name, value in result.best.params.items()})


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def recipe_hyperparameters() -> str:
    """The other branch of an optional tune step: no overrides, so training keeps the recipe's values.

    train_and_serve hands train `dsl.OneOf(tune's overrides, this)`; a branch that is not taken
    produces no output, so each branch needs a step of its own.
    """
    return "{}"
