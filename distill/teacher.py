"""The teacher of A2D distillation: a trained agent, frozen.

A teacher is any trained checkpoint (``a3cs train`` writes them; :func:`a3cs.rl.checkpoint.
load_teacher` reads one into a :class:`Teacher`).  It must see the same observations and act
in the same action space as the student; :meth:`Teacher.check_compatible` says so in one line
before any training starts.  Its outputs on a rollout are computed once per rollout
(:meth:`Teacher.outputs`), not once per minibatch.
"""

from __future__ import annotations

import torch
from torch import nn

from a3cs_common.errors import ConfigError
from distill.losses import PolicyKind


class Teacher:
    """A frozen actor-critic.

    Args:
        model: maps ``obs [B, *obs_shape]`` to ``(dist_params, value [B])``.
        kind: the policy's distribution (``categorical`` or ``gaussian``).
        obs_shape: the observation shape it was trained on.
        action_space: a comparable description of its action space (``Discrete(3)``).
        source: where it came from (a checkpoint path), for messages.
    """

    def __init__(self, model: nn.Module, *, kind: PolicyKind, obs_shape: tuple[int, ...],
                 action_space: str, source: str) -> None:
        self.model = model.eval()
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.kind, self.obs_shape, self.action_space, self.source = (kind, tuple(obs_shape),
                                                                     action_space, source)

    def check_compatible(self, obs_shape: tuple[int, ...], action_space: str,
                         field: str = "--teacher") -> None:
        """Raise a one-line :class:`ConfigError` unless the student's spaces are the teacher's.

        Raises:
            ConfigError: different action space or observation shape.
        """
        if action_space != self.action_space:
            raise ConfigError(field, self.source,
                              f"a teacher with the student's action space {action_space} "
                              f"(this teacher's is {self.action_space})")
        if tuple(obs_shape) != self.obs_shape:
            raise ConfigError(field, self.source,
                              f"a teacher with the student's observation shape "
                              f"{tuple(obs_shape)} (this teacher's is {self.obs_shape})")

    def to(self, device: torch.device | str) -> Teacher:
        self.model.to(device)
        return self

    @torch.no_grad()
    def outputs(self, obs: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """``(dist_params [B, P], value [B])`` for observations ``[B, *obs_shape]``,
        in chunks of ``chunk`` rows to bound memory."""
        dists, values = [], []
        for start in range(0, obs.shape[0], chunk):
            dist, value = self.model(obs[start:start + chunk])
            dists.append(dist)
            values.append(value)
        return torch.cat(dists), torch.cat(values)
