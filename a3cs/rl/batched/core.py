"""MinAtar's games stepped as tensors: every environment at once, on the training device.

A game keeps its state as tensors with a leading ``[N]`` environment dimension and defines
``_reset_where(mask, draws)``, ``_act(actions, draws) -> (reward, terminal)`` and
``_observe() -> [N, C, 10, 10] bool``, each written once, for all environments, from the
reference implementation (the ``minatar`` package, v1.0.15) line by line.  This base class
adds what MinAtar's ``Environment`` wrapper and a3cs's vector env add around a game: sticky
actions (0.1), the minimal action set (``-v1``) or the full one (``-v0``), same-step
auto-reset, and the episode bookkeeping.

Randomness: each step draws one row of ``draws_per_step`` uniforms in [0, 1) per environment
(float64, from the env's own ``torch.Generator`` on its device), and the game takes them in
the order MinAtar's code calls its RandomState (sticky action first, then the game's draws,
then the reset's), through a per-environment cursor (:class:`Draws`).  MinAtar's calls map
to uniforms exactly as numpy's definitions do: ``rand() = u``, ``randint(n) = floor(u * n)``,
``randint(lo, hi) = lo + floor(u * (hi - lo))``.  The numbers are torch's, not numpy's
MT19937 stream, so a seed gives other episodes than MinAtar's with the same seed; given the
same uniforms, the games are step-for-step identical to MinAtar's (tests/test_batched_minatar.py
replays them through MinAtar's own code for 10 k steps per game).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from a3cs_common.errors import ConfigError

#: MinAtar's sticky-action probability (Environment's default).
STICKY_ACTION_PROB = 0.1
#: MinAtar's action letters, in its action index order.
ACTION_MAP = ("n", "l", "u", "r", "d", "f")


class Draws:
    """One step's uniforms ``[N, K]`` and a cursor per environment: a draw site takes the
    next uniform of the environments where it draws (``mask``), as MinAtar's sequential
    RandomState calls would."""

    def __init__(self, uniforms: torch.Tensor) -> None:
        self.uniforms = uniforms
        self.cursor = torch.zeros(uniforms.shape[0], dtype=torch.long, device=uniforms.device)

    def take(self, mask: torch.Tensor, count: int = 1) -> torch.Tensor:
        """``[N, count]`` uniforms (rows outside ``mask`` get unused values and keep their
        cursor)."""
        index = self.cursor[:, None] + torch.arange(count, device=self.cursor.device)
        values = self.uniforms.gather(1, index.clamp_(max=self.uniforms.shape[1] - 1))
        self.cursor += mask.long() * count
        return values

    def uniform(self, mask: torch.Tensor) -> torch.Tensor:
        """``rand()`` where ``mask``, ``[N]``."""
        return self.take(mask)[:, 0]

    def randint(self, mask: torch.Tensor, low: int | torch.Tensor,
                high: int | torch.Tensor | None = None) -> torch.Tensor:
        """``randint(low, high)`` (``randint(low)``: from 0) where ``mask``, ``[N]`` long."""
        if high is None:
            low, high = 0, low
        return (low + torch.floor(self.uniform(mask) * (high - low))).long()


class BatchedMinAtar:
    """``num_envs`` copies of one MinAtar game as tensors on ``device``, with sticky actions
    and same-step auto-reset, behind the vector-env interface the training loop uses.

    ``step(actions)`` takes ``[N]`` long action indices (into the env's action set) on any
    device and returns ``(obs, rewards, terminations, truncations, info)``: ``obs`` float32
    ``[N, C, 10, 10]`` (channel-first, as :func:`a3cs.rl.envs.make_env` gives MinAtar),
    ``rewards`` float32 ``[N]``, ``terminations`` bool ``[N]``, ``truncations`` all False
    (MinAtar has no time limit), ``info`` empty; an environment whose episode ended returns
    the first observation of its next one.  All on ``device``; no host round trip.
    """

    #: Subclasses: the game's name in MinAtar, its channels, its minimal action set (letters)
    #: and how many uniforms one step may take at most.
    game: str
    channels: int
    minimal_actions: tuple[str, ...]
    draws_per_step: int
    backend = "batched"
    family = "minatar"

    def __init__(self, env_id: str, num_envs: int, seed: int, device: torch.device) -> None:
        if num_envs < 1:
            raise ConfigError("num_envs", num_envs, "an integer >= 1")
        self.env_id = env_id
        self.num_envs = num_envs
        self.device = torch.device(device)
        letters = self.minimal_actions if env_id.endswith("-v1") else ACTION_MAP
        #: MinAtar's action index of each of the env's actions (``[A]`` long)
        self.action_set = torch.tensor([ACTION_MAP.index(a) for a in letters],
                                       device=self.device)
        self.single_action_space = gym.spaces.Discrete(len(letters))
        self.single_observation_space = gym.spaces.Box(0.0, 1.0, (self.channels, 10, 10),
                                                       np.float32)
        self.generator = torch.Generator(device=self.device)
        self.rows = torch.arange(num_envs, device=self.device)
        self._allocate()
        self.reset(seed=seed)

    # -- the game's part --------------------------------------------------------------------
    def _allocate(self) -> None:
        """Create the state tensors (their values come from the first reset)."""
        raise NotImplementedError

    def _reset_where(self, mask: torch.Tensor, draws: Draws) -> None:
        raise NotImplementedError

    def _act(self, actions: torch.Tensor, draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _observe(self) -> torch.Tensor:
        raise NotImplementedError

    # -- the wrapper's part -----------------------------------------------------------------
    def _long(self, value: int = 0) -> torch.Tensor:
        return torch.full((self.num_envs,), value, dtype=torch.long, device=self.device)

    def _bool(self, value: bool = False) -> torch.Tensor:
        return torch.full((self.num_envs,), value, dtype=torch.bool, device=self.device)

    def _uniforms(self) -> torch.Tensor:
        return torch.rand((self.num_envs, self.draws_per_step), generator=self.generator,
                          dtype=torch.float64, device=self.device)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
        """Start every environment's episode (re-seeding the generator when ``seed`` is
        given); the last action (sticky actions) starts at 0, as in MinAtar."""
        if seed is not None:
            self.generator.manual_seed(seed)
        self.reset_with(self._uniforms())
        return self.last_obs, {}

    def reset_with(self, uniforms: torch.Tensor) -> torch.Tensor:
        """Start every episode with given uniforms ``[N, draws_per_step]``; the draws used
        ``[N]``.  :meth:`reset` draws them; tests pass MinAtar's."""
        self.last_action = self._long(0)
        draws = Draws(uniforms.to(self.device, torch.float64))
        self._reset_where(self._bool(True), draws)
        self.last_obs = self._observe().float()
        return draws.cursor

    def step_with(self, actions: torch.Tensor, uniforms: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step with given uniforms ``[N, draws_per_step]``: ``(obs, rewards,
        terminations, draws used)``.  :meth:`step` draws them; tests pass MinAtar's."""
        draws = Draws(uniforms.to(self.device, torch.float64))
        chosen = self.action_set[actions.to(self.device).long()]
        sticky = draws.uniform(self._bool(True)) < STICKY_ACTION_PROB
        chosen = torch.where(sticky, self.last_action, chosen)
        self.last_action = chosen
        reward, terminal = self._act(chosen, draws)
        # masked, not branched on terminal.any(): that would wait for the device every step
        self._reset_where(terminal, draws)
        self.last_obs = self._observe().float()
        return self.last_obs, reward.float(), terminal, draws.cursor

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                   torch.Tensor, dict[str, Any]]:
        obs, reward, terminal, _ = self.step_with(actions, self._uniforms())
        return obs, reward, terminal, torch.zeros_like(terminal), {}

    def close(self) -> None:
        """Nothing to release (gymnasium's interface)."""

    def __getstate__(self) -> dict[str, Any]:
        state = {k: (v.cpu() if isinstance(v, torch.Tensor) else v)
                 for k, v in self.__dict__.items() if k != "generator"}
        state["generator_state"] = self.generator.get_state()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        generator_state = state.pop("generator_state")
        self.__dict__.update(state)
        self.device = torch.device(self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.set_state(generator_state)
        for key, value in self.__dict__.items():
            if isinstance(value, torch.Tensor):
                setattr(self, key, value.to(self.device))
