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
   expected latency is above the target and down while below.

The first ``warmup_steps`` only train the weights, on uniformly sampled paths.  A checkpoint
every ``checkpoint_every`` updates holds everything (supernet, logits, optimizers, target,
environments, RNG), so a killed search resumes exactly.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from a3cs.rl.algorithms import (
    CollectorState,
    Minibatch,
    add_advantages,
    clip_grad_norm,
    collect_rollout,
    flatten,
    grads_of,
    ppo_loss,
    update,
)
from a3cs.rl.checkpoint import (
    pickle_envs,
    read_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
    unpickle_envs,
)
from a3cs.rl.config import TrainConfig
from a3cs.rl.envs import make_env
from a3cs.rl.networks import RunningNorm, action_dim, policy_kind
from a3cs.search.config import SearchConfig
from a3cs.search.targets import Target
from distill.losses import distill_loss
from distill.schedules import weight_schedule
from distill.teacher import Teacher
from hw_sim.io import atomic_write_text, dump_yaml
from nas.arch import Arch, reference_arch
from nas.expected_cost import CandidateTable
from nas.space import SearchSpace
from nas.supernet import SuperNet

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


def architecture_task_loss(supernet: SuperNet, mb: Minibatch,
                           coefs: tuple[float, float] | None, rl: TrainConfig) -> torch.Tensor:
    """The task loss the architecture descends, on the supernet's current path: A2D's
    distillation loss with a teacher, PPO's loss without one."""
    if coefs is not None and mb.teacher_dist is not None and mb.teacher_value is not None:
        return distill_loss(supernet, mb.obs, mb.teacher_dist, mb.teacher_value,
                            kind=supernet.kind, actor_coef=coefs[0],
                            critic_coef=coefs[1]).total
    return ppo_loss(supernet, mb, kind=supernet.kind, clip_range=rl.clip_range,
                    ent_coef=rl.ent_coef, vf_coef=rl.vf_coef,
                    normalize_advantage=bool(rl.normalize_advantage)).total


def local_expectation(supernet: SuperNet, indices: dict[str, int],
                      loss: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``sum_label sum_o p_label[o] * loss(path with label = o)``, the other choices at
    ``indices``: its gradient to each label's logits is the exact gradient of the expected loss
    in that choice (Titsias and Lazaro-Gredilla, "Local expectation gradients", NeurIPS 2015).
    The losses are evaluated without gradients, so the weights are untouched."""
    probabilities = supernet.probabilities()
    total = next(iter(probabilities.values())).new_zeros(())
    with torch.no_grad():
        base = float(_loss_on(supernet, indices, loss))
    for label, probs in probabilities.items():
        values = []
        for option in range(probs.shape[0]):
            if option == indices[label]:
                values.append(base)
                continue
            with torch.no_grad():
                values.append(float(_loss_on(supernet, {**indices, label: option}, loss)))
        table = probs.new_tensor(values)
        total = total + (probs * (table - base)).sum()  # a baseline: same gradient, less noise
    return total + base


def _loss_on(supernet: SuperNet, indices: dict[str, int],
             loss: Callable[[], torch.Tensor]) -> torch.Tensor:
    supernet.use_architecture(indices)
    return loss()


def temperature(progress: float, start: float, end: float) -> float:
    """Exponential decay from ``start`` to ``end`` over ``progress`` in [0, 1]."""
    return start * (end / start) ** min(max(progress, 0.0), 1.0)


def run_supernet_search(config: SearchConfig, rl: TrainConfig, space: SearchSpace,
                        target: Target, teacher: Teacher | None, out: Path, *,
                        lam: float, search_hardware: bool, resume: bool,
                        progress: bool = True) -> SearchOutcome:
    """Search an architecture (and, with ``search_hardware``, the target's hardware).

    Args:
        config: the run's settings (budget, supernet, cost, seed).
        rl: PPO settings (num_envs, n_steps, minibatches, learning rate...).
        space: the agent search space.
        target: prices candidate layers; its logits are searched when ``search_hardware``.
        teacher: A2D teacher, or None (no distillation).
        out: folder of this stage (checkpoint, metrics.csv).
        lam: weight of the relative expected latency (0: hardware-agnostic NAS).
        search_hardware: update the target's logits too (co-search).
        resume: continue from ``out/search_checkpoint.pt``.
        progress: show a progress bar.
    """
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(config.seed)
    envs = make_env(config.env_id, rl.num_envs, config.seed)
    obs_space, action_space = envs.single_observation_space, envs.single_action_space
    obs_shape = tuple(int(d) for d in obs_space.shape)
    kind = policy_kind(action_space)
    normalizer = RunningNorm(obs_shape) if rl.normalize_obs else None
    supernet = SuperNet(space, obs_shape, action_dim(action_space),
                        gaussian=kind == "gaussian",
                        obs_scale=1.0 / 255.0 if obs_space.dtype.name == "uint8" else 1.0,
                        obs_transform=normalizer, generator=generator)
    table = CandidateTable(space, obs_shape, action_dim(action_space))
    target.prepare(table)
    reference = reference_arch(obs_shape)

    weight_opt = torch.optim.Adam(supernet.weight_parameters(), lr=rl.learning_rate or 2.5e-4,
                                  eps=rl.optimizer_eps)
    arch_opt = torch.optim.Adam(supernet.arch_parameters(), lr=config.supernet.arch_lr,
                                betas=(0.5, 0.999))
    accel_params = target.parameters() if search_hardware else []
    accel_opt = torch.optim.Adam(accel_params, lr=config.supernet.accel_lr) \
        if accel_params else None
    collector = CollectorState.start(envs, torch.device("cpu"), rl.recent_episodes)
    rollout = rl.rollout_steps
    warmup_updates = -(-config.budget.warmup_steps // rollout)
    total_updates = warmup_updates + -(-config.budget.search_steps // rollout)
    distill_scale = weight_schedule(config.distill)
    metrics: list[dict[str, float]] = []
    start_update, wall = 0, 0.0

    ckpt_path = out / CHECKPOINT
    if resume and ckpt_path.is_file():
        saved = read_checkpoint(ckpt_path, field="--resume")
        supernet.load_state_dict(saved["supernet"])
        weight_opt.load_state_dict(saved["weight_opt"])
        arch_opt.load_state_dict(saved["arch_opt"])
        if accel_opt is not None:
            accel_opt.load_state_dict(saved["accel_opt"])
        target.load_state_dict(saved["target"])
        envs.close()
        envs = unpickle_envs(saved["envs"])
        collector = CollectorState.from_state_dict(saved["collector"], torch.device("cpu"))
        restore_rng_states(saved["rng"], generator)
        start_update, lam = int(saved["update"]), float(saved["lam"])
        metrics, wall = list(saved["metrics"]), float(saved["wall_time_s"])

    reference_workload = reference.workload(obs_shape, action_dim(action_space))

    def reference_latency() -> float:
        """Latency of the hand-designed network on the target's current hardware."""
        return target.workload_latency(reference_workload)

    def save(update_idx: int) -> None:
        save_checkpoint(ckpt_path, {
            "supernet": supernet.state_dict(), "weight_opt": weight_opt.state_dict(),
            "arch_opt": arch_opt.state_dict(),
            "accel_opt": accel_opt.state_dict() if accel_opt is not None else None,
            "target": target.state_dict(), "envs": pickle_envs(envs),
            "collector": collector.state_dict(), "rng": rng_states(generator),
            "update": update_idx, "lam": lam, "metrics": metrics, "wall_time_s": wall})
        if metrics:
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=list(metrics[-1]))
            writer.writeheader()
            writer.writerows(metrics)
            atomic_write_text(out / "metrics.csv", text.getvalue())

    bar = tqdm(total=total_updates * rollout, initial=collector.global_step, unit="step",
               unit_scale=True, dynamic_ncols=True, disable=not progress,
               desc=f"search {config.method}")
    try:
        for update_idx in range(start_update, total_updates):
            started = time.perf_counter()
            warming = update_idx < warmup_updates
            search_progress = 0.0 if warming else (update_idx - warmup_updates) / max(
                1, total_updates - warmup_updates)
            tau = temperature(search_progress, config.supernet.tau_start,
                              config.supernet.tau_end)

            # 1. a path and a rollout on it
            with torch.no_grad():
                if warming:  # uniform paths: the logits have not moved yet
                    supernet.arch_logits.zero_grad(set_to_none=True)
                supernet.sample_path(tau, generator)
            batch = collect_rollout(supernet, envs, collector, rl.n_steps or 1, generator,
                                    gamma=rl.gamma, clip_reward=bool(rl.clip_reward))
            batch = add_advantages(batch, gamma=rl.gamma, gae_lambda=rl.gae_lambda or 0.0)
            coefs = None
            if teacher is not None:
                flat_obs = batch.obs.reshape(batch.size, *batch.obs.shape[2:])
                t_dist, t_value = teacher.outputs(flat_obs)
                batch = replace(batch, teacher_dist=t_dist, teacher_value=t_value)
                scale = distill_scale(update_idx / total_updates)
                coefs = (config.distill.actor_coef * scale, config.distill.critic_coef * scale)

            # 2. weights, on the sampled path
            for param in supernet.arch_parameters():
                param.requires_grad_(False)
            stats = update(supernet, weight_opt, batch, rl, generator, distill_coefs=coefs)
            for param in supernet.arch_parameters():
                param.requires_grad_(True)
            paths_kl = float("nan")
            if coefs is not None and config.supernet.distill_paths:
                kls = []
                data = flatten(batch)
                for param in supernet.arch_parameters():
                    param.requires_grad_(False)
                for group in weight_opt.param_groups:
                    group["lr"] = config.supernet.distill_lr
                for _ in range(config.supernet.distill_paths):
                    with torch.no_grad():
                        supernet.sample_path(tau, generator)
                    index = torch.randperm(data.obs.shape[0], generator=generator)[
                        : rl.batch_size or data.obs.shape[0]]
                    mb = data.take(index)
                    assert mb.teacher_dist is not None and mb.teacher_value is not None
                    extra = distill_loss(supernet, mb.obs, mb.teacher_dist, mb.teacher_value,
                                         kind=supernet.kind, actor_coef=coefs[0],
                                         critic_coef=coefs[1])
                    kls.append(float(extra.actor_kl))
                    weight_opt.zero_grad(set_to_none=True)
                    extra.total.backward()
                    clip_grad_norm(grads_of(supernet.weight_parameters()), rl.max_grad_norm)
                    weight_opt.step()
                for group in weight_opt.param_groups:
                    group["lr"] = rl.learning_rate or 2.5e-4
                for param in supernet.arch_parameters():
                    param.requires_grad_(True)
                paths_kl = sum(kls) / len(kls)
            if normalizer is not None:
                normalizer.update(batch.obs.reshape(batch.size, *batch.obs.shape[2:]))

            row: dict[str, float] = {"update": update_idx + 1,
                                     "global_step": collector.global_step, "tau": tau,
                                     "recent_return": collector.recent_mean_return(),
                                     "policy_loss": stats.policy_loss,
                                     "distill_actor_kl": stats.distill_actor_kl,
                                     "paths_actor_kl": paths_kl}
            if not warming:
                # 3. architecture: task loss through the paths' gates + relative latency
                data = flatten(batch)
                index = torch.randperm(data.obs.shape[0], generator=generator)[
                    : config.supernet.arch_batch]
                task_loss = functools.partial(architecture_task_loss, supernet,
                                              data.take(index), coefs, rl)
                losses = []
                for _ in range(config.supernet.arch_paths):
                    path = supernet.sample_path(tau, generator)
                    if config.supernet.arch_gradient == "local_expectation":
                        losses.append(local_expectation(supernet, path.indices, task_loss))
                    else:
                        losses.append(task_loss())  # gates of the sampled path carry gradients
                task = torch.stack(losses).mean()
                probabilities = supernet.probabilities()
                latency = target.expected_latency(probabilities)
                latency_ref = reference_latency()
                arch_loss = task + lam * latency / latency_ref
                arch_opt.zero_grad(set_to_none=True)
                if accel_opt is not None:
                    accel_opt.zero_grad(set_to_none=True)
                arch_loss.backward()
                arch_opt.step()

                # 4. accelerator: its own loss for the current architecture distribution
                if accel_opt is not None:
                    accel_opt.zero_grad(set_to_none=True)
                    detached = {k: v.detach() for k, v in supernet.probabilities().items()}
                    hardware_loss = target.hardware_loss(detached)
                    if hardware_loss is not None:
                        hardware_loss.backward()
                        accel_opt.step()

                # 5. lam towards the latency target
                expected_fps = 1.0 / latency.item()
                target_latency = (1.0 / config.cost.target_fps if config.cost.target_fps
                                  else latency_ref / config.cost.target_speedup
                                  if config.cost.target_speedup else None)
                if target_latency is not None:
                    lam *= math.exp(config.cost.lam_rate * math.copysign(
                        1.0, latency.item() - target_latency))
                row.update(expected_latency_s=latency.item(), reference_latency_s=latency_ref,
                           expected_fps=expected_fps, lam=lam, task_loss=task.item())
            wall += time.perf_counter() - started
            row["wall_time_s"] = wall
            metrics.append(row)
            bar.update(batch.size)
            bar.set_postfix(ret=f"{row['recent_return']:.2f}",
                            fps=f"{row.get('expected_fps', float('nan')):.0f}", refresh=False)
            done = update_idx + 1
            if done % config.checkpoint_every == 0 or done == total_updates:
                save(done)
    finally:
        bar.close()
        envs.close()

    arch = supernet.derive(name=f"{config.method}_seed{config.seed}")
    probabilities = {label: [round(float(p), 6) for p in probs.detach()]
                     for label, probs in supernet.probabilities().items()}
    atomic_write_text(out / "probabilities.yaml", dump_yaml(probabilities))
    with torch.no_grad():
        expected = float(target.expected_latency(supernet.probabilities()))
    return SearchOutcome(arch=arch, probabilities=probabilities, expected_latency_s=expected,
                         reference_latency_s=reference_latency(), lam=lam,
                         env_steps=collector.global_step, wall_time_s=wall)
