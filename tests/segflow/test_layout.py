"""The run layout and the figure-links block every report about a published model shares."""

from segflow.evaluate.report import figure_links
from segflow.layout import EVAL, RUN, ModelRecord, RunLayout


def test_paths_are_relative_to_the_folder_they_are_used_from():
    assert (RUN.model, RUN.eval.root, RUN.eval.report) == ("model", "eval", "eval/report.md")
    assert RUN.eval.figure("loss.png") == "eval/figures/loss.png"
    assert (EVAL.metrics, EVAL.history, EVAL.figures) == ("metrics.json", "history.json", "figures")
    assert RunLayout("finetune").eval.report == "finetune/eval/report.md"


def test_a_model_record_round_trips_through_artifact_metadata():
    record = ModelRecord("s3://bucket/run/model", "abc123")
    assert record.metadata() == {"model_uri": "s3://bucket/run/model", "version": "abc123"}
    assert ModelRecord.from_metadata(record.metadata() | {"framework": "pytorch"}) == record


def test_figure_links_name_the_report_and_the_figures_that_were_drawn():
    text = figure_links({"samples": "samples.png", "precision_recall": "precision_recall.png",
                         "confusion": "confusion.png"})
    assert "[eval/report.md](eval/report.md)" in text
    assert "](eval/figures/samples.png)" in text and "](eval/figures/precision_recall.png)" in text
    assert "loss.png" not in text and "confusion.png" not in text  # not drawn; not one of the three shown
