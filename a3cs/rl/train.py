"""``a3cs train``: an agent (PPO or A2C, A2D distillation with a teacher) through the one loop.

Validation and the run directory live here; the loop itself (rollout, update, schedules,
checkpoint, metrics) is :func:`a3cs.rl.loop.run_loop`, shared with the co-search.  A run
directory gets:

* ``config.yaml``: the resolved :class:`~a3cs.rl.config.TrainConfig` (every value used);
* ``arch.yaml``: the architecture; ``workload.yaml``: its hw_sim workload (batch 1, trained
  1xN masks), ready for ``a3cs simulate --workload``;
* ``checkpoint.pt``: every ``checkpoint_every`` updates and at the end (``--resume``);
* ``metrics.csv``: one row per update; ``tb/``: TensorBoard scalars.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from a3cs.paths import portable_path, resolve_path
from a3cs.rl.checkpoint import (
    AGENT_KEYS,
    CHECKPOINT_NAME,
    agent_from_checkpoint,
    read_checkpoint,
    require_keys,
    spaces_record,
)
from a3cs.rl.config import TrainConfig, resolve_family_defaults
from a3cs.rl.envs import SyncEnvs, env_family
from a3cs.rl.loop import LoopHooks, LoopState, build_state, pick_device, run_loop
from a3cs.rl.networks import ActorCritic, build_agent
from a3cs_common.errors import ConfigError
from a3cs_common.io import atomic_write_text, dump_yaml
from a3cs_common.schema import validate
from a3cs_common.torch_settings import torch_threads
from nas.arch import reference_arch
from nas.layers import cubic_sparsity_schedule, has_prunable_layers, prune_to_schedule

# Fields that may change when a run is resumed (how long it runs, how it is observed).
RESUMABLE_CHANGES = frozenset({"total_steps", "checkpoint_every", "device", "torch_threads"})


@dataclass(frozen=True)
class TrainResult:
    """How a run ended."""

    run_dir: Path
    checkpoint: Path
    global_step: int
    updates: int
    episodes: int
    recent_return_mean: float
    wall_time_s: float
    steps_per_s: float
    device: str


def prune_as_configured(model: nn.Module, config: TrainConfig, progress: float) -> None:
    """Prune ``model``'s 1xN and N:M layers to where ``config``'s schedule stands at
    ``progress`` (in [0, 1] of the run): the cubic ramp between sparsity_start and
    sparsity_end, block rows balanced or not (block_pruning), pruned weights kept for refined
    gradients or not (pruned_gradient).  What the training loop does before each rollout, and
    the distill proxy before each of its steps."""
    prune_to_schedule(model, progress,
                      cubic_sparsity_schedule(config.sparsity_start, config.sparsity_end),
                      keep_pruned=config.pruned_gradient == "refined",
                      balanced=config.balanced_masks)


def _check_resume(config: TrainConfig, saved: TrainConfig) -> TrainConfig:
    """The saved config with the allowed changes from ``config``; ConfigError otherwise."""
    if config.arch is not None and config.arch != saved.arch:
        saved_name = saved.arch.name if saved.arch is not None else "the reference network"
        raise ConfigError("--arch", config.arch.name,
                          f"the architecture of the run being resumed ({saved_name}); this "
                          "checkpoint is of another architecture")
    given = config.model_dump(exclude={"arch"})
    stored = saved.model_dump(exclude={"arch"})
    update = {key: given[key] for key in RESUMABLE_CHANGES}
    for key, value in given.items():
        if key == "teacher" and value is not None and stored[key] is not None and \
                resolve_path(value, None) == resolve_path(stored[key], None):
            # one file named two ways (an older run recorded it absolutely): record it portably
            update[key] = portable_path(value)
            continue
        if key not in RESUMABLE_CHANGES and value != stored[key]:
            raise ConfigError(key, value, f"{stored[key]!r}, the value of the run being "
                              f"resumed (only {', '.join(sorted(RESUMABLE_CHANGES))} may change)")
    return saved.model_copy(update=update)


class _TrainHooks(LoopHooks):
    """A plain run's part of the loop: 1xN layers pruned to the schedule before each rollout;
    the checkpoint carries the config, architecture and spaces (so ``a3cs evaluate`` and
    teachers rebuild the agent), and ``workload.yaml`` is written beside it."""

    def __init__(self, config: TrainConfig, model: ActorCritic) -> None:
        self.config = config
        self.prunes = has_prunable_layers(model)
        # reward-aware (GST): the schedule's progress actually applied, and the best return
        self.applied_progress = 0.0
        self.best_return = -math.inf

    def before_rollout(self, state: LoopState, progress: float) -> None:
        if not self.prunes:
            return
        if self.config.sparsity_schedule == "reward_aware":
            progress = self._reward_aware_progress(state, progress)
        prune_as_configured(state.model, self.config, progress)

    def _reward_aware_progress(self, state: LoopState, progress: float) -> float:
        """The schedule advances only while the return holds up; in the last stretch of
        training (the schedule's own length after sparsity_end) it catches up whatever the
        return, so the architecture's sparsity is always reached."""
        recent = state.collector.recent_mean_return()
        if math.isfinite(recent):
            self.best_return = max(self.best_return, recent)
        holding = (math.isfinite(recent) and math.isfinite(self.best_return)
                   and recent >= self.config.sparsity_tolerance * self.best_return
                   - 1e-9 * abs(self.best_return))
        if holding or not math.isfinite(recent):
            self.applied_progress = progress
        deadline = min(1.0, 2 * self.config.sparsity_end - self.config.sparsity_start)
        if progress >= deadline:
            self.applied_progress = max(self.applied_progress, self.config.sparsity_end)
        return self.applied_progress

    def state_dict(self) -> dict[str, Any]:
        return {"applied_progress": self.applied_progress, "best_return": self.best_return}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        if saved:  # runs written before reward-aware pruning carry none
            self.applied_progress = float(saved["applied_progress"])
            self.best_return = float(saved["best_return"])

    def checkpoint_extras(self, state: LoopState, out: Path) -> dict[str, Any]:
        atomic_write_text(out / "workload.yaml",
                          dump_yaml(state.model.workload(batch=1).to_dict()))
        config = self.config
        return {"config": config.model_dump(mode="json"),
                "arch": config.arch.to_dict() if config.arch is not None else None,
                "spaces": spaces_record(state.envs.single_observation_space,
                                        state.envs.single_action_space)}


def prepare(config: TrainConfig, run_dir: str | Path, *, resume: bool = False,
            trust_run: bool = False) -> tuple[LoopState, _TrainHooks]:
    """Validate every input, then build the run (environments, network, optimizer, teacher),
    loaded from its checkpoint with ``resume``.

    Raises:
        ConfigError: unknown env id, an architecture that does not fit the observation, a
            teacher whose spaces differ, ``cuda`` without CUDA, a run directory that already
            holds a run (without ``resume``), or a checkpoint of another architecture/config
            (with ``resume``).
    """
    out = Path(run_dir)
    ckpt_path = out / CHECKPOINT_NAME
    config = resolve_family_defaults(config, env_family(config.env_id))
    saved: dict[str, Any] | None = None
    if resume:
        if not ckpt_path.is_file():
            raise ConfigError("--resume", str(out), f"a run directory holding {CHECKPOINT_NAME}")
        saved = read_checkpoint(ckpt_path, field="--resume")
        require_keys(saved, AGENT_KEYS, ckpt_path, field="--resume")
        config = _check_resume(config, validate(TrainConfig, saved["config"],
                                                 source=str(ckpt_path)))
    elif ckpt_path.exists():
        raise ConfigError("--out", str(out), f"a new run directory (this one holds "
                          f"{CHECKPOINT_NAME}: pass --resume to continue it)")
    pick_device(config.device)  # before anything is built

    def make_model(envs: SyncEnvs) -> ActorCritic:
        obs_space, action_space = envs.single_observation_space, envs.single_action_space
        arch = config.arch or reference_arch(tuple(obs_space.shape))
        arch.plan(tuple(obs_space.shape))  # the architecture fits, or ConfigError
        return build_agent(arch, obs_space, action_space,
                           normalize_obs=bool(config.normalize_obs), seed=config.seed)

    state = build_state(config, make_model)
    arch = state.model.arch
    state.config = config = config.model_copy(update={"arch": arch})
    if saved is not None:
        loaded = agent_from_checkpoint(saved, str(ckpt_path), field="--resume")
        saved = {**saved, "model": loaded.model.state_dict()}  # older checkpoints: upgraded
        state.load_state_dict(saved, source=str(ckpt_path), trust=trust_run)
    hooks = _TrainHooks(config, state.model)
    if saved is not None:
        hooks.load_state_dict(saved.get("hooks") or {})
    return state, hooks


def train(config: TrainConfig, run_dir: str | Path, *, resume: bool = False,
          progress: bool = True, stop_after_updates: int | None = None,
          trust_run: bool = False) -> TrainResult:
    """Train an agent (PPO or A2C, with A2D distillation when a teacher is configured).

    Args:
        config: every hyperparameter.
        run_dir: where outputs go (created).
        resume: continue the run in ``run_dir`` from its checkpoint, exactly.
        progress: show a progress bar (steps/s, recent return).
        stop_after_updates: stop after this many updates in total, as if killed right after
            that update's checkpoint (tests of ``--resume``).
        trust_run: resume a run whose environment state is not signed by this user's key
            (one's own run written before runs were signed).

    Raises:
        ConfigError: any bad input (see :func:`prepare`), before training starts.
    """
    updates = training(config, run_dir, resume=resume, progress=progress,
                       stop_after_updates=stop_after_updates, trust_run=trust_run)
    while True:
        try:
            next(updates)
        except StopIteration as finished:
            return finished.value


def training(config: TrainConfig, run_dir: str | Path, *, resume: bool = False,
             progress: bool = True, stop_after_updates: int | None = None,
             trust_run: bool = False) -> Generator[dict[str, float], None, TrainResult]:
    """:func:`train` one update at a time: a generator that yields each update's metrics row
    (the row written to ``metrics.csv``) and returns the :class:`TrainResult`.

    Nothing is built before the first ``next()``, which raises :class:`ConfigError` on bad
    input.  Closing the generator early closes the environments and the TensorBoard writer;
    the run directory then holds the last checkpoint written, which ``resume`` continues.
    (``benchmarks/bench_rl.py`` uses this to alternate a3cs's updates with another library's
    in one process.)
    """
    out = Path(run_dir)
    # Threads set before anything is built (the initial weights: orthogonal init runs a QR,
    # whose last bits differ between thread counts), then to the run's own count (a resumed
    # run may change it); torch's count is restored afterwards.
    with torch_threads(config.torch_threads):
        state, hooks = prepare(config, out, resume=resume, trust_run=trust_run)
    config = state.config
    with torch_threads(config.torch_threads):
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", dump_yaml(config.model_dump(mode="json")))
        if config.arch is not None:
            atomic_write_text(out / "arch.yaml", dump_yaml(config.arch.to_dict()))
        yield from run_loop(state, hooks, out, num_updates=config.num_updates,
                            checkpoint_name=CHECKPOINT_NAME, progress=progress,
                            stop_after_updates=stop_after_updates)
    collector = state.collector
    return TrainResult(run_dir=out, checkpoint=out / CHECKPOINT_NAME,
                       global_step=collector.global_step, updates=state.update,
                       episodes=collector.episodes,
                       recent_return_mean=collector.recent_mean_return(),
                       wall_time_s=state.wall_time_s,
                       steps_per_s=(collector.global_step / state.wall_time_s
                                    if state.wall_time_s else 0.0),
                       device=str(state.device))
