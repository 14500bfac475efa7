"""train_and_serve: prep -> [tune] -> train -> evaluate -> [distill -> evaluate] -> package -> [deploy].

`tune` adds a hyperparameter search before training (the recipe's search section; `tune_backend`,
`tune_algo`, `tune_trials`, `tune_max_epochs` override it when set): train then runs with the
best trial's values. `cluster` switches training between local Ray in the step's pod and a KubeRay RayJob.
`distill_student` (e.g. unet:depth=2,width=8) adds a distillation branch: the student trained
against the model, then evaluated. The deploy step runs only when the evaluate step's quality
metric reaches `deploy_min_metric`; it upgrades the chart's serving release named at compile time
(--helm-release), else registers the archive with TorchServe (management URL from
`torchserve_management_url`, or the Secret named at compile time), else emits the `helm upgrade`.
`build(placement)` makes the pipeline for a cluster's conventions (segflow.pipelines.tasks:
MinIO's address and Secret, the image, GPUs); `train_and_serve` is the one kfp.local runs.
"""

from kfp import dsl

from segflow.components.deploy import deploy
from segflow.components.distill import distill
from segflow.components.evaluate import evaluate
from segflow.components.package import package
from segflow.components.prep import prep
from segflow.components.train import train
from segflow.components.tune import recipe_hyperparameters
from segflow.components.tune import tune as tune_step
from segflow.pipelines.tasks import LocalPlacement, Placement

DISTILL_TEMPERATURE, DISTILL_ALPHA = 4.0, 0.5


def build(c: Placement):
    """train_and_serve with its tasks placed by `c`: a cluster's conventions, or none for kfp.local.

    Every task gets the cluster's settings (c.in_cluster); the steps that train in their own pod
    (tune, distill) also get a GPU (c.on_gpu). The train step's GPUs are its RayJob's, and evaluate
    only runs inference.
    """

    @dsl.pipeline(name="segflow-train-and-serve",
                  description="Prepare data, optionally tune, train on Ray, evaluate, optionally distill, package "
                              "for TorchServe, deploy.")
    def train_and_serve(recipe_json: str, data_path: str = "", cluster: bool = False, tune: bool = False,
                        tune_backend: str = "", tune_algo: str = "", tune_trials: int = 0, tune_max_epochs: int = 0,
                        distill_student: str = "", deploy_min_metric: float = 0.0,
                        torchserve_management_url: str = ""):
        data = c.in_cluster(prep(recipe_json=recipe_json, data_path=data_path).set_display_name("prep"))
        dataset = data.outputs["dataset"]
        with dsl.If(tune == True, name="tune-hyperparameters"):  # noqa: E712 (a pipeline condition, not a test)
            tuned = c.on_gpu(c.in_cluster(tune_step(recipe_json=recipe_json, dataset=dataset, backend=tune_backend,
                                                    algo=tune_algo, trials=tune_trials, max_epochs=tune_max_epochs)
                                          .set_display_name("tune")))
        with dsl.Else(name="recipe-hyperparameters"):
            kept = c.in_cluster(recipe_hyperparameters().set_display_name("recipe hyperparameters"))
        overrides = dsl.OneOf(tuned.outputs["Output"], kept.output)
        trained = c.with_ray(c.in_cluster(train(recipe_json=recipe_json, overrides_json=overrides, dataset=dataset,
                                                cluster=cluster).set_display_name("train")))
        evaluated = c.in_cluster(evaluate(model=trained.outputs["run"], dataset=dataset, split="val")
                                 .set_display_name("evaluate"))
        with dsl.If(distill_student != "", name="distill-student"):
            student = c.on_gpu(c.in_cluster(distill(recipe_json=recipe_json, teacher=trained.outputs["run"],
                                                    dataset=dataset, student=distill_student,
                                                    temperature=DISTILL_TEMPERATURE, alpha=DISTILL_ALPHA)
                                            .set_display_name("distill")))
            c.in_cluster(evaluate(model=student.outputs["run"], dataset=dataset, split="val")
                         .set_display_name("evaluate student"))
        archive = c.in_cluster(package(model=trained.outputs["run"]).set_display_name("package"))
        with dsl.If(evaluated.outputs["Output"] >= deploy_min_metric, name="quality-gate"):
            c.with_helm_release(c.with_torchserve(c.in_cluster(deploy(archive=archive.outputs["archive"],
                                                                      management_url=torchserve_management_url)
                                                               .set_display_name("deploy"))))

    return train_and_serve


train_and_serve = build(LocalPlacement())
