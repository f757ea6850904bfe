"""A2D distillation losses: the teacher's actor and critic into the student.

Actor term: ``KL(pi_teacher || pi_student)`` on the states the student visits (its rollout);
critic term: ``MSE(V_teacher, V_student)``.  Policies are given as distribution parameters
(see :mod:`a3cs.rl.networks`): categorical logits ``[B, A]`` or Gaussian ``[mean, log_std]``
``[B, 2D]``.  Each term has its own coefficient; a coefficient of 0 switches the term off
(no gradient flows through it) for ablations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F

PolicyKind = Literal["categorical", "gaussian"]


class ActorCriticModule(Protocol):
    """What distillation needs of a network: ``obs [B, ...] -> (dist_params, value [B])``."""

    def __call__(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def categorical_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(teacher) || softmax(student))`` per row, ``[B]`` (nats)."""
    t_logp = F.log_softmax(teacher_logits, dim=-1)
    s_logp = F.log_softmax(student_logits, dim=-1)
    return (t_logp.exp() * (t_logp - s_logp)).sum(-1)


def gaussian_kl(teacher_params: torch.Tensor, student_params: torch.Tensor) -> torch.Tensor:
    """``KL(N_teacher || N_student)`` per row for diagonal Gaussians given as
    ``[mean, log_std]``, ``[B]`` (nats)."""
    t_mean, t_log_std = teacher_params.chunk(2, dim=-1)
    s_mean, s_log_std = student_params.chunk(2, dim=-1)
    var_ratio = (2.0 * (t_log_std - s_log_std)).exp()
    mean_term = ((t_mean - s_mean) * (-s_log_std).exp()).square()
    return 0.5 * (var_ratio + mean_term - 1.0).sum(-1) + (s_log_std - t_log_std).sum(-1)


def policy_kl(kind: PolicyKind, teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """``KL(pi_teacher || pi_student)`` per row, ``[B]``."""
    return categorical_kl(teacher, student) if kind == "categorical" else gaussian_kl(
        teacher, student)


@dataclass(frozen=True)
class A2DLoss:
    """The distillation loss and its terms (the terms detached, for logging)."""

    total: torch.Tensor
    actor_kl: torch.Tensor
    critic_mse: torch.Tensor


def a2d_loss(student_dist: torch.Tensor, student_value: torch.Tensor,
             teacher_dist: torch.Tensor, teacher_value: torch.Tensor, *, kind: PolicyKind,
             actor_coef: float, critic_coef: float) -> A2DLoss:
    """``actor_coef * mean KL(pi_T || pi_S) + critic_coef * mean (V_T - V_S)^2``.

    Args:
        student_dist, teacher_dist: distribution parameters ``[B, P]``.
        student_value, teacher_value: ``[B]``.
        kind: ``categorical`` or ``gaussian``.
        actor_coef, critic_coef: weights >= 0; 0 leaves the term out of ``total``.
    """
    kl = policy_kl(kind, teacher_dist, student_dist).mean()
    mse = F.mse_loss(student_value, teacher_value)
    total = student_value.new_zeros(())
    if actor_coef > 0.0:
        total = total + actor_coef * kl
    if critic_coef > 0.0:
        total = total + critic_coef * mse
    return A2DLoss(total=total, actor_kl=kl.detach(), critic_mse=mse.detach())


def distill_loss(model: ActorCriticModule, obs: torch.Tensor, teacher_dist: torch.Tensor,
                 teacher_value: torch.Tensor, *, kind: PolicyKind, actor_coef: float,
                 critic_coef: float,
                 outputs: tuple[torch.Tensor, torch.Tensor] | None = None) -> A2DLoss:
    """:func:`a2d_loss` of ``model`` on a batch of observations ``[B, ...]``.

    Args:
        outputs: the model's ``(dist_params, value)`` on ``obs`` if already computed (the
            RL loss's forward pass), to avoid a second forward.
    """
    dist, value = outputs if outputs is not None else model(obs)
    return a2d_loss(dist, value, teacher_dist, teacher_value, kind=kind,
                    actor_coef=actor_coef, critic_coef=critic_coef)
