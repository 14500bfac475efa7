"""Distillation end to end on tiny synthetic data: student trains, report compares, card names teacher."""

import json

import pytest

from segflow.compress.distill_command import distill, parse_student
from segflow.config import load_recipe
from segflow.data import prep
from segflow.errors import ConfigError, ModelError
from segflow.progress import SILENT
from segflow.train import train

pytestmark = pytest.mark.slow
TINY = ["data.num_images=40", "data.image_size=[32,32]", "training.epochs=1", "training.batch_size=8",
        "training.num_workers=1", "training.cpus_per_worker=1", "model.params={depth: 2, width: 16}"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    dataset = prep(load_recipe("quickstart", TINY), None, str(root / "data"), progress=SILENT).uri
    outcome = train(load_recipe("quickstart", TINY), str(root / "run"), dataset_uri=dataset, progress=SILENT)
    return outcome.model_uri, dataset


def test_student_trains_against_the_teacher_and_the_report_compares_them(teacher, tmp_path):
    teacher_uri, dataset = teacher
    result = distill(load_recipe("quickstart", TINY), teacher_uri, "unet:depth=1,width=4", str(tmp_path),
                     dataset_uri=dataset, progress=SILENT)
    student, teacher_row = result.figures[1], result.figures[0]
    assert student.parameters * 4 < teacher_row.parameters and student.gflops < teacher_row.gflops
    report = (tmp_path / "knowledge-distillation.md").read_text()
    assert "| unet {'depth': 1, 'width': 4} | student |" in report and "eval/figures/samples.png" in report
    card = json.loads(next((tmp_path / "model").glob("*/manifest.json")).read_text())
    assert card["teacher"].startswith(teacher_uri)


def test_a_teacher_for_other_classes_is_refused(teacher, tmp_path):
    teacher_uri, _ = teacher
    with pytest.raises(ModelError, match="teacher .* does not fit this dataset.*classes"):
        distill(load_recipe("quickstart", [*TINY, "data.num_classes=3"]), teacher_uri, "unet:depth=1,width=4",
                str(tmp_path), progress=SILENT)


def test_a_student_that_does_not_build_is_refused(teacher, tmp_path):
    teacher_uri, dataset = teacher
    with pytest.raises(ModelError, match="cannot build 'unet'"):
        distill(load_recipe("quickstart", TINY), teacher_uri, "unet:depth=9", str(tmp_path), dataset_uri=dataset,
                progress=SILENT)
    with pytest.raises(ConfigError, match="is not key=value"):
        parse_student("unet:depth")
    with pytest.raises(ConfigError, match="model.name"):
        distill(load_recipe("quickstart", TINY), teacher_uri, "unet2", str(tmp_path), dataset_uri=dataset,
                progress=SILENT)
