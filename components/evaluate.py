"""evaluate step: a model artifact on a dataset split -> Metrics and an HTML report."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from segflow.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate(model: Input[Model], dataset: Input[Dataset], split: str,
             metrics: Output[Metrics], report: Output[HTML]) -> float:
    """Returns the quality metric (mIoU or accuracy) on `split`."""
    from pathlib import Path

    from segflow.components._steps import publish_evaluation
    from segflow.evaluate import evaluate_uri
    from segflow.layout import ModelRecord

    out = Path(report.path).parent / "evaluation"
    evaluate_uri(ModelRecord.from_metadata(model.metadata).uri, dataset.path, str(out), split)
    return publish_evaluation(out, metrics, report)
