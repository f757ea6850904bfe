"""The differentiable co-search (A2D + A3C-S), top to bottom.

One search update:

1. sample a path of the supernet (hard Gumbel-softmax at temperature ``tau``) and collect a
   rollout with it;
2. **weights**: PPO epochs on the rollout plus A2D distillation (the teacher's policy and
   value on the states the student visited), on that path; then ``distill_paths``
   distillation-only minibatch steps, each on a freshly sampled path: the distillation loss
   needs no on-policy data, so the shared weights learn many paths per rollout;
3. **architecture**: the task loss through the straight-through gates (with a teacher: the
   distillation loss averaged over ``arch_paths`` sampled paths; without: the PPO loss of the
   rollout's path), plus ``lam * E[latency] / latency_ref``: the expected latency of the
   architecture distribution on the target's current hardware (exact, see
   :mod:`nas.expected_cost`) relative to the hand-designed network's;
4. **accelerator**: the target's own logits descend its hardware loss for the current
   architecture distribution;
5. optionally adapt ``lam`` towards a latency target (an FPS, or a speed-up over the
   hand-designed network): multiplied by ``exp(+-lam_rate)`` each step, up while the
   expected latency is above the target and down while below; with the absolute penalty and
   ``cost.tolerance``, up while the derived network's latency is outside the tolerance
   around the target and down while inside (a Lagrange multiplier), or, with
   ``cost.tolerance_control: setpoint``, ``lam`` fixed and the penalty's target moved by
   ``exp(+-lam_rate)`` while the derived network is faster / slower than the tolerance.

Steps 1-2 are the training loop of ``a3cs train`` (:func:`a3cs.rl.loop.run_loop`: the same
rollout, update, schedules, device, metrics and checkpoint); the path sampling, the
distillation-only steps and steps 3-5 plug into it as :class:`SearchHooks`.  The first
``warmup_steps`` only train the weights, on uniformly sampled paths.  A checkpoint every
``checkpoint_every`` updates holds everything (supernet, logits, optimizers, target,
environments, RNG), so a killed search resumes exactly.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from a3cs.rl.algorithms import (
    Minibatch,
    RolloutBatch,
    clip_grad_norm,
    flatten,
    grads_of,
    ppo_loss,
)
from a3cs.rl.checkpoint import read_checkpoint
from a3cs.rl.config import TrainConfig
from a3cs.rl.envs import SyncEnvs
from a3cs.rl.loop import LoopHooks, LoopState, build_state, run_loop
from a3cs.rl.networks import RunningNorm, action_dim, policy_kind
from a3cs.search.config import SearchConfig
from a3cs.search.prepare import check_scoring
from a3cs.search.targets import Target
from a3cs_common.io import atomic_write_text, dump_yaml
from distill.losses import distill_loss
from hw_sim.workload import Workload
from nas.arch import Arch, reference_arch
from nas.expected_cost import CandidateTable
from nas.space import SearchSpace
from nas.supernet import ArchPath, SuperNet

CHECKPOINT = "search_checkpoint.pt"


@dataclass(frozen=True)
class SearchOutcome:
    """What the differentiable search leaves behind."""

    arch: Arch
    probabilities: dict[str, list[float]]
    expected_latency_s: float
    reference_latency_s: float
    lam: float
    env_steps: int
    wall_time_s: float
    device: str


def architecture_task_loss(supernet: SuperNet, mb: Minibatch,
                           coefs: tuple[float, float] | None, rl: TrainConfig,
                           path: ArchPath) -> torch.Tensor:
    """The task loss the architecture descends, on ``path``: A2D's distillation loss with a
    teacher, PPO's loss without one."""
    model = functools.partial(supernet, path=path)
    if coefs is not None and mb.teacher_dist is not None and mb.teacher_value is not None:
        return distill_loss(model, mb.obs, mb.teacher_dist, mb.teacher_value,
                            kind=supernet.kind, actor_coef=coefs[0],
                            critic_coef=coefs[1]).total
    return ppo_loss(model, mb, kind=supernet.kind, clip_range=rl.clip_range,
                    ent_coef=rl.ent_coef, vf_coef=rl.vf_coef,
                    normalize_advantage=bool(rl.normalize_advantage)).total


def local_expectation(supernet: SuperNet, indices: dict[str, int],
                      loss: Callable[[ArchPath], torch.Tensor]) -> torch.Tensor:
    """``sum_label sum_o p_label[o] * loss(path with label = o)``, the other choices at
    ``indices``: its gradient to each label's logits is the exact gradient of the expected loss
    in that choice (Titsias and Lazaro-Gredilla, "Local expectation gradients", NeurIPS 2015).
    The losses are evaluated without gradients, so the weights are untouched."""
    probabilities = supernet.probabilities()
    total = next(iter(probabilities.values())).new_zeros(())
    with torch.no_grad():
        base = float(loss(supernet.fixed_path(indices)))
    for label, probs in probabilities.items():
        values = []
        for option in range(probs.shape[0]):
            if option == indices[label]:
                values.append(base)
                continue
            with torch.no_grad():
                values.append(float(loss(supernet.fixed_path({**indices, label: option}))))
        table = probs.new_tensor(values)
        total = total + (probs * (table - base)).sum()  # a baseline: same gradient, less noise
    return total + base


def temperature(progress: float, start: float, end: float) -> float:
    """Exponential decay from ``start`` to ``end`` over ``progress`` in [0, 1]."""
    return start * (end / start) ** min(max(progress, 0.0), 1.0)


class SearchHooks(LoopHooks):
    """The co-search's part of the training loop (steps 1 and 3-5 of the module docstring)."""

    def __init__(self, config: SearchConfig, rl: TrainConfig, supernet: SuperNet,
                 target: Target, *, lam: float, search_hardware: bool,
                 warmup_updates: int, total_updates: int) -> None:
        self.config, self.rl, self.supernet, self.target = config, rl, supernet, target
        self.lam = lam
        self.warmup_updates, self.total_updates = warmup_updates, total_updates
        # The logits are trained only by the architecture step; frozen elsewhere, so the
        # loop's weight update neither computes nor steps their gradients.
        for param in supernet.arch_parameters():
            param.requires_grad_(False)
        self.arch_opt = torch.optim.Adam(supernet.arch_parameters(),
                                         lr=config.supernet.arch_lr, betas=(0.5, 0.999))
        accel_params = target.parameters() if search_hardware else []
        self.accel_opt = (torch.optim.Adam(accel_params, lr=config.supernet.accel_lr)
                          if accel_params else None)
        obs_shape = supernet.obs_shape
        self.reference_workload = reference_arch(obs_shape).workload(
            obs_shape, supernet.action_dim, balanced_masks=rl.balanced_masks)
        self.tau = config.supernet.tau_start
        self.target_scale = 1.0  # cost.tolerance_control: setpoint's correction of the target
        self._own_reference = (target.searched_latency(self.reference_workload, config.seed)
                               if config.cost.reference == "own_hardware" else None)

    def reference_latency(self) -> float:
        """Latency (s) of the hand-designed network on the target's current hardware, or
        with ``cost.reference: own_hardware`` on its own accelerator search's (fixed)."""
        if self._own_reference is not None:
            return self._own_reference
        return self.target.workload_latency(self.reference_workload)

    def _warming(self, state: LoopState) -> bool:
        return state.update < self.warmup_updates

    def before_rollout(self, state: LoopState, progress: float) -> None:
        update_idx = state.update
        search_progress = 0.0 if self._warming(state) else (
            (update_idx - self.warmup_updates) / max(1, self.total_updates - self.warmup_updates))
        settings = self.config.supernet
        self.tau = temperature(search_progress, settings.tau_start, settings.tau_end)
        with torch.no_grad():  # 1. the path the rollout acts with (uniform while warming up)
            self.supernet.act_with(self.supernet.sample_path(self.tau, state.generator))

    def after_update(self, state: LoopState, batch: RolloutBatch,
                     distill_coefs: tuple[float, float] | None,
                     progress: float) -> dict[str, float]:
        row: dict[str, float] = {"tau": self.tau,
                                 "paths_actor_kl": self._distill_paths(state, batch,
                                                                       distill_coefs)}
        if not self._warming(state):
            row.update(self._architecture_step(state, batch, distill_coefs))
        return row

    def _distill_paths(self, state: LoopState, batch: RolloutBatch,
                       coefs: tuple[float, float] | None) -> float:
        """Distillation-only minibatch steps of the weights, each on a fresh path; the mean
        actor KL (NaN without a teacher)."""
        settings, supernet, rl = self.config.supernet, self.supernet, self.rl
        if coefs is None or not settings.distill_paths:
            return float("nan")
        data = flatten(batch)
        groups = state.optimizer.param_groups
        scheduled = [group["lr"] for group in groups]
        for group in groups:
            group["lr"] = settings.distill_lr
        kls = []
        weights = supernet.weight_parameters()
        fair = (supernet.fair_paths(settings.distill_paths, state.generator)
                if settings.weight_paths == "fair" else None)
        for step in range(settings.distill_paths):
            if fair is not None:
                path = fair[step]
            else:
                with torch.no_grad():
                    path = supernet.sample_path(self.tau, state.generator)
            index = torch.randperm(data.obs.shape[0], generator=state.generator)[
                : rl.batch_size or data.obs.shape[0]]
            mb = data.take(index.to(data.obs.device))
            assert mb.teacher_dist is not None and mb.teacher_value is not None
            extra = distill_loss(functools.partial(supernet, path=path), mb.obs,
                                 mb.teacher_dist, mb.teacher_value,
                                 kind=supernet.kind, actor_coef=coefs[0], critic_coef=coefs[1])
            kls.append(float(extra.actor_kl))
            state.optimizer.zero_grad(set_to_none=True)
            extra.total.backward()
            clip_grad_norm(grads_of(weights), rl.max_grad_norm)
            state.optimizer.step()
        for group, lr in zip(groups, scheduled, strict=True):
            group["lr"] = lr
        return sum(kls) / len(kls)

    def _architecture_step(self, state: LoopState, batch: RolloutBatch,
                           coefs: tuple[float, float] | None) -> dict[str, float]:
        """Steps 3-5: architecture logits, accelerator logits, lambda."""
        config, supernet, target = self.config, self.supernet, self.target
        arch_params = supernet.arch_parameters()
        for param in arch_params:
            param.requires_grad_(True)
        every = config.supernet.accelerator_research_every
        if (self.accel_opt is not None and every
                and (state.update - self.warmup_updates) % every == 0):
            self._research_accelerator(self.accel_opt)
        try:
            data = flatten(batch)
            index = torch.randperm(data.obs.shape[0], generator=state.generator)[
                : config.supernet.arch_batch]
            task_loss = functools.partial(architecture_task_loss, supernet,
                                          data.take(index.to(data.obs.device)), coefs,
                                          self.rl)
            losses = []
            for _ in range(config.supernet.arch_paths):
                path = supernet.sample_path(self.tau, state.generator)
                if config.supernet.arch_gradient == "local_expectation":
                    losses.append(local_expectation(supernet, path.indices, task_loss))
                else:
                    losses.append(task_loss(path))  # the sampled path's gates carry gradients
            task = torch.stack(losses).mean()
            # The hardware models run on the CPU; .cpu() keeps the gradient path.
            latency = target.expected_latency(
                {k: v.cpu() for k, v in supernet.probabilities().items()})
            latency_ref = self.reference_latency()
            target_latency = config.cost.target_latency_s(latency_ref)
            hardware_term = config.cost.hardware_term(latency, latency_ref, self.target_scale)
            arch_loss = task + self.lam * hardware_term.to(task.device)
            self.arch_opt.zero_grad(set_to_none=True)
            if self.accel_opt is not None:
                self.accel_opt.zero_grad(set_to_none=True)
            arch_loss.backward()
            self.arch_opt.step()
        finally:
            for param in arch_params:
                param.requires_grad_(False)

        if self.accel_opt is not None:  # 4. the accelerator, for the current distribution
            self.accel_opt.zero_grad(set_to_none=True)
            detached = {k: v.detach().cpu() for k, v in supernet.probabilities().items()}
            hardware_loss = target.hardware_loss(detached)
            if hardware_loss is not None:
                hardware_loss.backward()
                self.accel_opt.step()

        # 5. lam towards the latency target (the absolute penalty aims at it by itself)
        expected_latency = latency.item()
        row = {"expected_latency_s": expected_latency, "reference_latency_s": latency_ref,
               "expected_fps": 1.0 / expected_latency}
        if target_latency is not None and config.cost.penalty == "relative":
            self.lam *= math.exp(config.cost.lam_rate * math.copysign(
                1.0, expected_latency - target_latency))
        elif target_latency is not None and config.cost.tolerance is not None:
            # the absolute penalty's Lagrange multiplier, for the network that would be derived
            derived_latency = target.workload_latency(self._derived_workload())
            ratio, rate = derived_latency / target_latency, config.cost.lam_rate
            if config.cost.tolerance_control == "lagrange":
                outside = abs(ratio - 1.0) > config.cost.tolerance
                self.lam *= math.exp(rate if outside else -rate)
            elif ratio < 1.0 - config.cost.tolerance:  # setpoint: too fast, aim E higher
                self.target_scale *= math.exp(rate)
            elif ratio > 1.0 + config.cost.tolerance:
                self.target_scale *= math.exp(-rate)
            row.update(derived_latency_s=derived_latency, target_scale=self.target_scale)
        return {**row, "lam": self.lam, "task_loss": task.item()}

    def _derived_workload(self) -> Workload:
        """The workload of the network the logits derive now."""
        supernet = self.supernet
        return supernet.derive(name="current").workload(
            supernet.obs_shape, supernet.action_dim, balanced_masks=self.rl.balanced_masks)

    def _research_accelerator(self, accel_opt: torch.optim.Optimizer) -> None:
        """Auto-NBA: the accelerator searched for the network the logits derive now."""
        self.target.research(self._derived_workload(), self.config.seed,
                             self.config.supernet.accelerator_research_logit)
        accel_opt.state.clear()  # Adam's moments belong to the logits it replaced

    def state_dict(self) -> dict[str, Any]:
        return {"arch_opt": self.arch_opt.state_dict(),
                "accel_opt": self.accel_opt.state_dict() if self.accel_opt is not None
                else None,
                "target": self.target.state_dict(), "lam": self.lam,
                "target_scale": self.target_scale}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.arch_opt.load_state_dict(saved["arch_opt"])
        if self.accel_opt is not None:
            self.accel_opt.load_state_dict(saved["accel_opt"])
        self.target.load_state_dict(saved["target"])
        self.lam = float(saved["lam"])
        self.target_scale = float(saved.get("target_scale", 1.0))  # absent before setpoints

    def postfix(self, row: dict[str, float]) -> dict[str, str]:
        return {"fps": f"{row.get('expected_fps', float('nan')):.0f}"}


def run_supernet_search(config: SearchConfig, rl: TrainConfig, space: SearchSpace,
                        target: Target, out: Path, *, lam: float, search_hardware: bool,
                        resume: bool, progress: bool = True) -> SearchOutcome:
    """Search an architecture (and, with ``search_hardware``, the target's hardware).

    Args:
        config: the run's settings (budget, supernet, cost, seed).
        rl: the training loop's settings (num_envs, n_steps, minibatches, learning rate and
            its schedule, optimizer, device; ``rl.teacher``: the A2D teacher's checkpoint, or
            None for no distillation).
        space: the agent search space.
        target: prices candidate layers; its logits are searched when ``search_hardware``.
        out: folder of this stage (checkpoint, metrics.csv, tb/).
        lam: weight of the relative expected latency (0: hardware-agnostic NAS).
        search_hardware: update the target's logits too (co-search).
        resume: continue from ``out/search_checkpoint.pt``.
        progress: show a progress bar.

    Raises:
        ConfigError: ``cuda`` without CUDA, or a checkpoint of another version.
    """
    out.mkdir(parents=True, exist_ok=True)
    rl = rl.model_copy(update={"checkpoint_every": config.checkpoint_every,
                               "distill": config.distill})
    tables: dict[str, CandidateTable] = {}

    def make_supernet(envs: SyncEnvs) -> SuperNet:
        obs_space, action_space = envs.single_observation_space, envs.single_action_space
        obs_shape = tuple(int(d) for d in obs_space.shape)
        supernet = SuperNet(space, obs_shape, action_dim(action_space),
                            gaussian=policy_kind(action_space) == "gaussian",
                            obs_scale=1.0 / 255.0 if obs_space.dtype.name == "uint8" else 1.0,
                            obs_transform=RunningNorm(obs_shape) if rl.normalize_obs else None,
                            generator=torch.Generator().manual_seed(config.seed),
                            weight_sharing=config.supernet.weight_sharing)
        tables["candidates"] = CandidateTable(space, obs_shape, action_dim(action_space),
                                              balanced_masks=rl.balanced_masks)
        return supernet

    state = build_state(rl, make_supernet, parameters=lambda net: net.weight_parameters())
    supernet = state.model
    assert isinstance(supernet, SuperNet)
    target.prepare(tables["candidates"])
    rollout = rl.rollout_steps
    warmup_updates = -(-config.budget.warmup_steps // rollout)
    total_updates = warmup_updates + -(-config.budget.search_steps // rollout)
    hooks = SearchHooks(config, rl, supernet, target, lam=lam, search_hardware=search_hardware,
                        warmup_updates=warmup_updates, total_updates=total_updates)
    ckpt_path = out / CHECKPOINT
    check_scoring(out, resumed_work=ckpt_path if resume and ckpt_path.is_file() else None)
    if resume and ckpt_path.is_file():
        saved = read_checkpoint(ckpt_path, field="--resume")
        state.load_state_dict(saved, source=str(ckpt_path))
        hooks.load_state_dict(saved["hooks"])
    for _row in run_loop(state, hooks, out, num_updates=total_updates,
                         checkpoint_name=CHECKPOINT, progress=progress,
                         desc=f"search {config.method}"):
        pass

    arch = supernet.derive(name=f"{config.method}_seed{config.seed}")
    probabilities = {label: [round(float(p), 6) for p in probs.detach().cpu()]
                     for label, probs in supernet.probabilities().items()}
    atomic_write_text(out / "probabilities.yaml", dump_yaml(probabilities))
    with torch.no_grad():
        expected = float(target.expected_latency(
            {k: v.cpu() for k, v in supernet.probabilities().items()}))
    return SearchOutcome(arch=arch, probabilities=probabilities, expected_latency_s=expected,
                         reference_latency_s=hooks.reference_latency(), lam=hooks.lam,
                         env_steps=state.collector.global_step, wall_time_s=state.wall_time_s,
                         device=str(state.device))
