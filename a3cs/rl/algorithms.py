"""PPO and A2C as separately callable pieces over ``(model, batch)``.

* :func:`collect_rollout`: ``n_steps`` steps of every environment with the current policy.
* :func:`compute_gae`: advantages and returns (GAE(lambda)) of a rollout.
* :func:`ppo_loss` / :func:`a2c_loss`: the loss of a minibatch.
* :func:`update`: epochs of minibatch gradient steps on one rollout, with the A2D
  distillation term (:func:`distill.losses.distill_loss`) when the batch carries teacher
  outputs.

The driver (:mod:`a3cs.rl.train`) strings them together; the co-search loop reuses them
between architecture steps.  Randomness comes only from the ``torch.Generator`` passed in
(action sampling, minibatch order), so a run is exactly reproducible from its checkpoint.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torch.optim.optimizer as _optim_hooks
from torch import nn

from a3cs.rl.batched.core import BatchedMinAtar
from a3cs.rl.config import TrainConfig
from a3cs.rl.envs import SyncEnvs
from a3cs.rl.networks import (
    ActorCritic,
    action_noise,
    dist_params_width,
    log_prob_entropy,
    sample_action,
    sampled_log_prob,
)
from a3cs_common.torch_settings import acting_kernels
from distill.losses import PolicyKind, distill_loss
from nas.layers import dense_pass, prunable_layers

# --------------------------------------------------------------------------------------------
# Rollouts


@dataclass
class CollectorState:
    """What carries over from one rollout to the next.

    Attributes:
        obs: current observations ``[N, *obs_shape]`` (on the model's device).
        episode_starts: ``[N]`` float, 1 where ``obs`` is the first of an episode.
        episode_returns: ``[N]`` raw (unclipped) return of each running episode.
        episode_lengths: ``[N]`` steps of each running episode.
        recent_returns: returns of the last completed episodes (newest last).
        episodes: completed episodes.
        global_step: environment steps taken (all envs together).
    """

    obs: torch.Tensor
    episode_starts: torch.Tensor
    episode_returns: np.ndarray
    episode_lengths: np.ndarray
    recent_returns: deque[float]
    episodes: int = 0
    global_step: int = 0

    @classmethod
    def start(cls, envs: SyncEnvs | BatchedMinAtar, device: torch.device,
              recent: int = 100) -> CollectorState:
        """The state right after ``envs`` was reset."""
        n = envs.num_envs
        return cls(obs=torch.as_tensor(envs.last_obs, device=device),
                   episode_starts=torch.ones(n, device=device),
                   episode_returns=np.zeros(n), episode_lengths=np.zeros(n, dtype=np.int64),
                   recent_returns=deque(maxlen=recent))

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only (loads with ``torch.load(weights_only=True)``)."""
        return {"obs": self.obs.cpu(), "episode_starts": self.episode_starts.cpu(),
                "episode_returns": torch.from_numpy(self.episode_returns.copy()),
                "episode_lengths": torch.from_numpy(self.episode_lengths.copy()),
                "recent_returns": list(self.recent_returns),
                "recent_maxlen": self.recent_returns.maxlen,
                "episodes": self.episodes, "global_step": self.global_step}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: torch.device) -> CollectorState:
        return cls(obs=state["obs"].to(device),
                   episode_starts=state["episode_starts"].to(device),
                   episode_returns=state["episode_returns"].numpy().copy(),
                   episode_lengths=state["episode_lengths"].numpy().copy(),
                   recent_returns=deque(state["recent_returns"], maxlen=state["recent_maxlen"]),
                   episodes=int(state["episodes"]), global_step=int(state["global_step"]))

    def recent_mean_return(self) -> float:
        """Mean return of the recent completed episodes (NaN before the first ends)."""
        return float(np.mean(self.recent_returns)) if self.recent_returns else float("nan")


@dataclass
class RolloutBatch:
    """One rollout, ``[T, N]`` = ``[n_steps, num_envs]`` leading dimensions.

    Attributes:
        obs: ``[T, N, *obs_shape]``.
        actions: ``[T, N]`` long (discrete) or ``[T, N, D]`` float.
        logprobs, values: of the acting policy, ``[T, N]``.
        rewards: training rewards ``[T, N]`` (clipped if configured; a truncated episode's
            last reward includes ``gamma * V(final observation)``).
        episode_starts: ``[T, N]``, 1 where ``obs[t]`` starts an episode.
        last_value, last_episode_start: ``[N]``, for the step after the rollout.
        advantages, returns: ``[T, N]``, filled by :func:`compute_gae`.
        teacher_dist, teacher_value: the teacher's outputs on the flattened ``obs``
            (``[T * N, P]`` and ``[T * N]``, A2D), or None.
        episode_returns: raw returns of the episodes that ended during the rollout.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    episode_starts: torch.Tensor
    last_value: torch.Tensor
    last_episode_start: torch.Tensor
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    teacher_dist: torch.Tensor | None = None
    teacher_value: torch.Tensor | None = None
    episode_returns: list[float] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.rewards.numel()


@torch.no_grad()
def collect_rollout(model: ActorCritic, envs: SyncEnvs, state: CollectorState, n_steps: int,
                    generator: torch.Generator, *, gamma: float,
                    clip_reward: bool = False) -> RolloutBatch:
    """Run the policy for ``n_steps`` steps in every environment.

    Advances ``state`` (observations, episode bookkeeping, ``global_step``) in place.

    Args:
        model: the acting policy (its mode is left unchanged; it has no dropout/batch norm).
        envs: the environments whose current observations are ``state.obs``.
        state: carried over from the previous rollout.
        n_steps: steps per environment.
        generator: RNG of the actions.
        gamma: discount, for bootstrapping truncated episodes.
        clip_reward: train on ``sign(reward)`` (returns are recorded raw).
    """
    device = state.obs.device
    num_envs = envs.num_envs
    # Per-step bookkeeping goes into numpy arrays (an item write costs ~1 us there, ~5-10 us
    # as a torch indexing op); they become tensors once, after the loop.
    obs_buf = np.empty((n_steps, *state.obs.shape), dtype=envs.single_observation_space.dtype)
    act_shape = (n_steps, num_envs) if model.kind == "categorical" else (
        n_steps, num_envs, model.action_dim)
    act_buf = np.empty(act_shape, dtype=np.int64 if model.kind == "categorical" else np.float32)
    width = dist_params_width(model.kind, model.action_dim)
    policy_buf = np.empty((n_steps, num_envs, width), dtype=np.float32)
    val_buf = np.empty((n_steps, num_envs), dtype=np.float32)
    start_buf = np.empty((n_steps, num_envs), dtype=np.float32)
    rewards = np.empty((n_steps, num_envs), dtype=np.float32)
    starts = state.episode_starts.cpu().numpy()
    obs_np = state.obs.cpu().numpy()
    finished: list[float] = []
    noise = action_noise((n_steps, num_envs), model.kind, model.action_dim, generator).numpy()
    kind = model.kind
    # On CPU, from_numpy and .numpy() share memory (as_tensor and .cpu() cost ~10 us more
    # a step in the loop, where their code is cold after each environment step).
    on_cpu = device.type == "cpu"
    to_tensor = torch.from_numpy if on_cpu else partial(torch.as_tensor, device=device)
    # The policy's weights are fixed during a rollout.  Its outputs come packed, [B, P + 1]:
    # one conversion to numpy a step.
    policy = model.inference_packed() if isinstance(model, ActorCritic) else _packed(model)
    # Inference mode around the whole loop (not per step): entering it costs microseconds,
    # and nothing made inside it leaves the loop but numpy arrays.
    with acting_kernels(device), torch.inference_mode():
        for t in range(n_steps):
            obs_buf[t] = obs_np
            start_buf[t] = starts
            out = policy(to_tensor(obs_np))
            out = out.numpy() if on_cpu else out.cpu().numpy()
            policy_buf[t] = dist_np = out[:, :width]
            act_buf[t] = action = sample_action(dist_np, kind, noise[t])
            val_buf[t] = out[:, width]
            obs_np, reward, terminated, truncated, info = envs.step(action)
            state.episode_returns += reward
            state.episode_lengths += 1
            done = terminated | truncated
            rewards[t] = np.sign(reward) if clip_reward else reward
            if info:
                cut = np.flatnonzero(truncated & ~terminated)
                if cut.size:
                    final = torch.as_tensor(info["final_obs"][cut], device=device)
                    rewards[t, cut] += gamma * policy(final)[:, width].cpu().numpy()
                for i in np.flatnonzero(done):
                    finished.append(float(state.episode_returns[i]))
                    state.episode_returns[i] = 0.0
                    state.episode_lengths[i] = 0
            starts = done.astype(np.float32)
    state.obs = torch.as_tensor(obs_np, device=device)
    state.episode_starts = torch.as_tensor(starts, device=device)
    with acting_kernels(device), torch.inference_mode():
        last_value = policy(state.obs)[:, width]
    logprobs = sampled_log_prob(policy_buf, kind, noise, act_buf)
    state.global_step += n_steps * num_envs
    state.episodes += len(finished)
    state.recent_returns.extend(finished)

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(device)

    return RolloutBatch(obs=tensor(obs_buf), actions=tensor(act_buf), logprobs=tensor(logprobs),
                        values=tensor(val_buf), rewards=tensor(rewards),
                        episode_starts=tensor(start_buf), last_value=last_value,
                        last_episode_start=state.episode_starts, episode_returns=finished)


def collect_rollout_on_device(model: ActorCritic, envs: BatchedMinAtar,
                              state: CollectorState, n_steps: int, generator: torch.Generator,
                              *, gamma: float, clip_reward: bool = False) -> RolloutBatch:
    """:func:`collect_rollout` for environments stepped as tensors on the model's device
    (``env_backend: batched``): observations, actions, rewards and the episode bookkeeping
    stay there, and the host sees one transfer a rollout (the returns of the episodes that
    ended).  Same arguments and result; categorical policies (MinAtar's).  ``gamma`` is
    unused: these environments have no time limit, so no episode is truncated."""
    del gamma
    device = state.obs.device
    num_envs = envs.num_envs
    width = dist_params_width(model.kind, model.action_dim)
    obs_buf = torch.empty((n_steps, *state.obs.shape), device=device)
    act_buf = torch.empty((n_steps, num_envs), dtype=torch.long, device=device)
    logits_buf = torch.empty((n_steps, num_envs, width), device=device)
    val_buf = torch.empty((n_steps, num_envs), device=device)
    start_buf = torch.empty((n_steps, num_envs), device=device)
    rewards = torch.empty((n_steps, num_envs), device=device)
    ended = torch.empty((n_steps, num_envs), dtype=torch.bool, device=device)
    ended_returns = torch.empty((n_steps, num_envs), dtype=torch.float64, device=device)
    returns = torch.as_tensor(state.episode_returns, dtype=torch.float64, device=device)
    lengths = torch.as_tensor(state.episode_lengths, device=device)
    # drawn where the host-side collector draws them, so a seed means the same noise
    noise = action_noise((n_steps, num_envs), model.kind, model.action_dim, generator
                         ).to(device)
    policy = model.inference_packed() if isinstance(model, ActorCritic) else _packed(model)
    obs, starts = state.obs, state.episode_starts
    with acting_kernels(device), torch.no_grad():
        for t in range(n_steps):
            obs_buf[t] = obs
            start_buf[t] = starts
            out = policy(obs)
            logits_buf[t] = out[:, :width]
            val_buf[t] = out[:, width]
            act_buf[t] = action = (out[:, :width] + noise[t]).argmax(-1)
            obs, reward, terminated, truncated, _ = envs.step(action)
            done = terminated | truncated
            returns += reward
            lengths += 1
            rewards[t] = reward.sign() if clip_reward else reward
            ended[t] = done
            ended_returns[t] = returns
            returns.masked_fill_(done, 0.0)
            lengths.masked_fill_(done, 0)
            starts = done.float()
        last_value = policy(obs)[:, width]
    logprobs = F.log_softmax(logits_buf, dim=-1).gather(-1, act_buf[..., None])[..., 0]
    finished = ended_returns[ended].tolist()  # step-major, as collect_rollout lists them
    state.obs, state.episode_starts = obs, starts
    state.episode_returns = returns.cpu().numpy()
    state.episode_lengths = lengths.cpu().numpy()
    state.global_step += n_steps * num_envs
    state.episodes += len(finished)
    state.recent_returns.extend(finished)
    return RolloutBatch(obs=obs_buf, actions=act_buf, logprobs=logprobs, values=val_buf,
                        rewards=rewards, episode_starts=start_buf, last_value=last_value,
                        last_episode_start=starts, episode_returns=finished)


def _packed(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model``'s ``(dist_params, value)`` packed as :meth:`ActorCritic.inference_packed`
    packs them."""
    def forward(obs: torch.Tensor) -> torch.Tensor:
        dist, value = model(obs)
        return torch.cat([dist, value[:, None]], dim=-1)

    return forward


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, episode_starts: torch.Tensor,
                last_value: torch.Tensor, last_episode_start: torch.Tensor, *, gamma: float,
                gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a ``[T, N]`` rollout.

    ``delta_t = r_t + gamma * V_{t+1} * (1 - start_{t+1}) - V_t`` and
    ``A_t = delta_t + gamma * lambda * (1 - start_{t+1}) * A_{t+1}``.

    Returns:
        ``(advantages, returns)``, both ``[T, N]``, ``returns = advantages + values``.
    """
    # The recursion is 2 ops a step on [N]; numpy does them ~5x faster than torch on CPU.
    r = rewards.cpu().numpy().astype(np.float64)
    v = values.cpu().numpy().astype(np.float64)
    next_values = np.concatenate([v[1:], last_value.cpu().numpy()[None].astype(np.float64)])
    next_starts = np.concatenate([episode_starts[1:].cpu().numpy(),
                                  last_episode_start.cpu().numpy()[None]])
    nonterminal = 1.0 - next_starts.astype(np.float64)
    deltas = r + gamma * next_values * nonterminal - v
    decay = gamma * gae_lambda * nonterminal
    adv = np.empty_like(deltas)
    running = np.zeros(deltas.shape[1])
    for t in range(deltas.shape[0] - 1, -1, -1):
        running = deltas[t] + decay[t] * running
        adv[t] = running
    advantages = torch.as_tensor(adv, dtype=values.dtype, device=values.device)
    return advantages, advantages + values


def add_advantages(batch: RolloutBatch, *, gamma: float, gae_lambda: float) -> RolloutBatch:
    """``batch`` with :func:`compute_gae`'s advantages and returns filled in."""
    adv, ret = compute_gae(batch.rewards, batch.values, batch.episode_starts, batch.last_value,
                           batch.last_episode_start, gamma=gamma, gae_lambda=gae_lambda)
    return replace(batch, advantages=adv, returns=ret)


# --------------------------------------------------------------------------------------------
# Losses


@dataclass(frozen=True)
class Minibatch:
    """Flat samples ``[B, ...]`` of a rollout (see :class:`RolloutBatch`)."""

    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    teacher_dist: torch.Tensor | None = None
    teacher_value: torch.Tensor | None = None

    def take(self, index: torch.Tensor | slice) -> Minibatch:
        """The rows ``index``: a slice gives views, a 1-D index tensor copies the rows."""
        def rows(x: torch.Tensor | None) -> torch.Tensor | None:
            if x is None:
                return None
            if isinstance(index, slice):
                return x[index]
            # index_select, not x[index]: half the time on CPU (obs [1024, 4, 10, 10]: 165 vs
            # 329 us), the same rows.
            if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
                    memory_format=torch.channels_last):
                # gathered as the [B, H, W, C] array it is, so the rows stay channels-last
                return x.permute(0, 2, 3, 1).index_select(0, index).permute(0, 3, 1, 2)
            return x.index_select(0, index)

        return Minibatch(**{f.name: rows(getattr(self, f.name)) for f in fields(self)})


def flatten(batch: RolloutBatch) -> Minibatch:
    """All ``T * N`` samples of a rollout (advantages must be computed)."""
    if batch.advantages is None or batch.returns is None:
        raise ValueError("compute advantages (add_advantages) before flattening a rollout")
    size = batch.size

    def flat(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else x.reshape(size, *x.shape[2:])

    return Minibatch(obs=flat(batch.obs), actions=flat(batch.actions),
                     logprobs=flat(batch.logprobs), values=flat(batch.values),
                     advantages=flat(batch.advantages), returns=flat(batch.returns),
                     teacher_dist=batch.teacher_dist, teacher_value=batch.teacher_value)


@dataclass(frozen=True)
class RLLoss:
    """An RL loss and its terms (terms detached), with the forward outputs it used.

    The diagnostics ``approx_kl`` and ``clip_fraction`` are computed on access from the
    detached ``log_ratio``: :func:`update` computes them for all of an update's minibatches
    at once (:func:`ratio_stats`), ~12 small ops a minibatch fewer.
    """

    total: torch.Tensor
    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    entropy: torch.Tensor
    log_ratio: torch.Tensor
    clip_range: float | None
    outputs: tuple[torch.Tensor, torch.Tensor]

    @property
    def approx_kl(self) -> torch.Tensor:
        """``mean((r - 1) - log r)``, the k3 estimate of KL(old || new) (as SB3 logs it)."""
        return ratio_stats(self.log_ratio, self.clip_range)[0]

    @property
    def clip_fraction(self) -> torch.Tensor:
        """Fraction of samples whose ratio is clipped (``|r - 1| > clip_range``; 0 for A2C)."""
        return ratio_stats(self.log_ratio, self.clip_range)[1]


def ratio_stats(log_ratio: torch.Tensor, clip_range: float | None,
                groups: int | None = None) -> torch.Tensor:
    """``[approx_kl, clip_fraction]`` of ``log_ratio [S]``; with ``groups``, ``[2, groups]``:
    those of ``groups`` equal consecutive slices (minibatches).  The clip fraction is 0
    without a clip range."""
    with torch.no_grad():
        ratio = log_ratio.exp()
        kl = ((ratio - 1.0) - log_ratio).view(groups or 1, -1).mean(1)
        if clip_range is None:
            clipped = torch.zeros_like(kl)
        else:
            clipped = ((ratio - 1.0).abs() > clip_range).float().view(groups or 1, -1).mean(1)
        stats = torch.stack([kl, clipped])
        return stats if groups else stats[:, 0]


def _normalized(adv: torch.Tensor, normalize: bool) -> torch.Tensor:
    if normalize and adv.numel() > 1:
        return (adv - adv.mean()) / (adv.std() + 1e-8)
    return adv


def normalized_per_minibatch(advantages: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Each consecutive ``batch_size`` slice of ``advantages [S]`` normalised to mean 0, std 1
    (the last slice may be shorter), as the losses' ``normalize_advantage`` does to each
    minibatch: one epoch's minibatches in five ops instead of five each.  The rows reduce
    exactly as the separate slices do, so the result has the same bits.
    """
    if batch_size == 1:  # a single sample is left as it is
        return advantages
    whole = advantages.numel() // batch_size * batch_size
    if whole == 0:
        return _normalized(advantages, True)
    rows = advantages[:whole].view(-1, batch_size)
    normalized = ((rows - rows.mean(1, keepdim=True)) / (rows.std(1, keepdim=True) + 1e-8))
    if whole == advantages.numel():
        return normalized.view(-1)
    return torch.cat([normalized.view(-1), _normalized(advantages[whole:], True)])


def _with_entropy_bonus(loss: torch.Tensor, entropy_mean: torch.Tensor,
                        ent_coef: float) -> torch.Tensor:
    """``loss - ent_coef * entropy_mean``; without a bonus the entropy stays out of the
    graph, so backward skips its five nodes (the gradient is the same: it would add zeros)."""
    return loss - ent_coef * entropy_mean if ent_coef else loss


def ppo_loss(model: nn.Module, mb: Minibatch, *, kind: PolicyKind, clip_range: float,
             ent_coef: float, vf_coef: float, normalize_advantage: bool = True,
             clip_range_vf: float | None = None) -> RLLoss:
    """The clipped PPO objective (as stable-baselines3 defines it) on a minibatch.

    ``policy = -mean(min(A r, A clip(r, 1 - eps, 1 + eps)))``, ``value = mean((R - V)^2)``
    (``V`` optionally clipped around the old value), ``total = policy + vf_coef * value -
    ent_coef * entropy``.
    """
    dist, values = model(mb.obs)
    logp, entropy = log_prob_entropy(dist, kind, mb.actions)
    adv = _normalized(mb.advantages, normalize_advantage)
    log_ratio = logp - mb.logprobs
    ratio = log_ratio.exp()
    policy_loss = -torch.min(adv * ratio,
                             adv * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)).mean()
    if clip_range_vf is not None:
        values_used = mb.values + (values - mb.values).clamp(-clip_range_vf, clip_range_vf)
    else:
        values_used = values
    value_loss = F.mse_loss(values_used, mb.returns)
    entropy_mean = entropy.mean()
    total = _with_entropy_bonus(policy_loss + vf_coef * value_loss, entropy_mean, ent_coef)
    return RLLoss(total=total, policy_loss=policy_loss.detach(), value_loss=value_loss.detach(),
                  entropy=entropy_mean.detach(), log_ratio=log_ratio.detach(),
                  clip_range=clip_range, outputs=(dist, values))


def a2c_loss(model: nn.Module, mb: Minibatch, *, kind: PolicyKind, ent_coef: float,
             vf_coef: float, normalize_advantage: bool = False) -> RLLoss:
    """The advantage actor-critic loss: ``-mean(A log pi) + vf_coef * mean((R - V)^2) -
    ent_coef * entropy``."""
    dist, values = model(mb.obs)
    logp, entropy = log_prob_entropy(dist, kind, mb.actions)
    adv = _normalized(mb.advantages, normalize_advantage)
    policy_loss = -(adv * logp).mean()
    value_loss = F.mse_loss(values, mb.returns)
    entropy_mean = entropy.mean()
    total = _with_entropy_bonus(policy_loss + vf_coef * value_loss, entropy_mean, ent_coef)
    with torch.no_grad():
        log_ratio = logp - mb.logprobs
    return RLLoss(total=total, policy_loss=policy_loss.detach(), value_loss=value_loss.detach(),
                  entropy=entropy_mean.detach(), log_ratio=log_ratio,
                  clip_range=None, outputs=(dist, values))


# --------------------------------------------------------------------------------------------
# Update


@dataclass(frozen=True)
class UpdateStats:
    """Means over an update's minibatches."""

    policy_loss: float
    value_loss: float
    entropy: float
    approx_kl: float
    clip_fraction: float
    distill_actor_kl: float
    distill_critic_mse: float
    explained_variance: float
    gradient_steps: int


def grads_of(params: list[nn.Parameter]) -> list[torch.Tensor]:
    """The gradients of ``params`` that exist (after a backward pass)."""
    return [p.grad for p in params if p.grad is not None]


@torch.no_grad()
def clip_grad_norm(grads: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale ``grads`` in place so their global L2 norm is at most ``max_norm``; returns the
    norm before clipping.

    The same arithmetic as :func:`torch.nn.utils.clip_grad_norm_` (``coef = max_norm / (norm +
    1e-6)`` clamped at 1) in 5 ops instead of ~15: on CPU, where the step's gradients are a
    few hundred kB, torch's version cost 0.45 ms of a 7.5 ms minibatch step, this 0.28 ms.
    """
    if not grads:
        return torch.zeros(())
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return total


def optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()``, with a direct call of the kernel for a fused
    :class:`torch.optim.Adam`.

    The same kernel on the same tensors and state as ``torch.optim.Adam(..., fused=True)
    .step()``, so the same bits; what the direct call skips is :meth:`Optimizer.step`'s
    generic machinery (the profiler label, state checks, grouping tensors by device):
    ~140 of the ~300 us a step of the MinAtar network costs on one CPU thread, paid 16
    times a PPO update.  Anything else (another optimizer, several parameter groups, weight
    decay, AMSGrad, maximize, a tensor learning rate, step hooks, a parameter without state
    yet) goes through ``optimizer.step()``.
    """
    group = optimizer.param_groups[0]
    if not (type(optimizer) is torch.optim.Adam and group["fused"]
            and len(optimizer.param_groups) == 1 and not group["weight_decay"]
            and not isinstance(group["lr"], torch.Tensor)
            and not group["amsgrad"] and not group["maximize"]
            and not optimizer._optimizer_step_pre_hooks
            and not optimizer._optimizer_step_post_hooks
            and not _optim_hooks._global_optimizer_pre_hooks
            and not _optim_hooks._global_optimizer_post_hooks):
        optimizer.step()
        return
    params = [p for p in group["params"] if p.grad is not None]
    states = [optimizer.state.get(p) for p in params]
    if not params or not all(states) or len({(p.device, p.dtype) for p in params}) != 1:
        optimizer.step()  # creates the state of a parameter's first step; mixed tensors
        return
    steps = [state["step"] for state in states]  # type: ignore[index]
    beta1, beta2 = group["betas"]
    with torch.no_grad():
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(params, [p.grad for p in params],
                           [state["exp_avg"] for state in states],  # type: ignore[index]
                           [state["exp_avg_sq"] for state in states],  # type: ignore[index]
                           [], steps, amsgrad=False, lr=group["lr"], beta1=beta1,
                           beta2=beta2, weight_decay=0.0, eps=group["eps"], maximize=False)


def make_optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """Adam (PPO) or RMSprop (A2C, alpha 0.99) of ``params`` with the configured learning
    rate and eps."""
    lr = config.learning_rate or 0.0
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.99, eps=config.optimizer_eps)
    # The fused CPU kernel is ~2.5x faster than the for-each one on these small networks.
    return torch.optim.Adam(params, lr=lr, eps=config.optimizer_eps, fused=True)


@contextlib.contextmanager
def denormals_flushed() -> Iterator[None]:
    """Flush denormal floats to zero on this thread inside (``torch.set_flush_denormal``);
    the previous mode is restored on exit.

    Adam's first moments of units whose gradient has become zero (dead ReLUs) decay through
    the denormal range (below 1.2e-38), where each CPU float operation costs up to ~100x:
    after 150 PPO updates of the MinAtar network ~10 % of the FC layer's moments are
    denormal.  Flushed to zero they change no weight (an Adam step of that size is below the
    weight's last bit; a 200k-step run ends with bitwise the same weights), and an update
    runs 2-5 % faster.  TensorFlow flushes by default on x86.
    """
    was_flushing = torch.tensor(1e-39).item() == 0.0  # a denormal survives unless flushed
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was_flushing)


def update(model: ActorCritic, optimizer: torch.optim.Optimizer, batch: RolloutBatch,
           config: TrainConfig, generator: torch.Generator, *,
           distill_coefs: tuple[float, float] | None = None,
           clip_range: float | None = None) -> UpdateStats:
    """Epochs of shuffled minibatch steps on one rollout (advantages computed).

    Args:
        model: the network being trained.
        optimizer: its optimizer (learning rate already set for this update).
        batch: the rollout, with :func:`compute_gae`'s advantages and, for A2D, the
            teacher's outputs.
        config: the loss and minibatch hyperparameters.
        generator: RNG of the minibatch order.
        distill_coefs: ``(actor_coef, critic_coef)`` at this point of training, or None.
        clip_range: PPO's ratio clip at this point of training (default
            ``config.clip_range``).

    Runs with denormals flushed to zero (:func:`denormals_flushed`).
    """
    with denormals_flushed():
        return _epochs(model, optimizer, batch, config, generator, distill_coefs=distill_coefs,
                       clip_range=clip_range)


def _epochs(model: ActorCritic, optimizer: torch.optim.Optimizer, batch: RolloutBatch,
            config: TrainConfig, generator: torch.Generator, *,
            distill_coefs: tuple[float, float] | None,
            clip_range: float | None) -> UpdateStats:
    data = flatten(batch)
    if isinstance(model, ActorCritic) and model.trains_channels_last:
        # once a rollout rather than in each minibatch's forward (16 copies a PPO update)
        data = replace(data, obs=data.obs.contiguous(memory_format=torch.channels_last))
    size = data.advantages.shape[0]
    batch_size = config.batch_size or size
    use_distill = distill_coefs is not None and data.teacher_dist is not None
    # Per minibatch: the detached loss terms (policy, value, entropy, and A2D's actor KL and
    # critic MSE when distilling) and the log-ratios; their means are taken once, at the end.
    terms: list[tuple[torch.Tensor, ...]] = []
    log_ratios: list[torch.Tensor] = []
    params = [p for p in model.parameters() if p.requires_grad]
    ppo = config.algo == "ppo"
    clip = (config.clip_range if clip_range is None else clip_range) if ppo else None

    def minibatch_loss(mb: Minibatch) -> tuple[torch.Tensor, tuple[torch.Tensor, ...],
                                               torch.Tensor]:
        """The minibatch's total loss, its detached terms and its log-ratios."""
        if ppo:
            assert clip is not None
            loss = ppo_loss(model, mb, kind=model.kind, clip_range=clip,
                            ent_coef=config.ent_coef, vf_coef=config.vf_coef,
                            normalize_advantage=False, clip_range_vf=config.clip_range_vf)
        else:  # (advantages normalised above, a whole epoch at once)
            loss = a2c_loss(model, mb, kind=model.kind, ent_coef=config.ent_coef,
                            vf_coef=config.vf_coef, normalize_advantage=False)
        if not use_distill:
            return loss.total, (loss.policy_loss, loss.value_loss, loss.entropy), \
                loss.log_ratio
        assert distill_coefs is not None and mb.teacher_dist is not None
        assert mb.teacher_value is not None
        a2d = distill_loss(model, mb.obs, mb.teacher_dist, mb.teacher_value,
                           kind=model.kind, actor_coef=distill_coefs[0],
                           critic_coef=distill_coefs[1], outputs=loss.outputs)
        return loss.total + a2d.total, (loss.policy_loss, loss.value_loss, loss.entropy,
                                        a2d.actor_kl, a2d.critic_mse), loss.log_ratio

    # DCIL: the pruned weights learn from a dense pass of the same minibatch
    pruned_weights = ([layer.weight for layer in prunable_layers(model)]
                      if config.pruned_gradient == "refined" else [])
    for _epoch in range(config.n_epochs or 1):
        # One gather per epoch; minibatches are then contiguous slices (views).
        shuffled = data.take(torch.randperm(size, generator=generator).to(data.obs.device))
        if config.normalize_advantage:
            shuffled = replace(shuffled, advantages=normalized_per_minibatch(
                shuffled.advantages, batch_size))
        epoch_start = len(log_ratios)
        for start in range(0, size, batch_size):
            mb = shuffled.take(slice(start, start + batch_size))
            total, term, log_ratio = minibatch_loss(mb)
            terms.append(term)
            log_ratios.append(log_ratio)
            for param in params:  # zero_grad(set_to_none=True) without its profiler label
                param.grad = None
            total.backward()
            if pruned_weights:  # nonzero only at the pruned positions; nothing else moves
                with dense_pass(model):
                    refined = torch.autograd.grad(minibatch_loss(mb)[0], pruned_weights)
                for weight, grad in zip(pruned_weights, refined, strict=True):
                    weight.grad = grad if weight.grad is None else weight.grad + grad
            clip_grad_norm(grads_of(params), config.max_grad_norm)
            optimizer_step(optimizer)
        if config.target_kl is not None and float(
                _minibatch_ratio_stats(log_ratios[epoch_start:], clip)[0].mean()) > \
                config.target_kl:
            break
    term_means = torch.stack([torch.stack(term) for term in zip(*terms, strict=True)]).mean(1)
    ratio_means = _minibatch_ratio_stats(log_ratios, clip).mean(1)
    policy, value, entropy, *distilled = term_means.tolist()
    actor_kl, critic_mse = distilled or (0.0, 0.0)
    approx_kl, clip_fraction = ratio_means.tolist()
    values, returns = data.values, data.returns
    var = float(returns.var())
    explained = float("nan") if var == 0.0 else 1.0 - float((returns - values).var()) / var
    return UpdateStats(policy_loss=policy, value_loss=value, entropy=entropy,
                       approx_kl=approx_kl, clip_fraction=clip_fraction,
                       distill_actor_kl=actor_kl, distill_critic_mse=critic_mse,
                       explained_variance=explained, gradient_steps=len(log_ratios))


def _minibatch_ratio_stats(log_ratios: list[torch.Tensor],
                           clip_range: float | None) -> torch.Tensor:
    """:func:`ratio_stats` of each minibatch's log-ratios, ``[2, len(log_ratios)]``."""
    if len({log_ratio.numel() for log_ratio in log_ratios}) == 1:
        return ratio_stats(torch.cat(log_ratios), clip_range, groups=len(log_ratios))
    return torch.stack([ratio_stats(log_ratio, clip_range) for log_ratio in log_ratios], 1)
