"""The trial side: how a trial function's reports become NNI's intermediate and final results.

Outside an NNI trial process NNI's SDK runs standalone (it logs the values), which is enough to
check what segflow's reporter sends and when.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from segflow.errors import SearchError
from segflow.search.nni_trial import Reporter, import_root, load_trial


def test_returned_metric_is_the_final_result():
    report = Reporter()
    report(0.9)
    report.finish(0.4)
    assert report.final == 0.4


def test_a_final_report_wins_over_the_returned_value():
    report = Reporter()
    report(0.5, final=True)
    report.finish(1.0)
    assert report.final == 0.5


def test_a_trial_without_a_final_metric_fails():
    with pytest.raises(SearchError, match="returned None and reported no final metric"):
        Reporter().finish(None)


def test_import_root_is_the_folder_a_fresh_process_imports_the_module_from():
    assert load_trial("segflow.search.space:to_nni").__name__ == "to_nni"
    assert Path(import_root("segflow.search.space:to_nni")) == Path(__file__).resolve().parents[3]
    assert Path(import_root("nni_trial_functions:quadratic")) == Path(__file__).resolve().parent
