"""search: prep -> tune (a hyperparameter search) or nas (a DARTS architecture search, retrained).

`method` picks the branch: "tune" searches the recipe's search space with Ray Tune or NNI
(`tune_backend`, `tune_algo`, `tune_trials`, `tune_max_epochs`; empty/0 keep the recipe's) and
promotes the best trial's model; "nas" searches a cell architecture and retrains it. The search
runs in the step's own pod with a GPU (Ray in local mode there); its report and model are the
step's artifacts. `build(placement)` makes the pipeline for a cluster (segflow.pipelines.tasks);
`search` is the one kfp.local runs.
"""

from kfp import dsl

from segflow.components.nas import nas
from segflow.components.prep import prep
from segflow.components.tune import tune
from segflow.pipelines.tasks import LocalPlacement, Placement


def build(c: Placement):
    """search with its tasks placed by `c`: a cluster's conventions, or none for kfp.local."""

    @dsl.pipeline(name="segflow-search",
                  description="Prepare data, then search hyperparameters (Ray Tune / NNI) or an architecture (DARTS).")
    def search(recipe_json: str, data_path: str = "", method: str = "tune", tune_backend: str = "",
               tune_algo: str = "", tune_trials: int = 0, tune_max_epochs: int = 0, nas_epochs: int = 0,
               nas_space_json: str = "{}"):
        data = c.in_cluster(prep(recipe_json=recipe_json, data_path=data_path).set_display_name("prep"))
        with dsl.If(method == "tune", name="hyperparameter-search"):
            c.on_gpu(c.in_cluster(tune(recipe_json=recipe_json, dataset=data.outputs["dataset"], backend=tune_backend,
                                       algo=tune_algo, trials=tune_trials, max_epochs=tune_max_epochs)
                                  .set_display_name("tune")))
        with dsl.If(method == "nas", name="architecture-search"):
            c.on_gpu(c.in_cluster(nas(recipe_json=recipe_json, dataset=data.outputs["dataset"],
                                      search_epochs=nas_epochs, space_json=nas_space_json).set_display_name("nas")))

    return search


search = build(LocalPlacement())
