"""The one training loop: rollout -> advantages -> (teacher targets) -> update, repeated.

``a3cs train`` (:mod:`a3cs.rl.train`) and the co-search's supernet training
(:mod:`a3cs.search.cosearch`) both run through :func:`run_loop`, the way stable-baselines3's
``OnPolicyAlgorithm.learn`` owns collection while algorithms and callbacks plug into it.  The
loop owns the environments, the rollout, the learning-rate / clip / distillation schedules,
the weight update, observation normalisation, the metrics (``metrics.csv`` and TensorBoard),
the progress bar and the checkpoint; what a user of the loop adds comes in through
:class:`LoopHooks`:

* ``before_rollout``: e.g. prune 1xN layers to the schedule, or sample a supernet path;
* ``after_update``: e.g. the co-search's architecture and accelerator steps; returns extra
  metrics columns;
* ``state_dict`` / ``load_state_dict``: what the hooks must carry across ``--resume``;
* ``checkpoint_extras``: what else the checkpoint holds (the train run's config and
  architecture), and files written beside it.

A checkpoint holds the model, optimizer, environments (pickled, mid-episode), collector,
every RNG and the hooks' state, so a killed run resumes to exactly the numbers it would have
reached.
"""

from __future__ import annotations

import contextlib
import csv
import io
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from a3cs.paths import resolve_path
from a3cs.rl.algorithms import (
    CollectorState,
    RolloutBatch,
    add_advantages,
    collect_rollout,
    collect_rollout_on_device,
    make_optimizer,
    update,
)
from a3cs.rl.batched import make_batched_env
from a3cs.rl.batched.core import BatchedMinAtar
from a3cs.rl.checkpoint import (
    load_teacher,
    pickle_envs,
    require_keys,
    restore_rng_states,
    rng_states,
    save_checkpoint,
    unpickle_envs,
)
from a3cs.rl.config import TrainConfig
from a3cs.rl.envs import SyncEnvs, make_env
from a3cs.rl.networks import describe_action_space
from a3cs_common.errors import ConfigError
from a3cs_common.io import atomic_write_text, remove_stale_temporaries
from a3cs_common.torch_settings import deterministic_kernels
from distill.schedules import weight_schedule
from distill.teacher import Teacher

#: Keys every loop checkpoint holds (besides the hooks' and their extras).
CHECKPOINT_KEYS = ("model", "optimizer", "collector", "rng", "envs", "update", "metrics",
                   "wall_time_s")


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


@dataclass
class LoopState:
    """Everything a run holds between updates (what its checkpoint stores).

    Attributes:
        config: every hyperparameter of the loop.
        envs: the environments (``config.num_envs`` of ``config.env_id``).
        model: the acting and trained network: ``forward(obs) -> (dist_params [B, P],
            value [B])``, with ``kind``, ``action_dim`` and an optional ``obs_norm`` (a running
            normaliser updated after each update) — an ActorCritic or a SuperNet.
        optimizer: of the model's trained weights (Adam for PPO, RMSprop for A2C).
        generator: the RNG of actions and minibatch order.
        collector: what carries over between rollouts (observations, episode bookkeeping).
        teacher: the A2D teacher, or None.
        device: where the model, rollouts and teacher live.
        update: updates done.
        metrics: one row per update (``metrics.csv``).
        wall_time_s: seconds spent in updates (over every resumed session).
    """

    config: TrainConfig
    envs: SyncEnvs | BatchedMinAtar
    model: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    collector: CollectorState
    teacher: Teacher | None
    device: torch.device
    update: int = 0
    metrics: list[dict[str, float]] = field(default_factory=list)
    wall_time_s: float = 0.0

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's core entries (:data:`CHECKPOINT_KEYS`)."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "collector": self.collector.state_dict(), "rng": rng_states(self.generator),
                **pickle_envs(self.envs), "update": self.update,
                "global_step": self.collector.global_step, "metrics": self.metrics,
                "wall_time_s": self.wall_time_s}

    def load_state_dict(self, saved: dict[str, Any], *, source: str,
                        trust: bool = False) -> None:
        """Continue from a checkpoint written by :meth:`state_dict`; ``trust``: unpickle its
        environments even unsigned (see :func:`~a3cs.rl.checkpoint.unpickle_envs`).

        Raises:
            ConfigError: the checkpoint lacks an entry (written by another version), or its
                environment state is not signed by this user's key.
        """
        require_keys(saved, CHECKPOINT_KEYS, source, field="--resume",
                     expected="a checkpoint of this version of a3cs",
                     advice=": start a new run")
        envs = unpickle_envs(saved, source=source, trust=trust)  # first: nothing is loaded unless signed
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.envs.close()
        self.envs = envs
        self.collector = CollectorState.from_state_dict(saved["collector"], self.device)
        restore_rng_states(saved["rng"], self.generator)
        self.update = int(saved["update"])
        self.metrics = list(saved["metrics"])
        self.wall_time_s = float(saved["wall_time_s"])


class LoopHooks:
    """The plug-in points of one update; this base does nothing (a plain training run)."""

    def before_rollout(self, state: LoopState, progress: float) -> None:
        """Before the rollout of an update; ``progress`` is the fraction of updates done."""

    def after_update(self, state: LoopState, batch: RolloutBatch,
                     distill_coefs: tuple[float, float] | None,
                     progress: float) -> dict[str, float]:
        """After the weight update; returns extra columns of the update's metrics row."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What the hooks carry across ``--resume`` (saved under ``"hooks"``)."""
        return {}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""

    def checkpoint_extras(self, state: LoopState, out: Path) -> dict[str, Any]:
        """Extra checkpoint entries (and files written into ``out`` beside it)."""
        return {}

    def postfix(self, row: dict[str, float]) -> dict[str, str]:
        """Extra fields of the progress bar."""
        return {}


def build_state(config: TrainConfig, make_model: Callable[[SyncEnvs], nn.Module], *,
                parameters: Callable[[nn.Module], list[nn.Parameter]] | None = None
                ) -> LoopState:
    """Build a run's environments, model (on its device), optimizer, RNG and teacher.

    Args:
        config: the run's hyperparameters (``config.teacher``: a checkpoint path or None).
        make_model: builds the model for the environments (on CPU; moved here).
        parameters: the weights the optimizer trains (default: all of the model's).

    Raises:
        ConfigError: ``cuda`` without CUDA, an unknown env id, a teacher that cannot be read
            or whose spaces differ from the environment's.
    """
    device = pick_device(config.device)
    envs = (make_batched_env(config.env_id, config.num_envs, config.seed, device)
            if config.env_backend == "batched" else
            make_env(config.env_id, config.num_envs, config.seed))
    try:
        teacher = None
        if config.teacher is not None:
            # recorded portably (a3cs.paths): a packaged teacher by its data-folder path
            teacher = load_teacher(resolve_path(config.teacher, None), device=device)
            teacher.check_compatible(tuple(envs.single_observation_space.shape),
                                     describe_action_space(envs.single_action_space))
        model = make_model(envs).to(device)
    except BaseException:
        envs.close()
        raise
    trained = parameters(model) if parameters is not None else list(model.parameters())
    return LoopState(config=config, envs=envs, model=model,
                     optimizer=make_optimizer(trained, config),
                     generator=torch.Generator().manual_seed(config.seed),
                     collector=CollectorState.start(envs, device, config.recent_episodes),
                     teacher=teacher, device=device)


def annealed(value: float, schedule: str, progress: float) -> float:
    """``value`` at training progress ``progress`` in [0, 1): as is (``constant``) or falling
    linearly to 0 at the end (``linear``)."""
    return value * (1.0 - progress) if schedule == "linear" else value


def write_metrics(path: Path, rows: list[dict[str, float]]) -> None:
    """``rows`` as CSV, atomically, with every column of every row (a run resumed from an
    older version's checkpoint, or a search's warm-up rows, lack some: left empty)."""
    if not rows:
        return
    text = io.StringIO()
    columns = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(text, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())


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


def save(state: LoopState, hooks: LoopHooks, out: Path, checkpoint_name: str) -> Path:
    """Write ``metrics.csv`` and the checkpoint (with the hooks' state and extras)."""
    write_metrics(out / "metrics.csv", state.metrics)
    return save_checkpoint(out / checkpoint_name, {
        **hooks.checkpoint_extras(state, out), **state.state_dict(),
        "hooks": hooks.state_dict()})


def run_loop(state: LoopState, hooks: LoopHooks, out: Path, *, num_updates: int,
             checkpoint_name: str, progress: bool = True, desc: str = "",
             stop_after_updates: int | None = None
             ) -> Generator[dict[str, float], None, None]:
    """Run updates ``state.update + 1 .. num_updates``, yielding each update's metrics row.

    Checkpoints every ``config.checkpoint_every`` updates, at the last one, and where
    ``stop_after_updates`` stops it (as if killed right after that checkpoint).  Closing the
    generator early closes the environments, the progress bar and the TensorBoard writer.

    Args:
        state: the run, fresh from :func:`build_state` or loaded from a checkpoint.
        hooks: what the user of the loop plugs in.
        out: the run's folder (metrics.csv, tb/, the checkpoint).
        num_updates: updates of the whole run (schedules anneal over them).
        checkpoint_name: file name of the checkpoint in ``out``.
        progress: show a progress bar (steps/s, recent return).
        desc: the bar's label.
        stop_after_updates: stop after this many updates in total.
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    config, model, collector = state.config, state.model, state.collector
    remove_stale_temporaries(out)  # of a process killed while writing a checkpoint
    lr0 = config.learning_rate or 0.0
    distill_scale = weight_schedule(config.distill)
    writer = SummaryWriter(log_dir=str(out / "tb"), purge_step=collector.global_step or None)
    bar = tqdm(total=num_updates * config.rollout_steps, initial=collector.global_step,
               unit="step", unit_scale=True, dynamic_ncols=True, disable=not progress,
               desc=desc or config.env_id)
    start = state.update
    modes = contextlib.ExitStack()  # closed in the finally below, like the writer and bar
    modes.enter_context(deterministic_kernels(state.device))
    try:
        for update_idx in range(start, num_updates):
            started = time.perf_counter()
            progress_frac = update_idx / num_updates
            lr = annealed(lr0, config.lr_schedule, progress_frac)
            clip_range = annealed(config.clip_range, config.clip_schedule, progress_frac)
            for group in state.optimizer.param_groups:
                group["lr"] = lr
            hooks.before_rollout(state, progress_frac)

            collect = (collect_rollout_on_device if isinstance(state.envs, BatchedMinAtar)
                       else collect_rollout)
            batch = collect(model, state.envs, collector, config.n_steps or 1,
                            state.generator, gamma=config.gamma,
                            clip_reward=bool(config.clip_reward))
            batch = add_advantages(batch, gamma=config.gamma, gae_lambda=config.gae_lambda or 0.0)
            coefs = None
            if state.teacher is not None:
                flat_obs = batch.obs.reshape(batch.size, *batch.obs.shape[2:])
                teacher_dist, teacher_value = state.teacher.outputs(flat_obs)
                batch = replace(batch, teacher_dist=teacher_dist, teacher_value=teacher_value)
                scale = distill_scale(progress_frac)
                coefs = (config.distill.actor_coef * scale, config.distill.critic_coef * scale)
            stats = update(model, state.optimizer, batch, config, state.generator,
                           distill_coefs=coefs, clip_range=clip_range)
            extra = hooks.after_update(state, batch, coefs, progress_frac)
            obs_norm = getattr(model, "obs_norm", None)
            if obs_norm is not None:
                obs_norm.update(batch.obs.reshape(batch.size, *batch.obs.shape[2:]))

            elapsed = time.perf_counter() - started
            state.wall_time_s += elapsed
            state.update = update_idx + 1
            row = {"update": state.update, "global_step": collector.global_step,
                   "wall_time_s": state.wall_time_s, "steps_per_s": batch.size / elapsed,
                   "recent_return": collector.recent_mean_return(),
                   "episodes": collector.episodes, "learning_rate": lr,
                   "clip_range": clip_range, **vars(stats), **extra}
            state.metrics.append(row)
            _log_scalars(writer, row, collector.global_step)
            bar.update(batch.size)
            bar.set_postfix(ret=f"{row['recent_return']:.2f}", **hooks.postfix(row),
                            refresh=False)
            stopping = stop_after_updates is not None and state.update >= stop_after_updates
            if state.update % config.checkpoint_every == 0 or state.update == num_updates \
                    or stopping:
                save(state, hooks, out, checkpoint_name)
            yield row
            if stopping:
                break
        if state.update == start:  # nothing left to do (resumed a finished run)
            save(state, hooks, out, checkpoint_name)
    finally:
        modes.close()
        bar.close()
        writer.close()
        state.envs.close()
