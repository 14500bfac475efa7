"""distill step: a smaller student trained against the pipeline's model (the teacher) -> Model, Metrics, HTML."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from segflow.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def distill(recipe_json: str, teacher: Input[Model], dataset: Input[Dataset], student: str,
            temperature: float, alpha: float, run: Output[Model], metrics: Output[Metrics],
            report: Output[HTML]) -> float:
    """Returns the student's quality metric (mIoU or accuracy).

    `student` is NAME[:key=value,...], e.g. unet:depth=2,width=8. The Model artifact is the student's
    run folder (model/, eval/); the HTML report is the teacher-versus-student comparison.
    """
    import json
    from pathlib import Path

    from segflow.components._steps import publish_evaluation
    from segflow.compress import DISTILL_REPORT
    from segflow.compress import distill as run_distill
    from segflow.config import parse_recipe
    from segflow.layout import RUN, ModelRecord
    from segflow.progress import SILENT

    recipe = parse_recipe(json.loads(recipe_json), "pipeline recipe")
    Path(run.path).mkdir(parents=True, exist_ok=True)
    teacher_uri = ModelRecord.from_metadata(teacher.metadata).uri
    result = run_distill(recipe, teacher_uri, student, run.path, dataset_uri=dataset.path,
                         temperature=temperature, alpha=alpha, progress=SILENT)
    run.metadata.update(result.student.record.metadata() | {"framework": "pytorch", "model": student,
                                                             "teacher": teacher_uri})
    return publish_evaluation(Path(run.path) / RUN.eval.root, metrics, report, Path(run.path) / DISTILL_REPORT)
