"""Evaluate a policy for a number of episodes, and render one episode to a GIF."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from a3cs.rl.envs import make_env
from a3cs.rl.networks import (
    ActorCritic,
    action_noise,
    greedy_action,
    sample_action,
)
from a3cs_common.errors import ConfigError
from a3cs_common.io import atomic_write_bytes
from a3cs_common.torch_settings import acting_kernels
from distill.losses import PolicyKind

#: ``obs [N, *obs_shape] -> actions [N]``: any policy, ours or another library's.
PolicyFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class EvalResult:
    """Undiscounted returns of complete episodes."""

    episodes: int
    mean_return: float
    std_return: float
    min_return: float
    max_return: float
    mean_length_steps: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def model_policy(model: nn.Module, *, deterministic: bool = False,
                 seed: int = 0) -> PolicyFn:
    """A :data:`PolicyFn` for one of our networks (sampling with its own generator).

    The policy acts with the network's weights as they are now (an :class:`ActorCritic`
    runs :meth:`~ActorCritic.inference`, ~3x faster than the module at batch 8); build a
    new one after changing them.
    """
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    forward = model.inference() if isinstance(model, ActorCritic) else model
    kind: PolicyKind = model.kind
    action_dim = model.action_dim

    def act(obs: np.ndarray) -> np.ndarray:
        with acting_kernels(device), torch.inference_mode():
            dist, _ = forward(torch.as_tensor(obs, device=device))
            if deterministic:
                return greedy_action(dist, kind).cpu().numpy()
            noise = action_noise(dist.shape[:-1], kind, action_dim, generator)
            return sample_action(dist.cpu().numpy(), kind, noise.numpy())

    return act


def evaluate_policy(policy: PolicyFn, env_id: str, episodes: int, *, seed: int = 10_000,
                    num_envs: int = 8) -> EvalResult:
    """Run ``episodes`` complete episodes (at most ``num_envs`` at a time).

    Environment ``i`` runs a fixed quota of episodes, so short episodes are not
    over-represented.  The default seed keeps evaluation episodes apart from training's.

    Raises:
        ConfigError: ``episodes < 1`` or an unknown env id.
    """
    if episodes < 1:
        raise ConfigError("--episodes", episodes, "an integer >= 1")
    n = min(num_envs, episodes)
    quota = np.full(n, episodes // n)
    quota[: episodes % n] += 1
    envs = make_env(env_id, n, seed)
    obs = envs.last_obs
    running = np.zeros(n)
    lengths = np.zeros(n, dtype=np.int64)
    returns: list[float] = []
    steps: list[int] = []
    done_count = np.zeros(n, dtype=np.int64)
    try:
        while (done_count < quota).any():
            obs, reward, terminated, truncated, _ = envs.step(policy(obs))
            running += reward
            lengths += 1
            for i in np.flatnonzero(terminated | truncated):
                if done_count[i] < quota[i]:
                    returns.append(float(running[i]))
                    steps.append(int(lengths[i]))
                    done_count[i] += 1
                running[i], lengths[i] = 0.0, 0
    finally:
        envs.close()
    values = np.array(returns)
    return EvalResult(episodes=len(returns), mean_return=float(values.mean()),
                      std_return=float(values.std()), min_return=float(values.min()),
                      max_return=float(values.max()),
                      mean_length_steps=float(np.mean(steps)))


# --------------------------------------------------------------------------------------------
# GIF of one episode

# Colours of MinAtar's channels (black background; one colour per object channel).
_MINATAR_PALETTE = np.array([
    [0, 0, 0], [230, 80, 60], [70, 160, 230], [250, 210, 60], [120, 200, 90],
    [200, 110, 220], [240, 150, 60], [90, 220, 210], [220, 220, 220], [160, 120, 80],
    [110, 110, 230],
], dtype=np.uint8)


def _minatar_frame(state: np.ndarray, scale: int = 24) -> np.ndarray:
    """``[10, 10, C]`` bool MinAtar state -> ``[10*scale, 10*scale, 3]`` uint8 RGB."""
    channels = state.shape[-1]
    index = np.where(state.any(-1), np.argmax(state * np.arange(1, channels + 1), -1) + 1, 0)
    rgb = _MINATAR_PALETTE[index % len(_MINATAR_PALETTE)]
    return np.kron(rgb, np.ones((scale, scale, 1), dtype=np.uint8))


def render_gif(policy: PolicyFn, env_id: str, path: str | Path, *, seed: int = 10_000,
               max_steps: int = 5_000, fps: int = 15) -> tuple[Path, float]:
    """Play one episode and write it as an animated GIF (MinAtar and ALE).

    Returns:
        ``(path, return)``.

    Raises:
        ConfigError: the environment is not a MinAtar or ALE game.
    """
    from PIL import Image

    envs = make_env(env_id, 1, seed, render_mode="rgb_array")
    if envs.family not in ("minatar", "atari"):
        envs.close()
        raise ConfigError("--gif", str(path), "a MinAtar or ALE environment (pixels to draw)")

    def frame() -> np.ndarray:
        env = envs.envs[0]
        if envs.family == "minatar":
            return _minatar_frame(env.unwrapped.game.state())
        return np.asarray(env.render())

    frames = [frame()]
    obs, total = envs.last_obs, 0.0
    try:
        for _ in range(max_steps):
            obs, reward, terminated, truncated, _ = envs.step(policy(obs))
            total += float(reward[0])
            if terminated[0] or truncated[0]:
                break
            frames.append(frame())
    finally:
        envs.close()
    images = [Image.fromarray(f) for f in frames]
    buffer = _gif_bytes(images, duration_ms=math.ceil(1000 / fps))
    return atomic_write_bytes(path, buffer), total


def _gif_bytes(images: list[Any], duration_ms: int) -> bytes:
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:],
                   duration=duration_ms, loop=0)
    return out.getvalue()
