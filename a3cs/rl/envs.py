"""Environments: one :func:`make_env` for MinAtar, classic control, ALE Atari and MuJoCo.

Every family comes back as a :class:`SyncEnvs`, a gymnasium vector env that steps its
sub-environments in this process with *same-step* autoreset (an episode's last step returns
the first observation of the next episode, and the last observation in
``info["final_obs"]`` with the mask ``info["_final_obs"]``).  Observations are batched
arrays, ready for a network:

* MinAtar (``MinAtar/Breakout-v1``, Asterix, Freeway, Seaquest, SpaceInvaders; ``-v0``: full
  action set): float32 ``[C, 10, 10]`` channel-first (MinAtar itself is ``[10, 10, C]`` bool);
  sticky actions 0.1 and no frame skip, as MinAtar defines them.
* classic control (``CartPole-v1``, ``Acrobot-v1``, ``MountainCar-v0``, ``Pendulum-v1``, ...):
  float32 vectors, with gymnasium's time limits.
* ALE Atari (``ALE/Pong-v5``, any of ale-py's ROMs): the standard preprocessing, noop reset (up
  to 30), frame skip 4 with max-pooling, 84x84 grayscale, 4 frames stacked: uint8
  ``[4, 84, 84]`` (networks scale by 1/255).  Sticky actions 0.25 (v5).  Rewards are clipped
  to their sign by the trainer (``clip_reward``), not here, so returns stay game scores.
* MuJoCo (``HalfCheetah-v5``, ...; needs the ``mujoco`` extra): float32 vectors; continuous
  actions are clipped to the action space here (the policy's samples are not).

:class:`SyncEnvs` exists because gymnasium's ``SyncVectorEnv`` spends as long in its own
bookkeeping as MinAtar spends in the game (measured: 238 us vs about 100 us per step of 8
Breakout envs); this one writes observations straight into one batch array.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from a3cs_common.errors import ConfigError

Family = Literal["minatar", "classic", "atari", "mujoco"]

MINATAR_GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")
CLASSIC_IDS = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0",
               "Pendulum-v1")
MUJOCO_IDS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5",
              "Swimmer-v5", "InvertedPendulum-v5", "InvertedDoublePendulum-v5", "Reacher-v5")


def known_env_ids() -> list[str]:
    """Every id :func:`make_env` accepts besides the ``ALE/<Game>-v5`` family."""
    minatar = [f"MinAtar/{g}-v{v}" for g in MINATAR_GAMES for v in (1, 0)]
    return [*minatar, *CLASSIC_IDS, *MUJOCO_IDS]


def env_family(env_id: str) -> Family:
    """The family of ``env_id``.

    Raises:
        ConfigError: the id is not one :func:`make_env` can build.
    """
    if env_id in CLASSIC_IDS:
        return "classic"
    if env_id in MUJOCO_IDS:
        return "mujoco"
    if env_id.startswith("MinAtar/") and env_id in known_env_ids():
        return "minatar"
    if env_id.startswith("ALE/") and env_id.endswith("-v5"):
        _register_ale()
        if env_id in gym.envs.registry:
            return "atari"
    hint = difflib.get_close_matches(env_id, known_env_ids(), n=1, cutoff=0.5)
    allowed = ("MinAtar/<Game>-v1 (Asterix, Breakout, Freeway, Seaquest, SpaceInvaders), "
               f"{', '.join(CLASSIC_IDS)}, ALE/<Game>-v5, or MuJoCo {', '.join(MUJOCO_IDS[:3])}...")
    if hint:
        allowed = f"did you mean '{hint[0]}'? ({allowed})"
    raise ConfigError("--env", env_id, allowed)


def _register_ale() -> None:
    import ale_py

    gym.register_envs(ale_py)


def _single_env_factory(env_id: str, family: Family,
                        render_mode: str | None = None) -> Callable[[], gym.Env]:
    if family == "minatar":
        from minatar.gym import register_envs

        if env_id not in gym.envs.registry:
            register_envs()
        return lambda: gym.make(env_id, disable_env_checker=True)
    if family == "atari":
        def make_atari() -> gym.Env:
            # frameskip=1: AtariPreprocessing does the skipping (with max-pooling).
            env = gym.make(env_id, frameskip=1, disable_env_checker=True,
                           render_mode=render_mode)
            env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4,
                                                  screen_size=84, grayscale_obs=True)
            return gym.wrappers.FrameStackObservation(env, 4)
        return make_atari
    if family == "mujoco":
        try:
            import mujoco  # noqa: F401
        except ImportError:
            raise ConfigError("--env", env_id, "an installed MuJoCo: pip install "
                              "'a3cs[mujoco]' (or choose a MinAtar/classic control env)") from None
    return lambda: gym.make(env_id, disable_env_checker=True, render_mode=render_mode)


def make_env(env_id: str, num_envs: int, seed: int, *,
             render_mode: str | None = None) -> SyncEnvs:
    """Build ``num_envs`` copies of ``env_id`` as one vector env, reset with ``seed``.

    Sub-environment ``i`` is seeded with ``seed + i``; the returned env has already been
    reset (its first observations are :attr:`SyncEnvs.last_obs`).

    Args:
        env_id: a MinAtar, classic control, ``ALE/<Game>-v5`` or MuJoCo id.
        num_envs: sub-environments (>= 1).
        seed: base seed.
        render_mode: passed to the sub-environments that render (ALE, classic, MuJoCo).

    Raises:
        ConfigError: unknown id, ``num_envs < 1``, or MuJoCo not installed.
    """
    if num_envs < 1:
        raise ConfigError("num_envs", num_envs, "an integer >= 1")
    family = env_family(env_id)
    factory = _single_env_factory(env_id, family, render_mode)
    envs = [factory() for _ in range(num_envs)]
    vec = SyncEnvs(envs, env_id=env_id, family=family)
    vec.reset(seed=seed)
    return vec


def _channels_first(obs: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(obs.transpose(0, 3, 1, 2), dtype=np.float32)


def _steppers(envs: list[gym.Env]) -> list[gym.Env]:
    """What :class:`SyncEnvs` steps for each sub-environment: an env wrapped only in
    ``OrderEnforcing`` (which checks that reset came before step; SyncEnvs resets on
    construction) is stepped unwrapped, ~1 us a sub-environment step less."""
    return [env.env if type(env) is gym.wrappers.OrderEnforcing else env for env in envs]


class SyncEnvs(gym.vector.VectorEnv):
    """Sub-environments stepped one after another in this process (same-step autoreset).

    ``step`` returns ``(obs, rewards, terminations, truncations, info)`` like every gymnasium
    vector env; ``info`` is empty unless an episode ended, when it holds ``final_obs``
    (``[num_envs, *obs_shape]``, valid where ``_final_obs``) for bootstrapping truncated
    episodes.  The object pickles (sub-environments included), which is how a checkpoint
    stores the environments' exact state.
    """

    def __init__(self, envs: list[gym.Env], *, env_id: str, family: Family) -> None:
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        self.envs = envs
        self._steppers = _steppers(envs)
        self.env_id = env_id
        self.family = family
        self.num_envs = len(envs)
        first = envs[0]
        self.single_action_space = first.action_space
        raw_space = first.observation_space
        if family == "minatar":
            h, w, c = raw_space.shape
            self.single_observation_space = gym.spaces.Box(0.0, 1.0, (c, h, w), np.float32)
            self._transform: Callable[[np.ndarray], np.ndarray] | None = _channels_first
        else:
            space = raw_space
            if family in ("classic", "mujoco"):
                space = gym.spaces.Box(raw_space.low.astype(np.float32),
                                       raw_space.high.astype(np.float32), raw_space.shape,
                                       np.float32)
            self.single_observation_space = space
            self._transform = None
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space,
                                                              self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space,
                                                         self.num_envs)
        self._raw = np.zeros((self.num_envs, *raw_space.shape), dtype=raw_space.dtype)
        self._discrete = isinstance(self.single_action_space, gym.spaces.Discrete)
        self.last_obs = self._batch()

    def _batch(self) -> np.ndarray:
        if self._transform is not None:
            return self._transform(self._raw)
        return self._raw.astype(self.single_observation_space.dtype, copy=True)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        for i, env in enumerate(self.envs):
            self._raw[i], _ = env.reset(seed=None if seed is None else seed + i,
                                        options=options)
            if seed is not None:
                env.action_space.seed(seed + i)
        self.last_obs = self._batch()
        return self.last_obs, {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                 np.ndarray, dict[str, Any]]:
        n = self.num_envs
        rewards = np.zeros(n, dtype=np.float64)
        terminations = np.zeros(n, dtype=bool)
        truncations = np.zeros(n, dtype=bool)
        ended: list[tuple[int, np.ndarray]] = []
        if self._discrete:
            acts = actions.tolist()
        else:
            acts = np.clip(actions, self.single_action_space.low, self.single_action_space.high)
        raw = self._raw
        for i, env in enumerate(self._steppers):
            obs, reward, terminated, truncated, _ = env.step(acts[i])
            rewards[i] = reward
            if terminated or truncated:
                terminations[i], truncations[i] = terminated, truncated
                ended.append((i, obs))
                obs, _ = env.reset()
            raw[i] = obs
        self.last_obs = self._batch()
        info: dict[str, Any] = {}
        if ended:
            final_raw = np.zeros_like(raw)
            mask = np.zeros(n, dtype=bool)
            for i, obs in ended:
                final_raw[i] = obs
                mask[i] = True
            final = (self._transform(final_raw) if self._transform is not None
                     else final_raw.astype(self.single_observation_space.dtype))
            info = {"final_obs": final, "_final_obs": mask}
        return self.last_obs, rewards, terminations, truncations, info

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._steppers = _steppers(self.envs)  # (pickles of older versions lack them)

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()
