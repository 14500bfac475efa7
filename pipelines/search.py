"""search: prep -> nas (a DARTS architecture search, the chosen cells retrained and evaluated).

The search runs in the step's own pod on a GPU node (Ray in local mode there); its report and
retrained model are the step's artifacts.
"""

from kfp import dsl

from segflow.components.nas import nas
from segflow.components.prep import prep
from segflow.pipelines.tasks import in_cluster, on_gpu


@dsl.pipeline(name="segflow-search", description="Prepare data, search an architecture with DARTS and retrain it.")
def search(recipe_json: str, data_path: str = "", nas_epochs: int = 0, nas_space_json: str = "{}"):
    data = in_cluster(prep(recipe_json=recipe_json, data_path=data_path).set_display_name("prep"))
    on_gpu(in_cluster(nas(recipe_json=recipe_json, dataset=data.outputs["dataset"], search_epochs=nas_epochs,
                          space_json=nas_space_json).set_display_name("nas")))
