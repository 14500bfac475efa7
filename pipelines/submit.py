"""Submit a pipeline run to a Kubeflow Pipelines endpoint with kfp.Client (cluster mode)."""

from __future__ import annotations

import warnings

from urllib3.exceptions import HTTPError

from segflow.config import recipe_to_json
from segflow.config.recipe import Recipe
from segflow.errors import PipelineError


def submit_run(recipe: Recipe, host: str, experiment: str) -> str:
    """Start train_and_serve for `recipe` (training as KubeRay RayJobs); returns the run's URL."""
    import kfp

    from segflow.pipelines.train_and_serve import train_and_serve

    try:
        with warnings.catch_warnings():  # kfp warns on every Client() that it needs a v2 backend
            warnings.simplefilter("ignore", FutureWarning)
            client = kfp.Client(host=host)
        run = client.create_run_from_pipeline_func(
            train_and_serve,
            arguments={"recipe_json": recipe_to_json(recipe), "cluster": True},
            experiment_name=experiment,
            run_name=f"{recipe.name}",
        )
    except (HTTPError, ConnectionError, OSError) as exc:
        raise PipelineError(
            f"cannot reach Kubeflow Pipelines at {host} ({exc.__class__.__name__}); check the URL "
            "(e.g. `kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80` then --host http://localhost:8080)"
        ) from None
    return f"{host.rstrip('/')}/#/runs/details/{run.run_id}"
