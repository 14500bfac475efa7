"""What the loop minimises: labels only, or labels plus a teacher's softened predictions.

Distillation (Hinton et al., 2015) adds KL(student_T || teacher_T) * T^2 on temperature-softened
logits, per pixel for segmentation (ignored pixels excluded), per image for classification.
Validation always reports the plain label loss, so a student's val_loss compares with any run's.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from segflow.train.job import TrainJob
from segflow.train.losses import build_loss


class Supervised:
    def __init__(self, model: nn.Module, criterion: nn.Module):
        self.model, self.criterion = model, criterion

    def loss(self, images: torch.Tensor, targets: torch.Tensor):
        """(what training minimises, the model's logits)."""
        return self.label_loss(images, targets)

    def label_loss(self, images: torch.Tensor, targets: torch.Tensor):
        """(the plain label loss, the model's logits): what validation reports for every objective."""
        logits = self.model(images)
        return self.criterion(logits, targets), logits


class Distillation(Supervised):
    def __init__(self, model: nn.Module, criterion: nn.Module, teacher: nn.Module, temperature: float,
                 alpha: float, ignore_index: int):
        super().__init__(model, criterion)
        self.teacher, self.temperature, self.alpha, self.ignore_index = teacher.eval(), temperature, alpha, ignore_index

    def loss(self, images: torch.Tensor, targets: torch.Tensor):
        hard, logits = self.label_loss(images, targets)
        with torch.no_grad():
            teacher_logits = self.teacher(images)
        return self.alpha * self._soft(logits, teacher_logits, targets) + (1 - self.alpha) * hard, logits

    def _soft(self, student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        kl = F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1),
                      reduction="none", log_target=True).sum(dim=1)
        if kl.ndim > 1:  # segmentation: average over labelled pixels only
            valid = targets != self.ignore_index
            kl = kl[valid] if valid.any() else kl.flatten()
        return kl.mean() * t * t


def build_objective(job: TrainJob, model: nn.Module, device: torch.device) -> Supervised:
    criterion = build_loss(job.recipe.training.loss, job.recipe.task, job.model.ignore_index,
                           job.recipe.training.class_weights, job.model.num_classes).to(device)
    if job.distill is None:
        return Supervised(model, criterion)
    from segflow.models.artifact import load_model

    teacher, _, _ = load_model(job.distill.teacher_uri)
    return Distillation(model, criterion, teacher.to(device), job.distill.temperature, job.distill.alpha,
                        job.model.ignore_index)
