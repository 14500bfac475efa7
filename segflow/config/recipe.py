"""The typed recipe: everything one use case needs, from data on disk to the served model.

A recipe is validated once, at the edge (YAML file or CLI overrides); the rest of segflow
receives these objects and never re-checks raw dicts. Unknown keys are refused
(`extra="forbid"`) so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import functools
import operator
import re
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

HEX_COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}$")

Task = Literal["segmentation", "classification"]
TASKS: tuple[Task, ...] = typing.get_args(Task)


# ---- the registries' facts: one table per registry -------------------------------------
# Each entry names its builder or reader by import path ("module:attribute") instead of holding
# it: config is the bottom layer and may not import models or data, yet the recipe schema's
# model names, tasks and data sections are built from these tables, so the facts live here once.
# models and data import the named object when a recipe or a model.json asks for it; this also
# keeps a model's heavy machinery (torch.ao's int8 flow, NNI) out of processes that never build it.


@dataclass(frozen=True)
class ModelEntry:
    """A model: the data tasks it serves and its builder `(ModelConfig, backbone weights) -> nn.Module`."""

    tasks: tuple[Task, ...]
    builder: str
    in_recipes: bool = True  # False: written by `segflow compress` from a trained model, never named in a recipe


MODELS: dict[str, ModelEntry] = {
    "unet": ModelEntry(("segmentation",), "segflow.models.unet:build_unet"),
    "fcn_vgg16": ModelEntry(("segmentation",), "segflow.models.fcn:build_fcn_vgg16"),
    "deeplabv3_resnet50": ModelEntry(("segmentation",), "segflow.models.torchvision_seg:build_deeplabv3_resnet50"),
    "lraspp_mobilenet_v3_large": ModelEntry(
        ("segmentation",), "segflow.models.torchvision_seg:build_lraspp_mobilenet_v3_large"),
    "resnet18": ModelEntry(("classification",), "segflow.models.classifiers:build_resnet18"),
    "resnet34": ModelEntry(("classification",), "segflow.models.classifiers:build_resnet34"),
    "vgg16": ModelEntry(("classification",), "segflow.models.classifiers:build_vgg16"),
    "smallcnn": ModelEntry(("classification",), "segflow.models.classifiers:build_smallcnn"),
    # Both tasks: the builder checks the config's task against its search space's.
    "darts": ModelEntry(TASKS, "segflow.models.darts:build_darts"),
    # params.base: the float model it was pruned from / it quantizes (int8: CPU only).
    "pruned": ModelEntry(TASKS, "segflow.models.pruned:build_pruned", in_recipes=False),
    "int8": ModelEntry(TASKS, "segflow.models.quantized:build_int8", in_recipes=False),
}
ModelName = Literal[tuple(name for name, entry in MODELS.items() if entry.in_recipes)]


class Strict(BaseModel):
    """Base for every recipe section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class ClassSpec(Strict):
    """One class: its name and, for colour-coded masks, the RGB colour that marks it."""

    name: str = Field(min_length=1)
    colour: str | None = None

    @field_validator("colour")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None and not HEX_COLOUR.match(value):
            raise ValueError(f"colour {value!r} is not a hex colour like '#3C1098'")
        return value.upper() if value else value


# ---- how images become fixed-size training samples ----------------------------------


class PatchLayout(Strict):
    """Crop to a multiple of `size`, then cut into size x size tiles (what the aerial seed did)."""

    kind: Literal["patch"] = "patch"
    size: int = Field(256, gt=0, le=4096)
    stride: int | None = Field(None, gt=0, description="defaults to size (no overlap)")


class ResizeLayout(Strict):
    """Resize every image (bilinear) and mask (nearest) to height x width."""

    kind: Literal["resize"] = "resize"
    size: tuple[Annotated[int, Field(gt=0, le=8192)], Annotated[int, Field(gt=0, le=8192)]]


class KeepLayout(Strict):
    """Keep images as they are; every image must already have one size (Fashion-MNIST)."""

    kind: Literal["keep"] = "keep"


Layout = Annotated[PatchLayout | ResizeLayout | KeepLayout, Field(discriminator="kind")]


class SplitSpec(Strict):
    """A deterministic, seeded split. `by: group` keeps patches / views of one source together."""

    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    by: Literal["group", "sample"] = "group"
    seed: int = 42

    @model_validator(mode="after")
    def _fractions(self) -> SplitSpec:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction} "
                "leaves nothing to train on; keep their sum below 1"
            )
        return self


# ---- one data section per on-disk format --------------------------------------------


class _DataBase(Strict):
    path: str | None = Field(None, description="dataset root; `segflow prep --data` overrides it")
    split: SplitSpec = SplitSpec()
    ignore_index: int = Field(255, ge=0, le=255)


class SyntheticData(_DataBase):
    format: Literal["synthetic"]
    num_classes: int = Field(4, ge=2, le=32)
    num_images: int = Field(96, ge=4, le=100_000)
    image_size: tuple[Annotated[int, Field(ge=16, le=2048)], Annotated[int, Field(ge=16, le=2048)]] = (
        96,
        96,
    )
    seed: int = 0
    layout: Layout = KeepLayout()


class AerialData(_DataBase):
    format: Literal["aerial"]
    classes: list[ClassSpec] = [
        ClassSpec(name="building", colour="#3C1098"),
        ClassSpec(name="land", colour="#8429F6"),
        ClassSpec(name="road", colour="#6EC1E4"),
        ClassSpec(name="vegetation", colour="#FEDD3A"),
        ClassSpec(name="water", colour="#E2A929"),
        ClassSpec(name="unlabeled", colour="#9B9B9B"),
    ]
    ignore_colours: list[str] = Field(
        ["#000000"], description="colours mapped to ignore_index, counted and logged"
    )
    unknown_colours: Literal["error", "ignore"] = "error"
    layout: Layout = PatchLayout()

    @field_validator("ignore_colours")
    @classmethod
    def _hex_list(cls, values: list[str]) -> list[str]:
        for value in values:
            if not HEX_COLOUR.match(value):
                raise ValueError(f"colour {value!r} is not a hex colour like '#000000'")
        return [v.upper() for v in values]


class CarvanaData(_DataBase):
    format: Literal["carvana"]
    classes: list[ClassSpec] = [ClassSpec(name="background"), ClassSpec(name="car")]
    layout: Layout = ResizeLayout(size=(320, 480))


class KittiRoadData(_DataBase):
    format: Literal["kitti_road"]
    classes: list[ClassSpec] = [
        ClassSpec(name="background", colour="#FF0000"),
        ClassSpec(name="road", colour="#FF00FF"),
    ]
    layout: Layout = ResizeLayout(size=(192, 640))


class CocoData(_DataBase):
    format: Literal["coco"]
    images: str = Field("train2017", description="image folder, relative to path")
    annotations: str = Field(
        "annotations/instances_train2017.json", description="instances JSON, relative to path"
    )
    categories: list[str] | Literal["voc"] = Field(
        "voc", description="COCO category names to keep (class i+1), or the 20 VOC classes"
    )
    max_images: int | None = Field(None, gt=0)
    layout: Layout = ResizeLayout(size=(320, 320))


class FashionData(_DataBase):
    format: Literal["fashion"]
    split: SplitSpec = SplitSpec(val_fraction=0.1, by="sample")
    layout: Layout = KeepLayout()


class FolderData(_DataBase):
    format: Literal["folder"]
    classes: list[ClassSpec] | None = Field(
        None, description="defaults to classes.yaml in the dataset folder"
    )
    unknown_colours: Literal["error", "ignore"] = "error"
    layout: Layout = ResizeLayout(size=(256, 256))


@dataclass(frozen=True)
class DataFormat:
    """A data format: its recipe section, the task its data serves and its reader (a segflow.data Reader)."""

    section: type[_DataBase]
    task: Task
    reader: str

    @property
    def name(self) -> str:
        return typing.get_args(self.section.model_fields["format"].annotation)[0]


FORMATS: dict[str, DataFormat] = {f.name: f for f in (
    DataFormat(SyntheticData, "segmentation", "segflow.data.formats.synthetic:SyntheticReader"),
    DataFormat(AerialData, "segmentation", "segflow.data.formats.aerial:AerialReader"),
    DataFormat(CarvanaData, "segmentation", "segflow.data.formats.carvana:CarvanaReader"),
    DataFormat(KittiRoadData, "segmentation", "segflow.data.formats.kitti_road:KittiRoadReader"),
    DataFormat(CocoData, "segmentation", "segflow.data.formats.coco:CocoReader"),
    DataFormat(FashionData, "classification", "segflow.data.formats.fashion:FashionReader"),
    DataFormat(FolderData, "segmentation", "segflow.data.formats.folder:FolderReader"),
)}
DataSection = Annotated[
    functools.reduce(operator.or_, (f.section for f in FORMATS.values())), Field(discriminator="format")
]


# ---- model, training, search, serving ------------------------------------------------


class ModelSection(Strict):
    name: ModelName
    in_channels: int = Field(3, ge=1, le=16)
    weights: str | None = Field(
        None, description="None, a state-dict path/URI, or a torchvision weights name"
    )
    params: dict[str, Any] = Field(default_factory=dict, description="builder-specific options")


class TrainingSection(Strict):
    epochs: int = Field(10, ge=1, le=10_000)
    batch_size: int = Field(16, ge=1, le=4096)
    lr: float = Field(1e-3, gt=0, le=10)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    weight_decay: float = Field(1e-4, ge=0)
    scheduler: Literal["cosine", "onecycle", "step", "none"] = "cosine"
    loss: Literal["cross_entropy", "dice", "focal", "dice_focal", "bce_dice"] = "cross_entropy"
    class_weights: list[float] | None = None
    augment: bool = True
    grad_clip: float | None = Field(1.0, gt=0)
    early_stopping_patience: int | None = Field(None, ge=1)
    seed: int = 0
    num_workers: int = Field(1, ge=1, le=1024, description="Ray Train workers (DDP ranks)")
    cpus_per_worker: float = Field(1.0, gt=0)
    use_gpu: bool = False
    amp: bool = True
    channels_last: bool = True
    max_failures: int = Field(2, ge=0)
    monitor: str | None = Field(
        None, description="metric that picks the best epoch; default val_miou (segmentation) or val_accuracy"
    )
    monitor_mode: Literal["min", "max"] | None = Field(None, description="default: min for losses, else max")

    def monitored(self, task: Task) -> tuple[str, str]:
        """The metric that picks the best epoch and early-stops, and whether lower or higher is better."""
        metric = self.monitor or ("val_miou" if task == "segmentation" else "val_accuracy")
        return metric, self.monitor_mode or ("min" if metric.endswith("loss") else "max")


class ChoiceParam(Strict):
    type: Literal["choice"]
    values: list[Any] = Field(min_length=1)


class UniformParam(Strict):
    type: Literal["uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _order(self):
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class LogUniformParam(UniformParam):
    type: Literal["loguniform"]

    @model_validator(mode="after")
    def _positive(self):
        if self.low <= 0:
            raise ValueError(f"loguniform needs low > 0 (got {self.low}); use uniform for ranges that touch 0")
        return self


class QUniformParam(UniformParam):
    type: Literal["quniform"]
    q: float = Field(gt=0)


class RandIntParam(Strict):
    type: Literal["randint"]
    low: int
    high: int

    @model_validator(mode="after")
    def _order(self):
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


SearchParam = Annotated[
    ChoiceParam | UniformParam | LogUniformParam | QUniformParam | RandIntParam,
    Field(discriminator="type"),
]


class SearchSection(Strict):
    backend: Literal["ray", "nni"] = "ray"
    algo: str = "random"
    scheduler: Literal["fifo", "asha", "hyperband", "pbt"] | None = Field(
        None, description="Ray backend: trial scheduler; default follows algo (asha, pbt, bohb) or fifo")
    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    trials: int = Field(8, ge=1, le=10_000)
    max_epochs: int = Field(3, ge=1)
    concurrency: int = Field(1, ge=1)
    space: dict[str, SearchParam] = Field(default_factory=dict)


class ServingSection(Strict):
    max_pixels: int = Field(16_000_000, gt=0, description="larger images are refused (decompression bombs)")
    batch_size: int = Field(8, ge=1, le=256)
    max_batch_delay_ms: int = Field(10, ge=0, le=10_000)
    default_output: Literal["mask", "json", "overlay", "cutout", "topk"] = "mask"
    top_k: int = Field(5, ge=1)


class Recipe(Strict):
    """A whole use case. `task` follows from the data format and must match the model."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    data: DataSection
    model: ModelSection
    training: TrainingSection = TrainingSection()
    search: SearchSection = SearchSection()
    serving: ServingSection = ServingSection()

    @property
    def task(self) -> Task:
        return FORMATS[self.data.format].task

    @model_validator(mode="after")
    def _model_fits_task(self) -> Recipe:
        allowed = [name for name, entry in MODELS.items() if entry.in_recipes and self.task in entry.tasks]
        if self.model.name not in allowed:
            raise ValueError(
                f"model.name {self.model.name!r} is not a {self.task} model, but data.format "
                f"{self.data.format!r} is a {self.task} dataset; use one of: {', '.join(allowed)}"
            )
        return self
