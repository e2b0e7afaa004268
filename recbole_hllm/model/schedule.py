"""What each HLLMCreator training step trains: the warm-up and the profile-teacher curriculum.

Why a value passed to ``calculate_loss`` rather than flags the trainer sets on the model:
the step's behaviour is then visible at the call (and in a test), and the model keeps no
state that only the trainer knows how to reset.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True)
class StepPlan:
    """One training step. ``creative``: the title and reconstruction losses train (False in
    the user-side warm-up). ``teacher_share``: the share of creative rows with a profile
    that read the profile's embedding instead of U (see ``profile_teacher_rate``)."""

    creative: bool = True
    teacher_share: float = 0.0


JOINT = StepPlan()  # every loss, U only: the plan outside a schedule (tests, benchmarks)


@dataclass(frozen=True)
class JointSchedule:
    """Epochs ``0 .. warmup_epochs - 1`` train the user side alone; the joint epochs after
    them train everything, with a teacher share falling linearly from ``teacher_rate`` at
    the first joint step to ``teacher_rate / total`` at the last (0 after it)."""

    epochs: int
    warmup_epochs: int = 0
    teacher_rate: float = 0.0

    @classmethod
    def from_config(cls, config) -> "JointSchedule":
        return cls(config["epochs"], config["user_warmup_epochs"] or 0, config["profile_teacher_rate"] or 0.0)

    def plans(self, epoch: int, steps_per_epoch: int) -> Iterator[StepPlan]:
        """The plan of each step of ``epoch`` (an epoch of ``steps_per_epoch`` batches)."""
        if epoch < self.warmup_epochs:
            yield from (StepPlan(creative=False) for _ in range(steps_per_epoch))
            return
        total = (self.epochs - self.warmup_epochs) * steps_per_epoch
        first = (epoch - self.warmup_epochs) * steps_per_epoch
        for step in range(first, first + steps_per_epoch):
            share = self.teacher_rate * max(0.0, 1.0 - step / total) if self.teacher_rate else 0.0
            yield StepPlan(teacher_share=share)
