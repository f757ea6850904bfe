"""Environments, GAE and the PPO pieces."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
import torch

from a3cs.rl.algorithms import (
    CollectorState,
    Minibatch,
    a2c_loss,
    add_advantages,
    clip_grad_norm,
    collect_rollout,
    compute_gae,
    denormals_flushed,
    flatten,
    make_optimizer,
    normalized_per_minibatch,
    optimizer_step,
    ppo_loss,
    ratio_stats,
    update,
)
from a3cs.rl.config import TrainConfig
from a3cs.rl.envs import env_family, make_env
from a3cs.rl.networks import build_agent
from a3cs_common.errors import ConfigError


def test_make_env_families() -> None:
    envs = make_env("MinAtar/Breakout-v1", 3, seed=0)
    assert envs.last_obs.shape == (3, 4, 10, 10) and envs.last_obs.dtype == np.float32
    assert envs.single_action_space.n == 3
    obs, reward, terminated, _, _ = envs.step(np.array([0, 1, 2]))
    assert obs.shape == (3, 4, 10, 10) and reward.shape == terminated.shape == (3,)
    cart = make_env("CartPole-v1", 2, seed=0)
    assert cart.last_obs.shape == (2, 4)
    assert env_family("MinAtar/SpaceInvaders-v1") == "minatar"


def test_atari_gets_the_standard_preprocessing() -> None:
    envs = make_env("ALE/Pong-v5", 1, seed=0)
    assert envs.last_obs.shape == (1, 4, 84, 84) and envs.last_obs.dtype == np.uint8
    envs.close()


def test_mujoco_continuous_actions() -> None:
    pytest.importorskip("mujoco")
    envs = make_env("HalfCheetah-v5", 2, seed=0)
    obs, *_ = envs.step(np.zeros((2, 6), dtype=np.float32))
    assert obs.shape == (2, 17)


def test_unknown_env_id_is_one_line_error() -> None:
    with pytest.raises(ConfigError, match="did you mean 'MinAtar/Breakout-v1'") as info:
        make_env("MinAtar/Breakout-v9", 1, 0)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError):
        make_env("Nope-v0", 1, 0)


def test_same_step_autoreset_and_final_observation() -> None:
    envs = make_env("CartPole-v1", 1, seed=3)
    for _ in range(500):
        obs, _, terminated, truncated, info = envs.step(np.array([0]))
        if terminated[0] or truncated[0]:
            assert info["_final_obs"][0]
            assert abs(info["final_obs"][0][2]) > 0.2 or abs(info["final_obs"][0][0]) > 2.4
            assert abs(obs[0]).max() <= 0.05  # the next episode's first observation
            return
    pytest.fail("the episode never ended")


def test_pickled_envs_continue_identically() -> None:
    envs = make_env("MinAtar/Breakout-v1", 2, seed=5)
    for _ in range(17):
        envs.step(np.array([1, 2]))
    twin = pickle.loads(pickle.dumps(envs))
    for _ in range(50):
        a = envs.step(np.array([0, 1]))
        b = twin.step(np.array([0, 1]))
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_pickles_of_envs_without_their_unwrapped_steppers_still_step() -> None:
    """Checkpoints from before SyncEnvs stepped OrderEnforcing-wrapped envs unwrapped."""
    envs = make_env("MinAtar/Breakout-v1", 2, seed=5)
    as_older = pickle.loads(pickle.dumps(envs))
    del as_older._steppers  # what an older version pickled
    older = pickle.loads(pickle.dumps(as_older))
    for _ in range(20):
        np.testing.assert_array_equal(older.step(np.array([0, 1]))[0],
                                      envs.step(np.array([0, 1]))[0])


def test_time_limits_still_truncate() -> None:
    """Only OrderEnforcing is stepped around: MountainCar's 200-step TimeLimit still ends the
    episode (random actions do not reach the flag)."""
    envs = make_env("MountainCar-v0", 1, seed=0)
    for step in range(1, 201):
        _, _, terminated, truncated, _ = envs.step(np.array([step % 3]))
        assert not terminated[0]
        assert truncated[0] == (step == 200)


def test_gae_matches_a_direct_computation() -> None:
    rng = np.random.default_rng(0)
    steps, envs, gamma, lam = 7, 3, 0.9, 0.8
    rewards = torch.tensor(rng.normal(size=(steps, envs)), dtype=torch.float32)
    values = torch.tensor(rng.normal(size=(steps, envs)), dtype=torch.float32)
    starts = torch.tensor(rng.random((steps, envs)) < 0.3, dtype=torch.float32)
    last_value = torch.tensor(rng.normal(size=envs), dtype=torch.float32)
    last_start = torch.tensor([1.0, 0.0, 0.0])
    adv, ret = compute_gae(rewards, values, starts, last_value, last_start, gamma=gamma,
                           gae_lambda=lam)
    for e in range(envs):
        for t in range(steps):
            # sum of discounted TD errors until the episode ends
            total, weight = 0.0, 1.0
            for k in range(t, steps):
                next_start = float(starts[k + 1, e]) if k + 1 < steps else float(last_start[e])
                next_value = float(values[k + 1, e]) if k + 1 < steps else float(last_value[e])
                delta = (float(rewards[k, e]) + gamma * next_value * (1 - next_start)
                         - float(values[k, e]))
                total += weight * delta
                if next_start:
                    break
                weight *= gamma * lam
            assert float(adv[t, e]) == pytest.approx(total, abs=1e-5)
    torch.testing.assert_close(ret, adv + values)


def test_gae_with_lambda_one_is_the_discounted_return() -> None:
    rewards = torch.ones(4, 1)
    values = torch.zeros(4, 1)
    adv, _ = compute_gae(rewards, values, torch.zeros(4, 1), torch.zeros(1), torch.ones(1),
                         gamma=0.5, gae_lambda=1.0)
    torch.testing.assert_close(adv[:, 0], torch.tensor([1.875, 1.75, 1.5, 1.0]))


def _rollout(seed: int = 0):
    config = TrainConfig(env_id="MinAtar/Breakout-v1", n_steps=16, batch_size=32, n_epochs=2)
    envs = make_env(config.env_id, 4, seed)
    model = build_agent(None, envs.single_observation_space, envs.single_action_space, seed=seed)
    state = CollectorState.start(envs, torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed)
    batch = collect_rollout(model, envs, state, 16, generator, gamma=0.99)
    return config, model, state, generator, add_advantages(batch, gamma=0.99, gae_lambda=0.95)


def test_rollout_shapes_and_bookkeeping() -> None:
    _, model, state, _, batch = _rollout()
    assert batch.obs.shape == (16, 4, 4, 10, 10) and batch.actions.shape == (16, 4)
    assert state.global_step == 64
    assert (batch.episode_starts[0] == 1).all()  # fresh envs
    # stored log-probs are those of the acting policy
    data = flatten(batch)
    loss = ppo_loss(model, data, kind="categorical", clip_range=0.2, ent_coef=0.0,
                    vf_coef=0.5)
    assert float(loss.approx_kl) == pytest.approx(0.0, abs=1e-6)
    assert float(loss.clip_fraction) == 0.0


def test_update_changes_weights_and_reports_statistics() -> None:
    config, model, _, generator, batch = _rollout()
    before = [p.detach().clone() for p in model.parameters()]
    stats = update(model, make_optimizer(list(model.parameters()), config), batch, config, generator)
    assert stats.gradient_steps == 2 * 64 // 32
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert np.isfinite([stats.policy_loss, stats.value_loss, stats.entropy]).all()


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_update_statistics_are_the_minibatch_losses(algo: str) -> None:
    """With one minibatch (the whole rollout) and one epoch, an update reports exactly what
    the loss reports on that rollout before the step; its ratios are moved off 1 so that
    some are clipped."""
    config, model, _, generator, batch = _rollout()
    config = config.model_copy(update={"algo": algo, "n_epochs": 1, "batch_size": 64})
    shifted = torch.randn(batch.logprobs.shape, generator=torch.Generator().manual_seed(0))
    batch = replace(batch, logprobs=batch.logprobs + 0.3 * shifted)
    data = flatten(batch)
    if algo == "ppo":
        loss = ppo_loss(model, data, kind="categorical", clip_range=0.2, ent_coef=0.0,
                        vf_coef=0.5)
        assert 0.0 < float(loss.clip_fraction) < 1.0
    else:
        loss = a2c_loss(model, data, kind="categorical", ent_coef=0.0, vf_coef=0.5,
                        normalize_advantage=bool(config.normalize_advantage))
        assert float(loss.clip_fraction) == 0.0
    stats = update(model, make_optimizer(list(model.parameters()), config), batch, config, generator)
    assert stats.gradient_steps == 1
    for name in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"):
        assert getattr(stats, name) == pytest.approx(float(getattr(loss, name)), rel=1e-5,
                                                     abs=1e-7), name


def test_ratio_statistics_of_equal_slices_are_each_slices_statistics() -> None:
    log_ratio = 0.3 * torch.randn(96, generator=torch.Generator().manual_seed(3))
    grouped = ratio_stats(log_ratio, 0.2, groups=3)
    assert grouped.shape == (2, 3)
    for k, part in enumerate(log_ratio.split(32)):
        torch.testing.assert_close(grouped[:, k], ratio_stats(part, 0.2))
        ratio = part.exp()
        assert float(grouped[1, k]) == float(((ratio - 1).abs() > 0.2).float().mean())
    assert float(ratio_stats(log_ratio, None)[1]) == 0.0


@pytest.mark.parametrize(("size", "batch_size"), [(1024, 256), (64, 48), (100, 32), (5, 1),
                                                (7, 16)])
def test_advantages_normalised_per_minibatch_as_each_minibatch_alone(size: int,
                                                                     batch_size: int) -> None:
    """A whole epoch normalised at once has the bits of each minibatch normalised alone."""
    advantages = 3.0 * torch.randn(size, generator=torch.Generator().manual_seed(size)) + 1.0
    together = normalized_per_minibatch(advantages, batch_size)
    for start in range(0, size, batch_size):
        part = advantages[start:start + batch_size]
        alone = (part - part.mean()) / (part.std() + 1e-8) if part.numel() > 1 else part
        assert torch.equal(together[start:start + batch_size], alone)


def test_update_with_a_short_last_minibatch() -> None:
    """64 samples in minibatches of 48: each epoch steps on 48 and 16 samples."""
    config, model, _, generator, batch = _rollout()
    config = config.model_copy(update={"batch_size": 48, "n_epochs": 3})
    stats = update(model, make_optimizer(list(model.parameters()), config), batch, config, generator)
    assert stats.gradient_steps == 6
    assert np.isfinite([stats.policy_loss, stats.approx_kl, stats.clip_fraction]).all()


@pytest.mark.parametrize("scale", [1e-3, 1.0, 100.0])
def test_clip_grad_norm_is_torchs_clip_exactly(scale: float) -> None:
    generator = torch.Generator().manual_seed(1)
    shapes = [(16, 4, 3, 3), (16,), (128, 1024), (128,), (3, 128), (3,)]
    grads = [torch.randn(shape, generator=generator) * scale for shape in shapes]
    params = [torch.nn.Parameter(torch.zeros(shape)) for shape in shapes]
    for param, grad in zip(params, grads, strict=True):
        param.grad = grad.clone()
    expected_norm = torch.nn.utils.clip_grad_norm_(params, 0.5)
    clipped = [grad.clone() for grad in grads]
    norm = clip_grad_norm(clipped, 0.5)
    assert torch.equal(norm, expected_norm)
    assert all(torch.equal(a, p.grad) for a, p in zip(clipped, params, strict=True))
    # below the limit nothing changes; above it the norm lands on the limit
    after = torch.linalg.vector_norm(torch.stack([g.norm() for g in clipped]))
    assert float(after) == pytest.approx(min(float(norm), 0.5), rel=1e-5)


@pytest.mark.parametrize("ent_coef", [0.0, 0.01])
def test_ppo_gradient_is_the_clipped_surrogate_gradient(ent_coef: float) -> None:
    """The loss's gradient equals the one of SB3's formula written out, on a minibatch where
    some ratios are clipped (so both branches of the min are exercised)."""
    _, model, _, _, batch = _rollout()
    data = flatten(batch)
    # move the stored policy away so that some ratios leave [0.8, 1.2]
    shifted = torch.randn(data.logprobs.shape, generator=torch.Generator().manual_seed(0))
    data = Minibatch(**{**vars(data), "logprobs": data.logprobs + 0.3 * shifted})
    loss = ppo_loss(model, data, kind="categorical", clip_range=0.2, ent_coef=ent_coef,
                    vf_coef=0.5)
    assert 0.0 < float(loss.clip_fraction) < 1.0
    grads = torch.autograd.grad(loss.total, list(model.parameters()))

    dist, values = model(data.obs)
    logp_all = torch.log_softmax(dist, dim=-1)
    logp = logp_all.gather(-1, data.actions[:, None]).squeeze(-1)
    adv = (data.advantages - data.advantages.mean()) / (data.advantages.std() + 1e-8)
    ratio = torch.exp(logp - data.logprobs)
    policy = -torch.min(adv * ratio, adv * torch.clamp(ratio, 0.8, 1.2)).mean()
    entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
    total = policy + 0.5 * ((data.returns - values) ** 2).mean() - ent_coef * entropy
    expected = torch.autograd.grad(total, list(model.parameters()))
    assert float(loss.total.detach()) == pytest.approx(float(total.detach()), rel=1e-6)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_an_update_uses_the_clip_range_it_is_given() -> None:
    """update(clip_range=c) trains exactly as a config whose clip_range is c."""
    def trained(config: TrainConfig, **kwargs: float) -> list[torch.Tensor]:
        _, model, _, _, batch = _rollout()
        update(model, make_optimizer(list(model.parameters()), config), batch, config,
               torch.Generator().manual_seed(5), **kwargs)
        return [p.detach() for p in model.parameters()]

    config = _rollout()[0].model_copy(update={"n_epochs": 8, "learning_rate": 3e-3})
    tight = trained(config.model_copy(update={"clip_range": 0.01}))
    given = trained(config, clip_range=0.01)
    loose = trained(config)
    assert all(torch.equal(a, b) for a, b in zip(tight, given, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(tight, loose, strict=True))


def _stepped(step: Callable[[torch.optim.Optimizer], None], optimizer_cls: type, steps: int = 5,
             **kwargs: float | bool) -> tuple[list[torch.Tensor], dict]:
    """Parameters and optimizer state after `steps` steps on fixed random gradients."""
    generator = torch.Generator().manual_seed(2)
    shapes = [(16, 4, 3, 3), (16,), (128, 64), (3,)]
    params = [torch.nn.Parameter(torch.randn(shape, generator=generator)) for shape in shapes]
    optimizer = optimizer_cls(params, lr=1e-2, eps=1e-5, **kwargs)
    for _ in range(steps):
        for param in params:
            param.grad = torch.randn(param.shape, generator=generator)
        step(optimizer)
    return [p.detach() for p in params], optimizer.state_dict()


def test_optimizer_step_is_fused_adams_step_bitwise() -> None:
    expected_params, expected_state = _stepped(lambda o: o.step(), torch.optim.Adam, fused=True)
    params, state = _stepped(optimizer_step, torch.optim.Adam, fused=True)
    assert all(torch.equal(a, b) for a, b in zip(params, expected_params, strict=True))
    for index, want in expected_state["state"].items():
        assert set(state["state"][index]) == set(want)
        assert all(torch.equal(state["state"][index][key], value) for key, value in want.items())
    # other optimizers, and Adam without the fused kernel, take their own step
    for cls, kwargs in [(torch.optim.RMSprop, {}), (torch.optim.Adam, {"foreach": False})]:
        want_params, _ = _stepped(lambda o: o.step(), cls, **kwargs)
        got_params, _ = _stepped(optimizer_step, cls, **kwargs)
        assert all(torch.equal(a, b) for a, b in zip(got_params, want_params, strict=True))


def test_optimizer_step_runs_registered_step_hooks() -> None:
    calls = []
    params = [torch.nn.Parameter(torch.ones(3))]
    optimizer = torch.optim.Adam(params, lr=0.1, fused=True)
    optimizer.register_step_post_hook(lambda *_: calls.append(1))
    for _ in range(3):
        params[0].grad = torch.ones(3)
        optimizer_step(optimizer)
    assert len(calls) == 3 and int(optimizer.state[params[0]]["step"]) == 3


def test_minibatch_gather_keeps_channels_last_rows() -> None:
    obs = torch.randn(6, 4, 5, 5).contiguous(memory_format=torch.channels_last)
    data = Minibatch(obs=obs, actions=torch.arange(6), logprobs=torch.zeros(6),
                     values=torch.zeros(6), advantages=torch.zeros(6), returns=torch.zeros(6))
    index = torch.tensor([4, 0, 5, 2])
    taken = data.take(index)
    assert taken.obs.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(taken.obs, obs[index]) and torch.equal(taken.actions, index)
    assert taken.take(slice(1, 3)).obs.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("flushing_before", [False, True])
def test_denormals_flushed_inside_and_mode_restored(flushing_before: bool) -> None:
    def flushing() -> bool:
        return bool((torch.tensor([1e-30]) * 1e-10 == 0).item())

    torch.set_flush_denormal(flushing_before)
    try:
        assert flushing() == flushing_before
        with denormals_flushed():
            assert flushing()
        assert flushing() == flushing_before
        config, model, _, generator, batch = _rollout()
        update(model, make_optimizer(list(model.parameters()), config), batch, config, generator)
        assert flushing() == flushing_before
    finally:
        torch.set_flush_denormal(False)
