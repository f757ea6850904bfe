"""The one typed configuration of a training run (every hyperparameter, validated up front).

``a3cs train`` lays a user's values over the environment's entry of the defaults table
(:mod:`a3cs.rl.defaults`).  Fields still ``None`` then take the algorithm's default (PPO:
stable-baselines3's Atari-style settings; A2C: stable-baselines3's A2C), filled in by
:class:`TrainConfig`'s validator, and the environment family's (reward clipping on Atari,
observation normalisation on MuJoCo), filled in by :func:`resolve_family_defaults`; so the
``config.yaml`` a run writes holds every value it used.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from a3cs.rl.batched import check_batched
from a3cs_common.errors import ConfigError
from a3cs_common.schema import FrozenModel, Seed, validate
from distill.schedules import DistillConfig
from nas.arch import Arch

ALGO_DEFAULTS: dict[str, dict[str, Any]] = {
    "ppo": {"n_steps": 128, "batch_size": 256, "n_epochs": 4, "learning_rate": 2.5e-4,
            "gae_lambda": 0.95, "normalize_advantage": True, "optimizer": "adam"},
    "a2c": {"n_steps": 5, "batch_size": None, "n_epochs": 1, "learning_rate": 7e-4,
            "gae_lambda": 1.0, "normalize_advantage": False, "optimizer": "rmsprop"},
}


class TrainConfig(FrozenModel):
    """Every setting of ``a3cs train`` (one field per hyperparameter)."""

    env_id: str = Field(default="MinAtar/Breakout-v1", description="environment id")
    total_steps: PositiveInt = Field(default=1_000_000, description="environment steps "
                                     "(all envs together); rounded up to whole rollouts")
    seed: Seed = Field(default=0, description="seed of envs, initial weights and sampling")
    algo: Literal["ppo", "a2c"] = "ppo"
    num_envs: PositiveInt = Field(default=8, description="parallel environments")
    n_steps: PositiveInt | None = Field(default=None, description="steps per env per rollout")
    batch_size: PositiveInt | None = Field(default=None, description="minibatch size "
                                           "(A2C: the whole rollout)")
    n_epochs: PositiveInt | None = Field(default=None, description="passes over a rollout")
    learning_rate: PositiveFloat | None = None
    lr_schedule: Literal["constant", "linear"] = Field(
        default="constant", description="linear: anneal to 0 over training")
    optimizer: Literal["adam", "rmsprop"] | None = None
    optimizer_eps: PositiveFloat = Field(default=1e-5, description="Adam/RMSprop epsilon")
    gamma: float = Field(default=0.99, gt=0.0, le=1.0, description="discount")
    gae_lambda: float | None = Field(default=None, ge=0.0, le=1.0)
    clip_range: PositiveFloat = Field(default=0.2, description="PPO ratio clip")
    clip_schedule: Literal["constant", "linear"] = Field(
        default="constant", description="linear: anneal the PPO ratio clip to 0 over "
        "training, as the learning rate (rl-zoo's Atari PPO: clip_range lin_0.1)")
    clip_range_vf: PositiveFloat | None = Field(default=None, description="PPO value clip")
    ent_coef: float = Field(default=0.0, ge=0.0, description="entropy bonus weight")
    vf_coef: float = Field(default=0.5, ge=0.0, description="value loss weight")
    max_grad_norm: PositiveFloat = Field(default=0.5, description="gradient norm clip")
    normalize_advantage: bool | None = None
    target_kl: PositiveFloat | None = Field(default=None, description="stop an update's "
                                            "epochs early past this approximate KL")
    clip_reward: bool | None = Field(default=None, description="train on sign(reward) "
                                     "(default: on for ALE); returns stay raw")
    normalize_obs: bool | None = Field(default=None, description="running observation "
                                       "normalisation in the network (default: on for MuJoCo)")
    arch: Arch | None = Field(default=None, description="network; none: the reference "
                              "network of the observation type")
    sparsity_start: float = Field(default=0.1, ge=0.0, le=1.0, description="1xN pruning "
                                  "starts at this fraction of training")
    sparsity_end: float = Field(default=0.6, ge=0.0, le=1.0, description="and reaches the "
                                "architecture's sparsity at this fraction")
    sparsity_schedule: Literal["cubic", "reward_aware"] = Field(
        default="cubic", description="cubic: Zhu and Gupta's gradual schedule; reward_aware "
        "(GST): the same schedule, but pruning pauses while the recent return is below "
        "sparsity_tolerance x its best so far, and catches up once it recovers (the target "
        "is reached by the end of training whatever the return)")
    sparsity_tolerance: float = Field(default=0.9, gt=0.0, le=1.0, description="reward_aware: "
                                      "the share of the best recent return below which "
                                      "pruning pauses")
    block_pruning: Literal["layer", "row_balanced"] = Field(
        default="layer", description="how 1xN layers rank blocks: across the whole layer "
        "(block rows end with different counts, and the 1xN engine runs each row group at "
        "the pace of its fullest row), or row_balanced: the same number in every block row, "
        "so the trained layer runs as fast as its nominal sparsity says")
    pruned_gradient: Literal["none", "refined"] = Field(
        default="none", description="none: pruned 1xN / N:M weights are zero and stay pruned "
        "(magnitude pruning); refined (DCIL): pruned weights keep their values and learn from "
        "a second, dense forward pass of each minibatch (the kept weights from the sparse one), "
        "and each pruning step re-ranks all weights, so a pruned weight that grows back is "
        "kept again; twice the update compute")
    teacher: str | None = Field(default=None, description="checkpoint of the A2D teacher")
    distill: DistillConfig = Field(default_factory=DistillConfig)
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto",
                                                   description="auto: CUDA when present")
    env_backend: Literal["default", "batched"] = Field(
        default="default", description="default: the environment's own package (minatar, "
        "gymnasium, ale-py), stepped on the CPU; batched: MinAtar's games as tensors on the "
        "training device, every environment stepped at once (a3cs.rl.batched), MinAtar only")
    torch_threads: PositiveInt = Field(default=1, description="CPU threads of torch (small "
                                       "networks run fastest on one)")
    checkpoint_every: PositiveInt = Field(default=50, description="updates between checkpoints")
    recent_episodes: PositiveInt = Field(default=100, description="episodes in the recent "
                                         "return")

    @model_validator(mode="before")
    @classmethod
    def _algorithm_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        algo = data.get("algo", "ppo")
        defaults = ALGO_DEFAULTS.get(algo) if isinstance(algo, str) else None
        if defaults is None:
            return data
        filled = dict(data)
        for key, value in defaults.items():
            if filled.get(key) is None:
                filled[key] = value
        if filled.get("batch_size") is None:
            filled["batch_size"] = int(filled.get("n_steps") or 1) * int(
                filled.get("num_envs") or 8)
        return filled

    @model_validator(mode="after")
    def _derived_sizes(self) -> TrainConfig:
        rollout = self.rollout_steps
        if self.batch_size is None or rollout % self.batch_size:
            raise ConfigError("batch_size", self.batch_size,
                              f"a divisor of num_envs * n_steps = {rollout}")
        if self.sparsity_start >= self.sparsity_end:
            raise ConfigError("sparsity_end", self.sparsity_end,
                              f"a fraction > sparsity_start = {self.sparsity_start}")
        if self.env_backend == "batched":
            check_batched(self.env_id)
        return self

    @property
    def rollout_steps(self) -> int:
        """Environment steps per rollout (``num_envs * n_steps``)."""
        return self.num_envs * (self.n_steps or 0)

    @property
    def num_updates(self) -> int:
        """Rollouts (and updates) in the run: ``ceil(total_steps / rollout_steps)``."""
        return -(-self.total_steps // self.rollout_steps)

    @property
    def balanced_masks(self) -> bool:
        """Whether this training leaves every block row of a 1xN layer with the same number
        of blocks (``block_pruning: row_balanced``), so an untrained architecture is priced
        with row-balanced random masks (:meth:`nas.arch.Arch.workload`)."""
        return self.block_pruning == "row_balanced"


def resolve_family_defaults(config: TrainConfig, family: str) -> TrainConfig:
    """Fill ``clip_reward`` and ``normalize_obs`` from the environment family."""
    updates: dict[str, Any] = {}
    if config.clip_reward is None:
        updates["clip_reward"] = family == "atari"
    if config.normalize_obs is None:
        updates["normalize_obs"] = family == "mujoco"
    return config.model_copy(update=updates) if updates else config


def make_config(values: dict[str, Any], *, source: str | None = None) -> TrainConfig:
    """Validate ``values`` into a :class:`TrainConfig` (one-line :class:`ConfigError`)."""
    return validate(TrainConfig, values, source=source)
