"""The training driver: validate, build, then rollout -> advantages -> (teacher) -> update.

Reads top to bottom like CleanRL's single-file scripts; the pieces it calls live in
:mod:`a3cs.rl.algorithms`.  A run directory gets:

* ``config.yaml``: the resolved :class:`~a3cs.rl.config.TrainConfig` (every value used);
* ``arch.yaml``: the architecture; ``workload.yaml``: its hw_sim workload (batch 1, trained
  1xN masks), ready for ``a3cs simulate --workload``;
* ``checkpoint.pt``: every ``checkpoint_every`` updates and at the end (``--resume``);
* ``metrics.csv``: one row per update; ``tb/``: TensorBoard scalars.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from a3cs.rl.algorithms import (
    CollectorState,
    add_advantages,
    collect_rollout,
    make_optimizer,
    update,
)
from a3cs.rl.checkpoint import (
    CHECKPOINT_NAME,
    agent_from_checkpoint,
    load_teacher,
    pickle_envs,
    read_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
    spaces_record,
    unpickle_envs,
)
from a3cs.rl.config import TrainConfig, resolve_family_defaults
from a3cs.rl.envs import SyncEnvs, env_family, make_env
from a3cs.rl.networks import ActorCritic, build_agent, describe_action_space
from distill.schedules import weight_schedule
from distill.teacher import Teacher
from hw_sim.errors import ConfigError
from hw_sim.io import atomic_write_text, dump_yaml
from nas.arch import reference_arch
from nas.layers import cubic_sparsity_schedule, one_by_n_layers, prune_to_schedule

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


@dataclass
class _Run:
    """Everything built for a run (after validation)."""

    config: TrainConfig
    envs: SyncEnvs
    model: ActorCritic
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    collector: CollectorState
    teacher: Teacher | None
    device: torch.device
    start_update: int
    metrics: list[dict[str, float]]
    wall_time_s: float


def pick_device(choice: str) -> torch.device:
    """``auto``: CUDA when present, else CPU.

    Raises:
        ConfigError: ``cuda`` was asked for and there is none.
    """
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", choice, "auto or cpu (no CUDA device here)")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def _check_resume(config: TrainConfig, saved: TrainConfig) -> TrainConfig:
    """The saved config with the allowed changes from ``config``; ConfigError otherwise."""
    if config.arch is not None and config.arch != saved.arch:
        saved_name = saved.arch.name if saved.arch is not None else "the reference network"
        raise ConfigError("--arch", config.arch.name,
                          f"the architecture of the run being resumed ({saved_name}); this "
                          "checkpoint is of another architecture")
    given = config.model_dump(exclude={"arch"})
    stored = saved.model_dump(exclude={"arch"})
    for key, value in given.items():
        if key not in RESUMABLE_CHANGES and value != stored[key]:
            raise ConfigError(key, value, f"{stored[key]!r}, the value of the run being "
                              f"resumed (only {', '.join(sorted(RESUMABLE_CHANGES))} may change)")
    return saved.model_copy(update={k: given[k] for k in RESUMABLE_CHANGES})


def prepare(config: TrainConfig, run_dir: str | Path, *, resume: bool = False,
            compare_config: bool = True) -> _Run:
    """Validate every input, then build the run (environments, network, optimizer, teacher).

    Raises:
        ConfigError: unknown env id, an architecture that does not fit the observation, a
            teacher whose spaces differ, a run directory that already holds a run (without
            ``resume``), or a checkpoint of another architecture/config (with ``resume``).
    """
    out = Path(run_dir)
    ckpt_path = out / CHECKPOINT_NAME
    family = env_family(config.env_id)
    config = resolve_family_defaults(config, family)
    saved: dict[str, Any] | None = None
    if resume:
        if not ckpt_path.is_file():
            raise ConfigError("--resume", str(out), f"a run directory holding {CHECKPOINT_NAME}")
        saved = read_checkpoint(ckpt_path, field="--resume")
        saved_config = TrainConfig.model_validate(saved["config"])
        config = _check_resume(config, saved_config) if compare_config else saved_config
    elif ckpt_path.exists():
        raise ConfigError("--out", str(out), f"a new run directory (this one holds "
                          f"{CHECKPOINT_NAME}: pass --resume to continue it)")
    device = pick_device(config.device)

    envs = make_env(config.env_id, config.num_envs, config.seed)
    obs_space, action_space = envs.single_observation_space, envs.single_action_space
    arch = config.arch or reference_arch(tuple(obs_space.shape))
    arch.plan(tuple(obs_space.shape))  # the architecture fits, or ConfigError
    config = config.model_copy(update={"arch": arch})

    teacher = None
    if config.teacher is not None:
        teacher = load_teacher(config.teacher, device=device)
        teacher.check_compatible(tuple(obs_space.shape), describe_action_space(action_space))

    model = build_agent(arch, obs_space, action_space, normalize_obs=bool(config.normalize_obs),
                        seed=config.seed).to(device)
    optimizer = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(config.seed)
    collector = CollectorState.start(envs, device, config.recent_episodes)
    start_update, metrics, wall = 0, [], 0.0
    if saved is not None:
        loaded = agent_from_checkpoint(saved, str(ckpt_path), field="--resume")
        model.load_state_dict(loaded.model.state_dict())
        optimizer.load_state_dict(saved["optimizer"])
        envs.close()
        envs = unpickle_envs(saved["envs"])
        collector = CollectorState.from_state_dict(saved["collector"], device)
        restore_rng_states(saved["rng"], generator)
        start_update = int(saved["update"])
        metrics = list(saved["metrics"])
        wall = float(saved["wall_time_s"])
    return _Run(config=config, envs=envs, model=model, optimizer=optimizer, generator=generator,
                collector=collector, teacher=teacher, device=device, start_update=start_update,
                metrics=metrics, wall_time_s=wall)


def _write_outputs(run: _Run, out: Path, update_idx: int) -> Path:
    """Checkpoint, workload (current 1xN masks) and metrics, each written atomically."""
    config = run.config
    workload = run.model.workload(batch=1)
    atomic_write_text(out / "workload.yaml", dump_yaml(workload.to_dict()))
    if run.metrics:
        text = io.StringIO()
        # every column of every row: a run resumed from an older version's checkpoint has
        # rows without the columns added since (left empty)
        columns = list(dict.fromkeys(key for row in run.metrics for key in row))
        writer = csv.DictWriter(text, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(run.metrics)
        atomic_write_text(out / "metrics.csv", text.getvalue())
    return save_checkpoint(out / CHECKPOINT_NAME, {
        "config": config.model_dump(mode="json"),
        "arch": config.arch.to_dict() if config.arch is not None else None,
        "spaces": spaces_record(run.envs.single_observation_space,
                                run.envs.single_action_space),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "collector": run.collector.state_dict(),
        "rng": rng_states(run.generator),
        "envs": pickle_envs(run.envs),
        "update": update_idx,
        "global_step": run.collector.global_step,
        "metrics": run.metrics,
        "wall_time_s": run.wall_time_s,
    })


def _annealed(value: float, schedule: str, progress: float) -> float:
    """``value`` at training progress ``progress`` in [0, 1): as is (``constant``) or falling
    linearly to 0 at the end (``linear``)."""
    return value * (1.0 - progress) if schedule == "linear" else value


def _log_scalars(writer: Any, row: dict[str, float], step: int) -> None:
    """``row``'s values (but its step counters) as TensorBoard scalars ``train/<key>`` at
    ``step``, in one event.

    The same scalars ``SummaryWriter.add_scalar`` writes (``simple_value``), but one event
    for the row instead of one per key: 0.24 instead of 1.0 ms an update of 16 keys.
    """
    from tensorboard.compat.proto.summary_pb2 import Summary

    values = [Summary.Value(tag=f"train/{key}", simple_value=float(value))
              for key, value in row.items() if key not in ("update", "global_step")]
    writer.file_writer.add_summary(Summary(value=values), step)


def train(config: TrainConfig, run_dir: str | Path, *, resume: bool = False,
          progress: bool = True, stop_after_updates: int | None = None) -> TrainResult:
    """Train an agent (PPO or A2C, with A2D distillation when a teacher is configured).

    Args:
        config: every hyperparameter.
        run_dir: where outputs go (created).
        resume: continue the run in ``run_dir`` from its checkpoint, exactly.
        progress: show a progress bar (steps/s, recent return).
        stop_after_updates: stop after this many updates in total, as if killed right after
            that update's checkpoint (tests of ``--resume``).

    Raises:
        ConfigError: any bad input (see :func:`prepare`), before training starts.
    """
    updates = training(config, run_dir, resume=resume, progress=progress,
                       stop_after_updates=stop_after_updates)
    while True:
        try:
            next(updates)
        except StopIteration as finished:
            return finished.value


def training(config: TrainConfig, run_dir: str | Path, *, resume: bool = False,
             progress: bool = True, stop_after_updates: int | None = None
             ) -> Generator[dict[str, float], None, TrainResult]:
    """:func:`train` one update at a time: a generator that yields each update's metrics row
    (the row written to ``metrics.csv``) and returns the :class:`TrainResult`.

    Nothing is built before the first ``next()``, which raises :class:`ConfigError` on bad
    input.  Closing the generator early closes the environments and the TensorBoard writer;
    the run directory then holds the last checkpoint written, which ``resume`` continues.
    (``benchmarks/bench_rl.py`` uses this to alternate a3cs's updates with another library's
    in one process.)
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    out = Path(run_dir)
    # Before anything is built: the initial weights (orthogonal init runs a QR) differ in
    # the last bits between thread counts.
    torch.set_num_threads(config.torch_threads)
    run = prepare(config, out, resume=resume)
    config = run.config
    torch.set_num_threads(config.torch_threads)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_yaml(config.model_dump(mode="json")))
    if config.arch is not None:
        atomic_write_text(out / "arch.yaml", dump_yaml(config.arch.to_dict()))
    model, collector = run.model, run.collector
    num_updates = config.num_updates
    lr0 = config.learning_rate or 0.0
    sparsity = cubic_sparsity_schedule(config.sparsity_start, config.sparsity_end)
    has_one_by_n = any(True for _ in one_by_n_layers(model))
    distill_scale = weight_schedule(config.distill)
    writer = SummaryWriter(log_dir=str(out / "tb"), purge_step=collector.global_step or None)
    bar = tqdm(total=num_updates * config.rollout_steps, initial=collector.global_step,
               unit="step", unit_scale=True, dynamic_ncols=True, disable=not progress,
               desc=config.env_id)
    last = run.start_update
    try:
        for update_idx in range(run.start_update, num_updates):
            started = time.perf_counter()
            progress_frac = update_idx / num_updates
            lr = _annealed(lr0, config.lr_schedule, progress_frac)
            clip_range = _annealed(config.clip_range, config.clip_schedule, progress_frac)
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            if has_one_by_n:
                prune_to_schedule(model, progress_frac, sparsity)

            batch = collect_rollout(model, run.envs, collector, config.n_steps or 1,
                                    run.generator, gamma=config.gamma,
                                    clip_reward=bool(config.clip_reward))
            batch = add_advantages(batch, gamma=config.gamma, gae_lambda=config.gae_lambda or 0.0)
            coefs = None
            if run.teacher is not None:
                flat_obs = batch.obs.reshape(batch.size, *batch.obs.shape[2:])
                teacher_dist, teacher_value = run.teacher.outputs(flat_obs)
                batch = replace(batch, teacher_dist=teacher_dist, teacher_value=teacher_value)
                scale = distill_scale(progress_frac)
                coefs = (config.distill.actor_coef * scale, config.distill.critic_coef * scale)
            stats = update(model, run.optimizer, batch, config, run.generator,
                           distill_coefs=coefs, clip_range=clip_range)
            if model.obs_norm is not None:
                model.obs_norm.update(batch.obs.reshape(batch.size, *batch.obs.shape[2:]))

            elapsed = time.perf_counter() - started
            run.wall_time_s += elapsed
            row = {"update": update_idx + 1, "global_step": collector.global_step,
                   "wall_time_s": run.wall_time_s, "steps_per_s": batch.size / elapsed,
                   "recent_return": collector.recent_mean_return(),
                   "episodes": collector.episodes, "learning_rate": lr,
                   "clip_range": clip_range,
                   **vars(stats)}
            run.metrics.append(row)
            _log_scalars(writer, row, collector.global_step)
            bar.update(batch.size)
            bar.set_postfix(ret=f"{row['recent_return']:.2f}", refresh=False)
            last = update_idx + 1
            if last % config.checkpoint_every == 0 or last == num_updates or (
                    stop_after_updates is not None and last >= stop_after_updates):
                _write_outputs(run, out, last)
            yield row
            if stop_after_updates is not None and last >= stop_after_updates:
                break
        if last == run.start_update:  # nothing left to do (resumed a finished run)
            _write_outputs(run, out, last)
    finally:
        bar.close()
        writer.close()
        run.envs.close()
    done_steps = collector.global_step
    return TrainResult(run_dir=out, checkpoint=out / CHECKPOINT_NAME, global_step=done_steps,
                       updates=last, episodes=collector.episodes,
                       recent_return_mean=collector.recent_mean_return(),
                       wall_time_s=run.wall_time_s,
                       steps_per_s=done_steps / run.wall_time_s if run.wall_time_s else 0.0)
