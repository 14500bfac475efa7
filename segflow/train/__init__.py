"""Training on Ray Train: one TrainJob, one `fit`, reused by plain runs, trials and students.

The face below is what other packages use; the modules behind it are private to train:
`command` (`segflow train`), `job` (a recipe -> a TrainJob), `fit` (a TrainJob on Ray Train),
`publish` (the best epoch -> model artifact and evaluation), `loop` (what each worker runs).
"""

from segflow.train.command import train
from segflow.train.fit import EpochHook, FitResult, ensure_ray, fit
from segflow.train.job import DistillSpec, make_job, model_config_for, resolve_dataset
from segflow.train.publish import TrainOutcome, publish
from segflow.train.signals import kept_signal_handlers

__all__ = ["DistillSpec", "EpochHook", "FitResult", "TrainOutcome", "ensure_ray", "fit", "kept_signal_handlers",
           "make_job", "model_config_for", "publish", "resolve_dataset", "train"]
