"""`--profile`: a torch.profiler trace of a few training steps and a top-operators table.

The proposals used SageMaker Debugger/Profiler to find where step time goes; here rank 0
profiles the first steps of its first epoch and writes `profile/trace.json` (open it in
chrome://tracing or Perfetto) and `profile/top_operators.md` next to the run's outputs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch.profiler import ProfilerActivity, profile, schedule

from segflow.store import open_store

WAIT, WARMUP = 1, 1


class StepProfiler:
    def __init__(self, active_steps: int, cuda: bool):
        self.enabled = active_steps > 0
        self._profiler = None
        if self.enabled:
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
            self._profiler = profile(activities=activities, record_shapes=True,
                                     schedule=schedule(wait=WAIT, warmup=WARMUP, active=active_steps, repeat=1))

    @classmethod
    def for_run(cls, run, epoch: int) -> StepProfiler:
        """Active only on rank 0, in the first epoch this worker group trains."""
        steps = run.job.profile_steps if run.rank == 0 and epoch == run.start_epoch else 0
        return cls(steps, run.device.type == "cuda")

    def __enter__(self) -> StepProfiler:
        if self._profiler is not None:
            self._profiler.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._profiler is not None:
            self._profiler.__exit__(*exc)

    def step(self) -> None:
        if self._profiler is not None:
            self._profiler.step()

    def publish(self, run_uri: str) -> None:
        if self._profiler is None:
            return
        averages = self._profiler.key_averages()
        if not len(averages):  # the epoch had fewer steps than wait + warmup
            return
        table = averages.table(sort_by="self_cpu_time_total", row_limit=25)
        with tempfile.TemporaryDirectory() as tmp:
            trace = Path(tmp) / "trace.json"
            self._profiler.export_chrome_trace(str(trace))
            store = open_store(run_uri).child("profile")
            store.put_file("trace.json", trace)
            store.put_text("top_operators.md", "# Top operators (self CPU time)\n\n```\n" + table + "\n```\n")
