"""A supervised distillation proxy: how well an architecture can imitate the teacher.

An architecture is trained alone by A2D's loss on states of the teacher's own play (no
environment steps, no shared weights), then scored on held-out states of that play: the share
of states where its most likely action is the teacher's.  On MinAtar Breakout this ranks
12 architectures of the search space the way their stand-alone distilled training ranks them
with Kendall tau 0.72 (2,000 steps; 0.69 at the search's 1,000 steps with its sparse layers
pruned as they train), where the weight-sharing supernet's estimate reached -0.37
(experiments/results/ranking_breakout/ranking.md, docs/search.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from distill.losses import PolicyKind, distill_loss


@dataclass(frozen=True)
class TeacherPlay:
    """States of the teacher's play with its outputs on them.

    Attributes:
        obs: observations ``[N, *obs_shape]``.
        teacher_dist: the teacher's distribution parameters ``[N, P]``.
        teacher_value: the teacher's value ``[N]``.
    """

    obs: torch.Tensor
    teacher_dist: torch.Tensor
    teacher_value: torch.Tensor

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    def split(self, first: int) -> tuple[TeacherPlay, TeacherPlay]:
        """The first ``first`` states and the rest (training and held-out)."""
        if not 0 < first < len(self):
            raise ValueError(f"split: got {first}; allowed: 0 < first < {len(self)}")
        return (TeacherPlay(self.obs[:first], self.teacher_dist[:first],
                            self.teacher_value[:first]),
                TeacherPlay(self.obs[first:], self.teacher_dist[first:],
                            self.teacher_value[first:]))


@dataclass(frozen=True)
class ProxyScore:
    """An architecture's proxy scores on the held-out states.

    Attributes:
        agreement: categorical policies: the share of states where the student's most likely
            action is the teacher's; Gaussian policies: ``exp(-actor_kl)``.  In ``[0, 1]``,
            higher is better.
        distill_loss: the held-out A2D loss (actor and critic terms with their coefficients).
        actor_kl: the held-out ``KL(pi_teacher || pi_student)`` (nats).
    """

    agreement: float
    distill_loss: float
    actor_kl: float


def distill_proxy(model: nn.Module, train: TeacherPlay, held_out: TeacherPlay, *,
                  kind: PolicyKind, steps: int, batch_size: int, lr: float, actor_coef: float,
                  critic_coef: float, seed: int,
                  before_step: Callable[[float], None] | None = None) -> ProxyScore:
    """Train ``model`` (in place) for ``steps`` Adam steps of ``batch_size`` states drawn from
    ``train`` (seeded), then score it on ``held_out``.

    Args:
        model: an actor-critic ``obs -> (dist_params [B, P], value [B])``, freshly built.
        kind: the policy's distribution.
        steps, batch_size, lr: the supervised training.
        actor_coef, critic_coef: A2D's weights (as in the search's distillation).
        seed: the minibatch order.
        before_step: called before each step with the training's progress in [0, 1)
            (e.g. pruning a sparse model to its schedule, as its real training would).
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        if before_step is not None:
            before_step(step / steps)
        index = torch.randint(len(train), (batch_size,), generator=generator)
        loss = distill_loss(model, train.obs[index], train.teacher_dist[index],
                            train.teacher_value[index], kind=kind, actor_coef=actor_coef,
                            critic_coef=critic_coef)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        dist, value = model(held_out.obs)
        loss = distill_loss(model, held_out.obs, held_out.teacher_dist, held_out.teacher_value,
                            kind=kind, actor_coef=actor_coef, critic_coef=critic_coef,
                            outputs=(dist, value))
        if kind == "categorical":
            agreement = float((dist.argmax(-1) == held_out.teacher_dist.argmax(-1)).float()
                              .mean())
        else:
            agreement = float(torch.exp(-loss.actor_kl))
    return ProxyScore(agreement=agreement, distill_loss=float(loss.total),
                      actor_kl=float(loss.actor_kl))
