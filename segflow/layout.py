"""Where a run keeps what it made, and how a pipeline step names the model it hands on.

    OUT/model/                       the model artifact, versioned (RUN.model)
    OUT/eval/                        its evaluation (RUN.eval):
        metrics.json, history.json   the scalars on the evaluated split, the training history
        figures/<name>.png           the figures (see segflow.evaluate.figures)
        report.md                    the report linking them, written last

`segflow train`, `compress`, `distill`, `nas` and `tune` all end in this layout, and reports,
pipeline steps and summaries find files through it rather than through path strings of their
own, so they cannot drift apart. A model handed from step to step travels as a `ModelRecord`
in the KFP artifact's metadata.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class _Folder:
    root: str = ""  # the folder's path relative to where its paths are used; "" for the folder itself

    def _at(self, name: str) -> str:
        return posixpath.join(self.root, name) if self.root else name


class EvalLayout(_Folder):
    """An evaluation folder, as `write_evaluation` fills it."""

    @property
    def metrics(self) -> str:
        return self._at("metrics.json")

    @property
    def history(self) -> str:
        return self._at("history.json")

    @property
    def figures(self) -> str:
        return self._at("figures")

    @property
    def report(self) -> str:
        return self._at("report.md")

    def figure(self, file: str) -> str:
        """A figure's path, `file` as `draw_all` names it (e.g. "loss.png")."""
        return posixpath.join(self.figures, file)


class RunLayout(_Folder):
    """A run folder of any command that publishes a model (RunLayout("finetune"): one inside another run)."""

    @property
    def model(self) -> str:
        return self._at("model")

    @property
    def eval(self) -> EvalLayout:
        return EvalLayout(self._at("eval"))


RUN = RunLayout()
EVAL = EvalLayout()


@dataclass(frozen=True)
class ModelRecord:
    """A published model as one pipeline step hands it to the next: its URI and version, in artifact metadata."""

    uri: str
    version: str

    def metadata(self) -> dict[str, str]:
        return {"model_uri": self.uri, "version": self.version}

    @classmethod
    def from_metadata(cls, metadata: Mapping) -> ModelRecord:
        return cls(metadata["model_uri"], metadata["version"])
