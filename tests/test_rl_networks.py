"""Architecture descriptions and the networks built from them: shapes, fit errors, export."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from a3cs.rl.envs import make_env
from a3cs.rl.networks import (
    action_noise,
    build_agent,
    log_prob_entropy,
    sample_action,
    sampled_log_prob,
)
from a3cs_common.errors import ConfigError
from a3cs_common.schema import validate
from hw_sim.workload import Conv2d, Linear
from nas.arch import Arch, load_arch, reference_arch
from nas.layers import cubic_sparsity_schedule, prune_to_schedule

REPO = Path(__file__).resolve().parents[1]
PIXELS = gym.spaces.Box(0.0, 1.0, (4, 10, 10), np.float32)
ACTIONS = gym.spaces.Discrete(3)
EXAMPLES = sorted((REPO / "experiments/arch").glob("minatar_*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_exported_workload_matches_the_real_layers(path: Path) -> None:
    arch = load_arch(str(path))
    model = build_agent(arch, PIXELS, ACTIONS)
    prune_to_schedule(model, 1.0, cubic_sparsity_schedule(0.1, 0.6))
    workload = model.workload(batch=1)
    planned = arch.workload((4, 10, 10), 3)
    assert [layer.name for layer in workload.layers] == [layer.name for layer in planned.layers]
    # every exported layer has the shape of the module that runs, measured with hooks
    seen: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    hooks = [module.register_forward_hook(
        lambda m, i, o, name=name: seen.__setitem__(name, (tuple(i[0].shape), tuple(o.shape))))
        for name, module in model.named_modules() if name in {lay.name for lay in workload.layers}]
    model(torch.zeros(1, 4, 10, 10))
    for hook in hooks:
        hook.remove()
    for layer, plan in zip(workload.layers, planned.layers, strict=True):
        in_shape, out_shape = seen[layer.name]
        if isinstance(layer, Conv2d):
            assert in_shape == (1, layer.in_channels, layer.in_height, layer.in_width)
            assert out_shape == (1, layer.out_channels, layer.out_height, layer.out_width)
        else:
            assert isinstance(layer, Linear)
            assert in_shape == (1, layer.in_features) and out_shape == (1, layer.out_features)
        assert layer.weight_format.type == plan.weight_format.type
        assert (layer.in_channels, layer.out_channels) == (plan.in_channels, plan.out_channels)
        module = model.get_submodule(layer.name)
        if layer.weight_format.type == "one_by_n":
            np.testing.assert_array_equal(layer.block_mask(), module.mask.numpy())
            assert 1.0 - layer.weight_density == pytest.approx(module.target_sparsity)


def test_reference_networks() -> None:
    model = build_agent(None, PIXELS, ACTIONS)
    assert model.arch.name == "minatar_reference"
    names = [(lay.name, lay.kind) for lay in model.workload().layers]
    assert names == [("layers.0", "conv2d"), ("head", "linear"), ("policy", "linear"),
                     ("value", "linear")]
    assert model.workload().layers[1].in_features == 1024
    assert reference_arch((4,)).name == "mlp_reference"
    atari = build_agent(None, gym.spaces.Box(0, 255, (4, 84, 84), np.uint8),
                        gym.spaces.Discrete(6))
    assert atari.workload().layer("head").in_features == 64 * 7 * 7
    assert atari.obs_scale == pytest.approx(1 / 255)


@pytest.mark.parametrize(("arch", "obs", "field"), [
    ({"layers": [{"op": "conv3x3", "width": 16}], "head": {"width": 8}}, (4,), "layers[0].op"),
    ({"layers": [{"op": "conv5x5", "width": 16}] * 3, "head": {"width": 8}}, (4, 10, 10),
     "layers[2].op"),
    ({"layers": [{"op": "conv3x3", "width": 16,
                  "weight_format": {"type": "block_circulant", "block_size": 8}}],
      "head": {"width": 8}}, (4, 10, 10), "layers[0].weight_format.block_size"),
    ({"layers": [{"op": "linear", "width": 6}, {"op": "conv1x1", "width": 4}],
      "head": {"width": 8}}, (4, 10, 10), "layers[1].op"),
    ({"head": {"width": 10, "weight_format": {"type": "one_by_n", "n": 4, "sparsity": 0.5}}},
     (4,), "head.weight_format.n"),
])
def test_architectures_that_do_not_fit_the_observation(arch: dict, obs: tuple[int, ...],
                                                       field: str) -> None:
    description = validate(Arch, arch)
    with pytest.raises(ConfigError) as info:
        description.plan(obs)
    assert info.value.field == field
    with pytest.raises(ConfigError):
        build_agent(description, gym.spaces.Box(0.0, 1.0, obs, np.float32), ACTIONS)


@pytest.mark.parametrize(("data", "message"), [
    ({"layers": [{"op": "conv7x7", "width": 4}], "head": {"width": 8}}, "layers[0].op"),
    ({"layers": [{"op": "skip", "width": 4}], "head": {"width": 8}}, "width"),
    ({"layers": [{"op": "conv3x3"}], "head": {"width": 8}}, "width"),
    ({"head": {"width": 8, "weight_format": {"type": "block_circulant", "block_size": 6}}},
     "block_size"),
    ({"head": {"width": 8}, "layer": []}, "did you mean 'layers'"),
])
def test_bad_architecture_files(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate(Arch, data)


def test_arch_yaml_round_trip(tmp_path: Path) -> None:
    from a3cs_common.io import dump_yaml

    arch = load_arch(str(REPO / "experiments/arch/minatar_searched_example.yaml"))
    path = tmp_path / "a.yaml"
    path.write_text(dump_yaml(arch.to_dict()))
    assert load_arch(str(path)) == arch


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_sampled_log_prob_matches_evaluated_log_prob(kind: str) -> None:
    generator = torch.Generator().manual_seed(0)
    params = torch.randn(64, 6)
    dim = 6 if kind == "categorical" else 3
    noise = action_noise((64,), kind, dim, generator)  # type: ignore[arg-type]
    action = sample_action(params.numpy(), kind, noise.numpy())  # type: ignore[arg-type]
    logp = sampled_log_prob(params.numpy(), kind, noise.numpy(), action)  # type: ignore
    assert logp.dtype == np.float32 and logp.shape == (64,)
    # a rollout's steps at once: the bits of each step alone
    steps = sampled_log_prob(params.numpy().reshape(8, 8, 6), kind,  # type: ignore[arg-type]
                             noise.numpy().reshape(8, 8, -1), action.reshape(8, 8, *action.shape[1:]))
    assert np.array_equal(steps.reshape(64), logp)
    again, entropy = log_prob_entropy(params, kind, torch.from_numpy(action))  # type: ignore
    torch.testing.assert_close(torch.from_numpy(logp), again, rtol=1e-5, atol=1e-5)
    assert (entropy > -10).all()


def test_categorical_sampling_follows_the_policy() -> None:
    generator = torch.Generator().manual_seed(1)
    logits = np.log(np.array([[0.2, 0.5, 0.3]], dtype=np.float32)).repeat(20000, axis=0)
    noise = action_noise((20000,), "categorical", 3, generator).numpy()
    action = sample_action(logits, "categorical", noise)
    freq = np.bincount(action, minlength=3) / 20000
    np.testing.assert_allclose(freq, [0.2, 0.5, 0.3], atol=0.015, rtol=0)


def test_continuous_policy_network() -> None:
    model = build_agent(None, gym.spaces.Box(-np.inf, np.inf, (17,), np.float32),
                        gym.spaces.Box(-1, 1, (6,), np.float32), normalize_obs=True)
    dist, value = model(torch.randn(5, 17))
    assert dist.shape == (5, 12) and value.shape == (5,)
    assert model.kind == "gaussian"


@pytest.mark.parametrize("case", ["reference", "circulant", "one_by_4", "searched", "uint8",
                                  "gaussian_normalized"])
def test_inference_forward_equals_the_module_forward(case: str) -> None:
    """The acting path (functional layers, one head matmul) computes the same network."""
    generator = torch.Generator().manual_seed(0)
    obs_space, actions, normalize = PIXELS, ACTIONS, False
    arch = None
    if case in ("circulant", "one_by_4", "searched"):
        name = {"circulant": "minatar_circulant_b8", "one_by_4": "minatar_one_by_4",
                "searched": "minatar_searched_example"}[case]
        arch = load_arch(str(REPO / f"experiments/arch/{name}.yaml"))
    if case == "uint8":
        obs_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    if case == "gaussian_normalized":
        obs_space = gym.spaces.Box(-np.inf, np.inf, (17,), np.float32)
        actions, normalize = gym.spaces.Box(-1, 1, (6,), np.float32), True
    model = build_agent(arch, obs_space, actions, normalize_obs=normalize, seed=3)
    if case == "one_by_4":
        prune_to_schedule(model, 1.0, cubic_sparsity_schedule(0.1, 0.6))
    if normalize:
        assert model.obs_norm is not None
        model.obs_norm.update(torch.randn(64, 17, generator=generator) * 3 + 1)
    if obs_space.dtype == np.uint8:
        obs = torch.randint(0, 256, (5, *obs_space.shape), generator=generator,
                            dtype=torch.uint8)
    else:
        obs = torch.rand((5, *obs_space.shape), generator=generator)
    with torch.no_grad():
        for layer in model.parameters():  # move the weights off their (zero) init
            layer.add_(0.05 * torch.randn(layer.shape, generator=generator))
        expected = model(obs)
    with torch.inference_mode():
        got = model.inference()(obs)
        packed = model.inference_packed()(obs)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[1], expected[1], rtol=1e-5, atol=1e-6)
    assert torch.equal(packed, torch.cat([got[0], got[1][:, None]], dim=1))


def test_weights_saved_without_a_feature_order_load_as_chw_and_compute_the_same_network(
) -> None:
    """Checkpoints from before the (h, w, c) feature order keep their function: they load as
    ``chw``, and a ``chw`` network equals the ``hwc`` one whose head columns are permuted."""
    model = build_agent(None, PIXELS, ACTIONS, seed=5)
    assert model.feature_order == "hwc"
    state = model.state_dict()
    assert state["_extra_state"] == {"feature_order": "hwc"}
    legacy = {k: v for k, v in state.items() if k != "_extra_state"}
    channels, height, width = 16, 8, 8  # the reference conv's output map
    legacy["head.weight"] = state["head.weight"].view(-1, height, width, channels).permute(
        0, 3, 1, 2).reshape(-1, channels * height * width)
    old = build_agent(None, PIXELS, ACTIONS, seed=99)
    old.load_state_dict(legacy)
    assert old.feature_order == "chw"
    obs = torch.rand(6, *PIXELS.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for got, expected in zip(old(obs), model(obs), strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        for got, expected in zip(old.inference()(obs), model(obs), strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    again = build_agent(None, PIXELS, ACTIONS, seed=1)
    again.load_state_dict(old.state_dict())  # chw survives a save and load
    assert again.feature_order == "chw"
    with pytest.raises(RuntimeError, match="feature_order"):
        again.load_state_dict({**state, "_extra_state": {"feature_order": "whc"}})


def test_building_a_network_leaves_the_global_rng_alone() -> None:
    envs = make_env("MinAtar/Breakout-v1", 1, seed=0)
    before = torch.random.get_rng_state()
    a = build_agent(None, envs.single_observation_space, envs.single_action_space, seed=4)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.rand(3)  # the global stream moves; the network's weights come from its seed only
    b = build_agent(None, envs.single_observation_space, envs.single_action_space, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
