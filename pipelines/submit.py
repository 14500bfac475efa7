"""Submit a pipeline run to a Kubeflow Pipelines endpoint with kfp.Client (cluster mode).

A Kubeflow 1.10 multi-user install puts the KFP API behind oauth2-proxy (Dex sign-in), which
refuses anonymous requests, and files runs by profile namespace. Users authenticate as Kubeflow
documents for the SDK: a ServiceAccount token (projected with audience pipelines.kubeflow.org, the
file KF_PIPELINES_SA_TOKEN_PATH names in a notebook) or the browser's session cookie
(`oauth2_proxy_kubeflow=...`), both passed through kfp.Client's own arguments.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from urllib3.exceptions import HTTPError

from segflow.config import recipe_to_json
from segflow.config.recipe import Recipe
from segflow.errors import ConfigError, PipelineError
from segflow.pipelines.conventions import ClusterConventions

TOKEN_AUDIENCE = "pipelines.kubeflow.org"  # what Kubeflow's KFP API accepts in a ServiceAccount token
_API = "/apis/v2beta1"
_CREDENTIALS = (f"either --token-path FILE (a ServiceAccount token with audience {TOKEN_AUDIENCE}, e.g. "
                f"`kubectl -n PROFILE create token default-editor --audience {TOKEN_AUDIENCE}`; env "
                "KF_PIPELINES_SA_TOKEN_PATH) or --cookie 'oauth2_proxy_kubeflow=...' (from the browser after signing "
                "in; env SEGFLOW_KFP_COOKIE)")


@dataclass(frozen=True)
class KubeflowAuth:
    """The credentials sent with every request to the KFP API; none for a standalone install without auth."""

    token: str | None = None
    cookie: str | None = None

    @classmethod
    def from_options(cls, token_path: Path | None, cookie: str | None) -> KubeflowAuth:
        """Read the token file (--token-path / KF_PIPELINES_SA_TOKEN_PATH) and check the cookie's NAME=VALUE form."""
        if cookie is not None and "=" not in cookie.strip("= "):
            raise ConfigError(f"--cookie {cookie[:20]!r}... is not NAME=VALUE: copy the whole cookie from the "
                              "browser, e.g. 'oauth2_proxy_kubeflow=...'")
        return cls(_read_token(token_path) if token_path else None, cookie or None)


NO_AUTH = KubeflowAuth()


def _read_token(path: Path) -> str:
    fix = (f"create one with `kubectl -n NAMESPACE create token default-editor --audience {TOKEN_AUDIENCE} > FILE`, "
           "or mount a projected ServiceAccount token with that audience")
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the token file {path} ({exc.strerror}): {fix}") from None
    if not token:
        raise ConfigError(f"the token file {path} is empty: {fix}")
    return token


def submit_run(recipe: Recipe, host: str, experiment: str, namespace: str | None = None,
               auth: KubeflowAuth = NO_AUTH, conventions: ClusterConventions | None = None,
               data_path: str = "") -> str:
    """Start train_and_serve for `recipe` (training as KubeRay RayJobs) in `namespace`; returns the run's URL.

    The pipeline is compiled for `conventions` and travels inside the run request, so what runs is
    exactly this checkout's pipeline. `namespace` is the profile namespace of a multi-user Kubeflow
    (where the experiment and the run go); None on a standalone install. `conventions` default to
    Kubeflow's (ClusterConventions()). `data_path` is the raw dataset the prep step reads (e.g.
    s3://mlpipeline/datasets/aerial); empty: the recipe's.
    """
    import kfp
    from kfp_server_api.exceptions import ApiException

    from segflow.pipelines.compile import compile_pipeline

    with tempfile.TemporaryDirectory() as folder:
        package = compile_pipeline("train_and_serve", Path(folder) / "train_and_serve.yaml",
                                   conventions or ClusterConventions())
        try:
            with warnings.catch_warnings():  # kfp warns on every Client() that it needs a v2 backend
                warnings.simplefilter("ignore", FutureWarning)
                # namespace="kubeflow" is kfp.Client's "not set": it then asks the server whether it is multi-user
                client = kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=auth.token,
                                    cookies=auth.cookie)
            arguments = {"recipe_json": recipe_to_json(recipe), "data_path": data_path, "cluster": True}
            run = client.create_run_from_pipeline_package(
                str(package), arguments=arguments, run_name=f"{recipe.name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
                experiment_name=experiment, namespace=namespace)
        except ApiException as exc:
            raise _refused(exc, host) from None
        except TimeoutError:  # kfp.Client's health check, asked when no namespace is given, failed 5 times
            raise PipelineError(
                f"Kubeflow Pipelines at {host} did not answer kfp's health check ({_API}/healthz): on a multi-user "
                f"Kubeflow give --namespace PROFILE and credentials ({_CREDENTIALS}); otherwise check the URL"
            ) from None
        except (HTTPError, ConnectionError, OSError) as exc:
            raise PipelineError(
                f"cannot reach Kubeflow Pipelines at {host} ({exc.__class__.__name__}); check the URL (e.g. "
                "`kubectl -n istio-system port-forward svc/istio-ingressgateway 8080:80` for Kubeflow, or "
                "`kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80` standalone, then "
                "--host http://localhost:8080)"
            ) from None
    return f"{host.rstrip('/')}/#/runs/details/{run.run_id}"


def _refused(exc, host: str) -> PipelineError:
    """The KFP API's refusal as a PipelineError that says what to change."""
    answer = f"Kubeflow Pipelines at {host} answered {exc.status} {exc.reason}"
    if exc.status in (401, 403):
        return PipelineError(f"{answer}: it does not accept these credentials. A multi-user Kubeflow needs "
                             f"--namespace PROFILE and {_CREDENTIALS}; the account needs edit rights in that profile")
    return PipelineError(f"{answer}: {(exc.body or '').strip()[:500]}")
