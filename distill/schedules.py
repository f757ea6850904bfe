"""Distillation weights and their schedule over training.

A schedule is a ``Callable[[progress], float]`` with ``progress`` in [0, 1] (the fraction of
training done), as for every quantity that changes during training in this project.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import Field, model_validator

from a3cs_common.errors import ConfigError
from a3cs_common.schema import FrozenModel

Schedule = Callable[[float], float]


class DistillConfig(FrozenModel):
    """Weights of the A2D terms and how they change during training."""

    actor_coef: float = Field(default=1.0, ge=0.0,
                              description="weight of KL(pi_teacher || pi_student); 0: off")
    critic_coef: float = Field(default=0.5, ge=0.0,
                               description="weight of MSE(V_teacher, V_student); 0: off")
    schedule: Literal["constant", "linear"] = Field(
        default="constant",
        description="constant weights, or weights that fall linearly to end_scale times "
        "their value at progress end_fraction and stay there")
    end_fraction: float = Field(default=1.0, gt=0.0, le=1.0,
                                description="progress at which a linear schedule ends")
    end_scale: float = Field(default=0.0, ge=0.0,
                             description="final multiple of the weights (linear schedule)")

    @model_validator(mode="after")
    def _some_term(self) -> DistillConfig:
        if self.actor_coef == 0.0 and self.critic_coef == 0.0:
            raise ConfigError("distill.actor_coef", 0.0,
                              "at least one of actor_coef and critic_coef > 0 (or no teacher)")
        return self


def weight_schedule(config: DistillConfig) -> Schedule:
    """The multiplier of both weights at training progress ``p`` in [0, 1]."""
    if config.schedule == "constant":
        return lambda progress: 1.0
    end, final = config.end_fraction, config.end_scale

    def linear(progress: float) -> float:
        t = min(max(progress / end, 0.0), 1.0)
        return 1.0 + (final - 1.0) * t

    return linear
