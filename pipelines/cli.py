"""`segflow run` and `segflow pipeline compile|submit`, registered as a CLI plugin.

The core CLI (segflow.cli) never imports kfp: this module adds its commands through the
`segflow.commands` entry point, keeping the layers' dependencies pointing one way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from segflow.components import BASE_IMAGE
from segflow.pipelines.conventions import KUBEFLOW_MINIO, KUBEFLOW_MINIO_SECRET

console = Console()


def register(app: typer.Typer) -> None:
    pipeline_app = typer.Typer(no_args_is_help=True, help="Compile or submit the Kubeflow pipelines.")
    app.add_typer(pipeline_app, name="pipeline")
    app.command("run")(run)
    pipeline_app.command("compile")(compile_pipelines)
    pipeline_app.command("submit")(submit)


def run(
    recipe: Annotated[str, typer.Argument(help="recipe name or YAML path")],
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="default runs/RECIPE-pipeline")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="raw dataset folder (default: the recipe's)")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="override a recipe key")] = None,
    pipeline: Annotated[str, typer.Option(help="train_and_serve, or search (architecture search)")] = "train_and_serve",
    tune: Annotated[bool, typer.Option("--tune", help="train_and_serve: search hyperparameters first (the recipe's "
                                                       "search: section; --set search.algo=... changes it), then "
                                                       "train with the best trial's values")] = False,
    distill: Annotated[str | None, typer.Option("--distill", help="train_and_serve: also distill into this student, "
                                                "NAME[:key=value,...], e.g. unet:depth=2,width=8")] = None,
    deploy_min_metric: Annotated[float, typer.Option(help="train_and_serve: deploy only when the evaluated quality "
                                                          "metric (mIoU or accuracy) reaches this")] = 0.0,
    serve: Annotated[bool, typer.Option("--serve", help="then serve the packaged model with a local TorchServe, "
                                                        "answer one validation image, and serve until Ctrl-C")] = False,
    serve_once: Annotated[bool, typer.Option("--serve-once", help="like --serve, but stop after that one "
                                                                  "prediction (CI, tests)")] = False,
    runner: Annotated[str, typer.Option(help="subprocess: the steps run in this interpreter; docker: each in the "
                                             "segflow image, through the Docker-compatible engine at DOCKER_HOST "
                                             "(e.g. podman system service)")] = "subprocess",
) -> None:
    """Run a pipeline locally (kfp.local + local Ray) and summarise it; --serve then serves the model."""
    from segflow.config import load_recipe
    from segflow.pipelines.local import run_locally, summary

    arguments = _pipeline_arguments(pipeline, tune, distill, deploy_min_metric, serve or serve_once)
    config = load_recipe(recipe, overrides)
    run_dir = run_dir or Path("runs") / f"{config.name}-pipeline"
    result = run_locally(config, run_dir, data, pipeline, arguments, runner)
    table = Table(title=f"{config.name}: pipeline finished in {result.wall_time_s:.0f} s")
    table.add_column("what")
    table.add_column("value")
    for key, value in summary(result).items():
        table.add_row(key, value)
    console.print(table)
    if serve or serve_once:
        _serve(result, run_dir, keep_serving=not serve_once)


def _pipeline_arguments(pipeline: str, tune: bool, distill: str | None, deploy_min_metric: float,
                        serve: bool) -> dict:
    """The pipeline parameters the options set; options of train_and_serve are refused for other pipelines."""
    from segflow.errors import ConfigError

    if pipeline == "train_and_serve":
        return {"tune": tune, "distill_student": distill or "", "deploy_min_metric": deploy_min_metric}
    if tune or distill or deploy_min_metric or serve:
        raise ConfigError(f"--tune, --distill, --deploy-min-metric and --serve belong to train_and_serve, not "
                          f"{pipeline!r} (the search pipeline tunes with --set search.*)")
    return {}


def _serve(result, run_dir: Path, keep_serving: bool) -> None:
    """A local TorchServe for the run's archive: one validation image answered, then serving until Ctrl-C."""
    from segflow.pipelines.local import artifact
    from segflow.serving.cli import print_endpoints, running_server, serve_until_interrupted
    from segflow.serving.client import InferenceClient
    from segflow.serving.server import Ports

    image, target = _validation_sample(result)
    archive = artifact(result.tasks["package"], "archive")["uri"]
    with running_server(archive, run_dir.resolve() / "serve", Ports.pick()) as (server, endpoints, manifest):
        print_endpoints(endpoints, manifest)
        segmentation = manifest["model"]["task"] == "segmentation"
        with InferenceClient(endpoints.predictions, server.key()) as client:
            answer = client.predict(image, "json" if segmentation else "topk").json()
        console.print(_segmentation_answer(answer, target) if segmentation else _classification_answer(answer, target))
        if keep_serving:
            serve_until_interrupted(server)
        else:
            console.print("stopping TorchServe (--serve-once) ...")
    console.print("stopped")


def _validation_sample(result) -> tuple[bytes, object]:
    """The first validation image of the run's dataset as PNG bytes, and its target (mask or label)."""
    import io

    from PIL import Image

    from segflow.data import open_dataset
    from segflow.pipelines.local import artifact

    images, targets = open_dataset(artifact(result.tasks["prep"], "dataset")["uri"]).arrays("val")
    image = images[0][..., 0] if images[0].shape[-1] == 1 else images[0]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue(), targets[0]


def _segmentation_answer(answer: dict, mask) -> Table:
    import numpy as np

    table = Table(title=f"served prediction of validation image 0 ({answer['width']}x{answer['height']})")
    for column in ("class", "pixels", "fraction", "fraction in the true mask"):
        table.add_column(column, justify="left" if column == "class" else "right")
    mask = np.asarray(mask)
    for entry in answer["classes"]:
        truth = float((mask == entry["index"]).mean())
        table.add_row(entry["name"], str(entry["pixels"]), f"{entry['fraction']:.3f}", f"{truth:.3f}")
    return table


def _classification_answer(answer: dict, label) -> Table:
    table = Table(title=f"served prediction of validation image 0 (true class index {int(label)})")
    for column in ("class", "index", "probability"):
        table.add_column(column)
    for entry in answer["predictions"]:
        table.add_row(entry["name"], str(entry["index"]), f"{entry['probability']:.3f}")
    return table


S3Endpoint = Annotated[str, typer.Option(
    help="MinIO/S3 address the pods reach, compiled in as SEGFLOW_S3_ENDPOINT (default: Kubeflow's MinIO)")]
MinioSecret = Annotated[str, typer.Option(
    help="Secret in the run's namespace with MinIO's keys accesskey/secretkey (default: Kubeflow's)")]
Image = Annotated[str, typer.Option(help="the segflow image the steps and RayJobs run (env SEGFLOW_IMAGE)")]
Gpu = Annotated[bool, typer.Option("--gpu/--no-gpu", help="tune/nas/distill request one GPU each; --no-gpu "
                                                          "for a cluster without GPUs (they then train on CPU)")]
TorchserveSecret = Annotated[str, typer.Option(
    help="Secret with TorchServe's management-url and management-key for the deploy step (must exist; "
         "default: none, deploy logs the `helm upgrade`)")]

HelmRelease = Annotated[str, typer.Option(
    help="NAME[/NAMESPACE]: the deploy step upgrades this Helm release of charts/segflow to the new archive and "
         "waits for the rollout (rolled back if it fails); NAMESPACE defaults to the step's own. Needs "
         "k8s/kubeflow/release-deployer.yaml (default: none)")]
Ray = Annotated[str, typer.Option(
    help="the train step's Ray cluster (cluster=True), KEY=VALUE,... of workers, worker_gpus, worker_cpus, "
         "worker_memory, head_cpus, head_memory (default: 2 workers of 1 GPU, 4 CPUs, 24Gi; a head of 1 CPU, 8Gi)")]


def _conventions(s3_endpoint: str, minio_secret: str, image: str, gpu: bool, torchserve_secret: str, ray: str,
                 helm_release: str):
    from segflow.pipelines.conventions import ClusterConventions

    return ClusterConventions(s3_endpoint=s3_endpoint, minio_secret=minio_secret, image=image, gpu=gpu,
                              torchserve_secret=torchserve_secret, ray=ray, helm_release=helm_release)


def compile_pipelines(
    out_dir: Annotated[Path | None, typer.Option(help="where the IR YAML files go (default: beside the "
                                                      "pipelines)")] = None,
    s3_endpoint: S3Endpoint = KUBEFLOW_MINIO,
    minio_secret: MinioSecret = KUBEFLOW_MINIO_SECRET,
    image: Image = BASE_IMAGE,
    gpu: Gpu = True,
    torchserve_secret: TorchserveSecret = "",
    ray: Ray = "",
    helm_release: HelmRelease = "",
) -> None:
    """Compile every pipeline to KFP v2 IR YAML (what the Kubeflow UI uploads) for a cluster's conventions."""
    from segflow.pipelines.compile import PIPELINES, compile_all

    conventions = _conventions(s3_endpoint, minio_secret, image, gpu, torchserve_secret, ray, helm_release)
    for path in compile_all(out_dir or PIPELINES, conventions):
        console.print(f"wrote {path}")


def submit(
    recipe: Annotated[str, typer.Argument(help="recipe name or YAML path")],
    host: Annotated[str, typer.Option(help="Kubeflow Pipelines endpoint, e.g. http://localhost:8080")],
    namespace: Annotated[str | None, typer.Option(help="your Kubeflow profile namespace (multi-user): the "
                                                       "experiment and the run go there")] = None,
    token_path: Annotated[Path | None, typer.Option(
        envvar="KF_PIPELINES_SA_TOKEN_PATH", help="file holding a ServiceAccount token with audience "
                                                  "pipelines.kubeflow.org, sent as a bearer token")] = None,
    cookie: Annotated[str | None, typer.Option(
        envvar="SEGFLOW_KFP_COOKIE", help="Kubeflow's session cookie, 'oauth2_proxy_kubeflow=...' (from the "
                                          "browser after signing in)")] = None,
    experiment: Annotated[str, typer.Option(help="KFP experiment name")] = "segflow",
    data: Annotated[str, typer.Option("--data", help="raw dataset the prep step reads, e.g. "
                                                     "s3://mlpipeline/datasets/aerial (default: the recipe's)")] = "",
    overrides: Annotated[list[str] | None, typer.Option("--set", help="override a recipe key")] = None,
    s3_endpoint: S3Endpoint = KUBEFLOW_MINIO,
    minio_secret: MinioSecret = KUBEFLOW_MINIO_SECRET,
    image: Image = BASE_IMAGE,
    gpu: Gpu = True,
    torchserve_secret: TorchserveSecret = "",
    ray: Ray = "",
    helm_release: HelmRelease = "",
) -> None:
    """Compile train_and_serve for the cluster and start a run of it on a Kubeflow Pipelines endpoint."""
    from segflow.config import load_recipe
    from segflow.pipelines.submit import KubeflowAuth, submit_run

    url = submit_run(load_recipe(recipe, overrides), host, experiment, namespace,
                     KubeflowAuth.from_options(token_path, cookie),
                     _conventions(s3_endpoint, minio_secret, image, gpu, torchserve_secret, ray, helm_release), data)
    console.print(f"run started: {url}")
