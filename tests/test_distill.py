"""A2D distillation: losses, weights and schedules, the teacher's compatibility check."""

from __future__ import annotations

import math

import pytest
import torch

from a3cs_common.errors import ConfigError
from a3cs_common.schema import validate
from distill.losses import a2d_loss, categorical_kl, distill_loss, gaussian_kl
from distill.schedules import DistillConfig, weight_schedule
from distill.teacher import Teacher


def test_loss_is_zero_for_identical_teacher_and_student() -> None:
    logits = torch.randn(16, 5)
    values = torch.randn(16)
    loss = a2d_loss(logits, values, logits.clone(), values.clone(), kind="categorical",
                    actor_coef=1.0, critic_coef=0.5)
    assert float(loss.total) == pytest.approx(0.0, abs=1e-7)
    params = torch.cat([torch.randn(8, 3), torch.randn(8, 3) * 0.3], dim=-1)
    gauss = a2d_loss(params, values[:8], params.clone(), values[:8].clone(), kind="gaussian",
                     actor_coef=1.0, critic_coef=1.0)
    assert float(gauss.total) == pytest.approx(0.0, abs=1e-6)


def test_loss_is_positive_otherwise() -> None:
    torch.manual_seed(0)
    teacher, student = torch.randn(16, 4), torch.randn(16, 4)
    v_t, v_s = torch.randn(16), torch.randn(16)
    loss = a2d_loss(student, v_s, teacher, v_t, kind="categorical", actor_coef=1.0,
                    critic_coef=0.5)
    assert float(loss.actor_kl) > 0 and float(loss.critic_mse) > 0
    assert float(loss.total) == pytest.approx(float(loss.actor_kl) + 0.5 * float(loss.critic_mse))
    # only the value differs: the critic term alone is positive
    same_policy = a2d_loss(teacher, v_s, teacher, v_t, kind="categorical", actor_coef=1.0,
                           critic_coef=1.0)
    assert float(same_policy.actor_kl) == pytest.approx(0.0, abs=1e-7)
    assert float(same_policy.total) > 0


def test_kl_matches_the_definition() -> None:
    p_logits = torch.tensor([[1.0, 0.0, -1.0]])
    q_logits = torch.tensor([[0.0, 0.5, 0.0]])
    p, q = p_logits.softmax(-1)[0], q_logits.softmax(-1)[0]
    expected = float((p * (p / q).log()).sum())
    assert float(categorical_kl(p_logits, q_logits)) == pytest.approx(expected, rel=1e-6)
    # Gaussians: KL(N(0, 1) || N(1, 2^2)) = log 2 + (1 + 1) / 8 - 1/2
    teacher = torch.tensor([[0.0, 0.0]])
    student = torch.tensor([[1.0, math.log(2.0)]])
    assert float(gaussian_kl(teacher, student)) == pytest.approx(math.log(2) + 2 / 8 - 0.5)


def test_a_switched_off_term_sends_no_gradient() -> None:
    student = torch.randn(4, 3, requires_grad=True)
    value = torch.randn(4, requires_grad=True)
    loss = a2d_loss(student, value, torch.randn(4, 3), torch.randn(4), kind="categorical",
                    actor_coef=0.0, critic_coef=1.0)
    loss.total.backward()
    assert student.grad is None and value.grad is not None
    assert float(loss.actor_kl) > 0  # still reported


def test_distill_loss_runs_the_model_or_reuses_its_outputs() -> None:
    model = torch.nn.Linear(6, 4)

    def actor_critic(obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(obs)
        return out[:, :3], out[:, 3]

    obs = torch.randn(5, 6)
    dist, value = actor_critic(obs)
    teacher_dist, teacher_value = dist.detach() + 0.1, value.detach() - 0.2
    a = distill_loss(actor_critic, obs, teacher_dist, teacher_value, kind="categorical",
                     actor_coef=1.0, critic_coef=0.5)
    b = distill_loss(actor_critic, obs, teacher_dist, teacher_value, kind="categorical",
                     actor_coef=1.0, critic_coef=0.5, outputs=(dist, value))
    torch.testing.assert_close(a.total, b.total)
    assert float(a.critic_mse) == pytest.approx(0.04, rel=1e-5)


def test_schedules() -> None:
    constant = weight_schedule(DistillConfig())
    assert constant(0.0) == constant(1.0) == 1.0
    linear = weight_schedule(DistillConfig(schedule="linear", end_fraction=0.5, end_scale=0.2))
    assert linear(0.0) == 1.0
    assert linear(0.25) == pytest.approx(0.6)
    assert linear(0.5) == pytest.approx(0.2) and linear(0.9) == pytest.approx(0.2)


def test_config_rejects_bad_weights() -> None:
    with pytest.raises(ConfigError, match="actor_coef"):
        validate(DistillConfig, {"actor_coef": 0.0, "critic_coef": 0.0})
    with pytest.raises(ConfigError, match="critic_coef"):
        validate(DistillConfig, {"critic_coef": -1})
    with pytest.raises(ConfigError, match="did you mean"):
        validate(DistillConfig, {"actor_coeff": 1.0})


def test_teacher_is_frozen_and_checks_spaces() -> None:
    model = torch.nn.Linear(4, 3)

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.net(obs)
            return out[:, :2], out[:, 2]

    teacher = Teacher(Wrapped(), kind="categorical", obs_shape=(4,), action_space="Discrete(2)",
                      source="t.pt")
    assert not any(p.requires_grad for p in teacher.model.parameters())
    dist, value = teacher.outputs(torch.randn(10, 4), chunk=3)
    assert dist.shape == (10, 2) and value.shape == (10,) and not dist.requires_grad
    teacher.check_compatible((4,), "Discrete(2)")
    with pytest.raises(ConfigError, match=r"action space Discrete\(3\)"):
        teacher.check_compatible((4,), "Discrete(3)")
    with pytest.raises(ConfigError, match="observation shape"):
        teacher.check_compatible((5,), "Discrete(2)")
