"""States of the teacher's own play, with its outputs, for the distillation proxy
(:mod:`distill.proxy`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from a3cs.rl.envs import make_env
from a3cs.rl.evaluate import model_policy
from distill.proxy import TeacherPlay


def collect_teacher_play(model: nn.Module, env_id: str, samples: int, *, seed: int,
                         policy_seed: int = 1, num_envs: int = 16) -> TeacherPlay:
    """``samples`` consecutive states of ``num_envs`` environments (seeded ``seed``) played by
    ``model``'s stochastic policy (its action noise seeded ``policy_seed``), with the model's
    distribution parameters ``[samples, P]`` and values ``[samples]`` on them (on the CPU)."""
    policy = model_policy(model, seed=policy_seed)
    envs = make_env(env_id, num_envs, seed)
    try:
        obs = envs.last_obs
        frames, collected = [], 0
        while collected < samples:
            frames.append(np.array(obs))
            collected += len(frames[-1])
            obs, *_ = envs.step(policy(obs))
    finally:
        envs.close()
    batch = torch.as_tensor(np.concatenate(frames)[:samples])
    device = next(model.parameters()).device
    with torch.no_grad():
        dist, value = model(batch.to(device))
    return TeacherPlay(obs=batch, teacher_dist=dist.cpu(), teacher_value=value.cpu())
