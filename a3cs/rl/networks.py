"""Actor-critic networks built from an architecture description, and their action heads.

:func:`build_agent` turns a :class:`nas.arch.Arch` into an :class:`ActorCritic` for an
environment's observation and action spaces; without an architecture it uses
:func:`nas.arch.reference_arch` for the observation type.  Every network exports its hw_sim
workload (:meth:`ActorCritic.workload`), compressed layers included.

The network's output is ``(dist_params, value)``: for a discrete action space the policy's
logits ``[B, actions]``; for a continuous one the Gaussian's ``[mean, log_std]`` concatenated,
``[B, 2 * action_dim]``.  Everything downstream (PPO, A2C, A2D distillation) reads the policy
through :func:`log_prob_entropy`, :func:`sample_action` and :func:`sampled_log_prob`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from a3cs_common.errors import ConfigError
from a3cs_common.formats import WeightFormat
from distill.losses import PolicyKind
from hw_sim.torch_trace import workload_from_module
from hw_sim.workload import Workload
from nas.arch import KERNEL_OF_OP, Arch, LayerSpec, reference_arch
from nas.layers import HIDDEN_GAIN, POLICY_GAIN, VALUE_GAIN
from nas.torch_formats import torch_format

FeatureOrder = Literal["chw", "hwc"]



def policy_kind(action_space: gym.Space) -> PolicyKind:
    """``categorical`` for Discrete, ``gaussian`` for 1-D Box action spaces.

    Raises:
        ConfigError: any other action space.
    """
    if isinstance(action_space, gym.spaces.Discrete):
        return "categorical"
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return "gaussian"
    raise ConfigError("action space", str(action_space), "Discrete or a 1-D Box")


def action_dim(action_space: gym.Space) -> int:
    """Number of discrete actions, or the length of a continuous action vector."""
    if isinstance(action_space, gym.spaces.Discrete):
        return int(action_space.n)
    return int(action_space.shape[0])


def dist_params_width(kind: PolicyKind, action_dim: int) -> int:
    """``P``, the width of the policy output ``dist_params``: the logits of a categorical
    policy, a Gaussian's mean and log-std."""
    return action_dim if kind == "categorical" else 2 * action_dim


def describe_action_space(action_space: gym.Space) -> str:
    """A short, comparable description: ``Discrete(3)`` or ``Box(6,)``."""
    if isinstance(action_space, gym.spaces.Discrete):
        return f"Discrete({int(action_space.n)})"
    return f"Box{tuple(int(d) for d in action_space.shape)}"


# --------------------------------------------------------------------------------------------
# Layers from the architecture


def _conv(spec: LayerSpec, in_ch: int, out_ch: int, kernel: int, stride: int,
          padding: int) -> nn.Module:
    fmt = spec.weight_format
    return torch_format(fmt).conv(in_ch, out_ch, kernel, fmt, stride, padding)


def make_linear(in_features: int, out_features: int, fmt: WeightFormat) -> nn.Module:
    """A linear layer in the given weight format."""
    return torch_format(fmt).linear(in_features, out_features, fmt)


class DepthwiseSeparable(nn.Module):
    """Depthwise ``k x k`` convolution (dense), activation, then the pointwise ``1x1``
    convolution that carries the layer's weight format."""

    def __init__(self, depthwise: nn.Conv2d, pointwise: nn.Module, activation: nn.Module):
        super().__init__()
        self.depthwise, self.pointwise, self.activation = depthwise, pointwise, activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.activation(self.depthwise(x)))


class RunningNorm(nn.Module):
    """Observation normalisation with running mean and variance (state in the state dict).

    The statistics change only in :meth:`update`, which the trainer calls after each update
    on the rollout it just used, so a rollout and its update see the same normalisation.
    """

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0) -> None:
        super().__init__()
        self.clip = clip
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge the statistics of a batch ``[B, *shape]`` (parallel-variance formula)."""
        x = x.double()
        batch_mean, batch_var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        self.var.copy_((self.var * self.count + batch_var * n
                        + delta.square() * self.count * n / total) / total)
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = (self.var + 1e-8).rsqrt().to(x.dtype)
        return ((x - self.mean.to(x.dtype)) * scale).clamp(-self.clip, self.clip)


class ActorCritic(nn.Module):
    """A shared trunk and head with policy and value outputs (see the module docstring).

    Args:
        arch: the architecture (validated against the observation shape here).
        obs_space: a Box of ``[C, H, W]`` pixels (uint8 frames are scaled by 1/255) or a
            ``[features]`` vector.
        action_space: Discrete or a 1-D Box.
        normalize_obs: keep running observation statistics (MuJoCo).
        generator: RNG of the initial weights (orthogonal: gain sqrt(2) in the trunk and
            head, 0.01 for the policy, 1 for the value, as stable-baselines3 and CleanRL do).

    A linear layer after a convolution reads the feature map flattened in ``(h, w, c)``
    order (:attr:`feature_order` ``"hwc"``), and convolutions run on channels-last memory:
    the flatten is then a view, and oneDNN's channels-last convolution is the faster one
    (together ~8 % of a PPO update of the MinAtar net).  Checkpoints written before this
    order existed load as ``"chw"`` and keep computing exactly what they were trained to.

    Raises:
        ConfigError: the architecture does not fit the observation, or the action space is
            not supported.
    """

    def __init__(self, arch: Arch, obs_space: gym.spaces.Box, action_space: gym.Space, *,
                 normalize_obs: bool = False, generator: torch.Generator | None = None):
        super().__init__()
        # torch's layer constructors draw their default initialisation from the global RNG,
        # which reset_parameters() then overwrites from `generator`: building a network leaves
        # the caller's random stream where it was (another library sampling from it in the
        # same process, as bench_rl.py's paired runs do, gets the same numbers either way).
        with torch.random.fork_rng(devices=[]):
            self._build(arch, obs_space, action_space, normalize_obs, generator)

    def _build(self, arch: Arch, obs_space: gym.spaces.Box, action_space: gym.Space,
               normalize_obs: bool, generator: torch.Generator | None) -> None:
        self.arch = arch
        self.obs_shape = tuple(int(d) for d in obs_space.shape)
        self.kind: PolicyKind = policy_kind(action_space)
        self.action_dim = action_dim(action_space)
        arch.plan(self.obs_shape)  # raises ConfigError before anything is built
        self.obs_scale = 1.0 / 255.0 if obs_space.dtype == np.uint8 else 1.0
        self.obs_norm = RunningNorm(self.obs_shape) if normalize_obs else None
        # In-place ReLU: every activation follows a layer's fresh output, which autograd
        # does not need again (ReLU's backward reads its own output).
        act_cls = partial(nn.ReLU, inplace=True) if arch.activation == "relu" else nn.Tanh
        # A plain function, not a module: acting calls the network once per environment step,
        # and each submodule call or lookup costs microseconds there.
        self._activation = torch.relu_ if arch.activation == "relu" else torch.tanh

        layers: list[nn.Module] = []
        # The [C, H, W] map each layer (and finally the head) reads flattened, or None.
        flattened_maps: list[tuple[int, int, int] | None] = []
        activate: list[bool] = []
        shape = self.obs_shape
        for spec in arch.layers:
            flattened_maps.append(shape if len(shape) == 3 and spec.op == "linear" else None)
            if spec.op == "skip":
                layers.append(nn.Identity())
                activate.append(False)
            elif spec.op == "linear":
                layers.append(make_linear(math.prod(shape), spec.width or 0, spec.weight_format))
                shape = (spec.width or 0,)
                activate.append(True)
            else:
                kernel = KERNEL_OF_OP[spec.op]
                pad = kernel // 2 if spec.padding == "same" else 0
                c, h, w = shape
                width = spec.width or 0
                if spec.op.startswith("dwsep"):
                    depthwise = nn.Conv2d(c, c, kernel, stride=spec.stride, padding=pad, groups=c)
                    layers.append(DepthwiseSeparable(
                        depthwise, _conv(spec, c, width, 1, 1, 0), act_cls()))
                else:
                    layers.append(_conv(spec, c, width, kernel, spec.stride, pad))
                shape = (width, (h + 2 * pad - kernel) // spec.stride + 1,
                         (w + 2 * pad - kernel) // spec.stride + 1)
                activate.append(True)
        self.layers = nn.ModuleList(layers)
        self._activate = tuple(activate)
        flattened_maps.append(shape if len(shape) == 3 else None)
        self._flattened_maps = tuple(flattened_maps)
        self._flattens = {order: tuple(None if shape is None else flatten
                                       for shape in flattened_maps)
                          for order, flatten in (("hwc", _flatten_hwc), ("chw", _flatten_chw))}
        self._conv_input = len(self.obs_shape) == 3
        self.feature_order: FeatureOrder = "hwc"
        self.head = make_linear(math.prod(shape), arch.head.width, arch.head.weight_format)
        self.policy = nn.Linear(arch.head.width, self.action_dim)
        self.value = nn.Linear(arch.head.width, 1)
        self.log_std = (nn.Parameter(torch.zeros(self.action_dim))
                        if self.kind == "gaussian" else None)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Orthogonal initialisation (compressed layers: their own, at the same gain)."""
        for module in [*self.layers.modules(), self.head]:
            if hasattr(module, "reset_parameters") and not isinstance(
                    module, nn.Conv2d | nn.Linear):
                module.reset_parameters(HIDDEN_GAIN, generator)
            elif isinstance(module, nn.Conv2d | nn.Linear):
                _orthogonal(module, HIDDEN_GAIN, generator)
        _orthogonal(self.policy, POLICY_GAIN, generator)
        _orthogonal(self.value, VALUE_GAIN, generator)
        if self.log_std is not None:
            self.log_std.zero_()

    @property
    def trains_channels_last(self) -> bool:
        """Whether the training forward runs its convolutions on channels-last maps (it
        converts its input; observations already channels-last skip that copy)."""
        return self.feature_order == "hwc" and self._conv_input

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """The head's activations ``[B, head.width]`` for observations ``[B, *obs_shape]``."""
        return self._trunk(obs, self.layers, self.head, self._flattens[self.feature_order],
                           channels_last=self.trains_channels_last)

    def _trunk(self, obs: torch.Tensor,
               layer_calls: Iterable[Callable[[torch.Tensor], torch.Tensor]],
               head_call: Callable[[torch.Tensor], torch.Tensor],
               flattens: tuple[Callable[[torch.Tensor], torch.Tensor] | None, ...], *,
               channels_last: bool) -> torch.Tensor:
        """The trunk and head with the given layer calls; ``flattens[i]`` flattens the map
        layer ``i`` (the head, for the last entry) reads, None where nothing is flattened."""
        x = obs.float()
        if self.obs_scale != 1.0:
            x = x * self.obs_scale
        if self.obs_norm is not None:
            x = self.obs_norm(x)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        activation = self._activation
        for call, flatten, activate in zip(layer_calls, flattens[:-1], self._activate,
                                           strict=True):
            if flatten is not None:
                x = flatten(x)
            x = call(x)
            if activate:
                x = activation(x)
        if flattens[-1] is not None:
            x = flattens[-1](x)
        return activation(head_call(x))

    def get_extra_state(self) -> dict[str, str]:
        return {"feature_order": self.feature_order}

    def set_extra_state(self, state: dict[str, str]) -> None:
        order = state.get("feature_order") if isinstance(state, dict) else None
        if order not in ("chw", "hwc"):
            raise RuntimeError(f"extra state: feature_order {order!r} is not 'chw' or 'hwc'")
        self.feature_order = order

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              *args: Any, **kwargs: Any) -> None:
        # Weights saved before the feature order was recorded flatten in (c, h, w) order.
        state_dict.setdefault(prefix + "_extra_state", {"feature_order": "chw"})
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``obs [B, *obs_shape]`` -> ``(dist_params [B, P], value [B])``."""
        h = self.features(obs)
        out = self.policy(h)
        if self.log_std is not None:
            out = torch.cat([out, self.log_std.expand_as(out)], dim=-1)
        return out, self.value(h).squeeze(-1)

    def inference(self) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """This network's forward as a plain function of its *current* weights, for acting:
        :meth:`inference_packed`'s output split into ``(dist_params, value)``."""
        packed = self.inference_packed()
        width = dist_params_width(self.kind, self.action_dim)

        def forward(obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = packed(obs)
            return out[:, :width], out[:, width]

        return forward

    @torch.no_grad()
    def inference_packed(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """This network's forward as a plain function of its *current* weights, for acting,
        with the outputs packed in one ``[B, P + 1]`` tensor: ``dist_params`` then the value.

        Split, its output equals ``self(obs)`` up to float rounding (the policy and value
        heads run as one matrix product); it builds no autograd graph.  Plain convolutions
        and linear layers are called as functions, not modules: acting calls the network
        once per environment step at batch ``num_envs``, where module dispatch and the
        separate heads cost about a third of the forward (MinAtar reference net at batch 8:
        193 -> ~120 us); one output tensor is one conversion to numpy a step.  The function
        is valid while the weights do not change (it holds copies of some of them): the
        trainer builds one per rollout.
        """
        # Acting runs the convolutions on contiguous (NCHW) maps, where PyTorch's small-batch
        # convolution is fastest (channels-last: +55 us a step at batch 8).  A plain linear
        # layer reading an (h, w, c)-ordered map gets its input rows permuted to (c, h, w)
        # order instead, so the map is flattened as it lies; other layers get the (h, w, c)
        # flatten, a copy.
        hwc = self.feature_order == "hwc"
        calls, flattens = [], []
        for layer, shape in zip([*self.layers, self.head], self._flattened_maps, strict=True):
            rows_from_hwc = shape if hwc and type(layer) is nn.Linear else None
            calls.append(_plain_call(layer, rows_from_hwc))
            flattens.append(None if shape is None else
                            _flatten_hwc if hwc and rows_from_hwc is None else _flatten_chw)
        layer_calls, head_call, flatten_calls = calls[:-1], calls[-1], tuple(flattens)
        head_weight_t = torch.cat([self.policy.weight, self.value.weight]).detach().t(
            ).contiguous()
        head_bias = torch.cat([self.policy.bias, self.value.bias]).detach()
        n_policy = self.policy.out_features
        log_std = None if self.log_std is None else self.log_std.detach()

        def forward(obs: torch.Tensor) -> torch.Tensor:
            features = self._trunk(obs, layer_calls, head_call, flatten_calls,
                                   channels_last=False)
            out = torch.addmm(head_bias, features, head_weight_t)  # [B, policy outputs + 1]
            if log_std is None:
                return out
            return torch.cat([out[:, :n_policy], log_std.expand(len(out), -1),
                              out[:, n_policy:]], dim=-1)

        return forward

    def workload(self, batch: int = 1) -> Workload:
        """The hw_sim workload of this network for ``batch`` observations (real layer shapes
        and weight formats; 1xN layers export their current masks)."""
        sample = torch.zeros((batch, *self.obs_shape), device=self.policy.weight.device)
        return workload_from_module(self, sample, name=self.arch.name)


def _plain_call(layer: nn.Module, rows_from_hwc: tuple[int, int, int] | None = None
                ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``layer``'s forward as a function of its current (detached) weights: plain
    ``nn.Conv2d``/``nn.Linear``/``nn.Identity`` (exact types) become the functional call
    (a linear layer on 2-D input, as the trunk gives it), anything else stays the module.

    ``rows_from_hwc``: the ``[C, H, W]`` map a plain linear layer reads, whose weight columns
    are in ``(h, w, c)`` order; the function then reads the map flattened in ``(c, h, w)``
    order."""
    if type(layer) is nn.Identity:
        return _identity
    if type(layer) is nn.Linear:
        # [in, out] contiguous: MKL multiplies by it ~30 % faster than by the transpose of
        # the [out, in] weight (measured at batch 8: 23 vs 33 us for 1024 -> 128).
        weight_t = layer.weight.detach().t()
        if rows_from_hwc is not None:
            channels, height, width = rows_from_hwc
            weight_t = weight_t.reshape(height, width, channels, -1).permute(2, 0, 1, 3).reshape(
                channels * height * width, -1)
        weight_t = weight_t.contiguous()
        if layer.bias is None:
            return lambda x: torch.mm(x, weight_t)
        bias = layer.bias.detach()
        return lambda x: torch.addmm(bias, x, weight_t)
    if type(layer) is nn.Conv2d and layer.padding_mode == "zeros":
        weight, bias = layer.weight.detach(), _detached(layer.bias)
        stride, padding, dilation, groups = (layer.stride, layer.padding, layer.dilation,
                                             layer.groups)
        return lambda x: F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    return layer


def _flatten_hwc(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, H*W*C]`` (a view of a channels-last map, else a copy)."""
    return x.permute(0, 2, 3, 1).flatten(1)


def _flatten_chw(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, C*H*W]``."""
    return x.flatten(1)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _detached(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.detach()


def _orthogonal(module: nn.Conv2d | nn.Linear, gain: float,
                generator: torch.Generator | None) -> None:
    nn.init.orthogonal_(module.weight, gain, generator=generator)
    if module.bias is not None:
        module.bias.zero_()


def build_agent(arch: Arch | None, obs_space: gym.spaces.Box, action_space: gym.Space, *,
                normalize_obs: bool = False, seed: int = 0) -> ActorCritic:
    """The actor-critic for ``arch`` (or the reference network of the observation type),
    initialised from ``seed``.

    Raises:
        ConfigError: the architecture does not fit, or the spaces are not supported.
    """
    chosen = arch if arch is not None else reference_arch(tuple(obs_space.shape))
    generator = torch.Generator().manual_seed(seed)
    try:
        return ActorCritic(chosen, obs_space, action_space, normalize_obs=normalize_obs,
                           generator=generator)
    except (MemoryError, RuntimeError) as error:
        # torch's allocator reports a failed allocation as a RuntimeError ("can't allocate
        # memory"): an architecture too large for this machine (e.g. a mistyped width)
        if isinstance(error, RuntimeError) and "allocate" not in str(error):
            raise
        raise ConfigError("arch", chosen.name, "an architecture whose weights fit in this "
                          "machine's memory (check its layers' widths)") from None


# --------------------------------------------------------------------------------------------
# Action distributions over dist_params

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def action_noise(batch_shape: tuple[int, ...], kind: PolicyKind, action_dim: int,
                 generator: torch.Generator | None) -> torch.Tensor:
    """The noise :func:`sample_action` turns into actions, ``[*batch_shape, action_dim]``:
    standard Gumbel for a categorical policy (``action_dim`` logits), standard normal for a
    Gaussian one.  A rollout draws all its steps' noise in one call: three kernels a step
    fewer while acting, and the same numbers, in the same order, as drawing step by step.
    """
    if kind == "categorical":
        return torch.empty((*batch_shape, action_dim)).exponential_(generator=generator
                                                                     ).log_().neg_()
    return torch.randn((*batch_shape, action_dim), generator=generator)


def sample_action(dist_params: np.ndarray, kind: PolicyKind, noise: np.ndarray) -> np.ndarray:
    """Draw one action per row (numpy: acting samples a few rows a step, where a numpy op
    costs about 1 us and a torch op 5-10 us).

    Categorical: Gumbel-max on the logits (exact sampling, one pass).  Gaussian: ``mean +
    noise * std``.  :func:`sampled_log_prob` gives the actions' log-probabilities, for any
    number of steps at once.

    Args:
        dist_params: ``[..., P]`` float, the network's policy output (see the module
            docstring).
        kind: the policy kind.
        noise: :func:`action_noise` of the same leading shape, ``[..., action_dim]``, as
            numpy.

    Returns:
        ``[...]`` int64 (categorical) or ``[..., D]`` float32 (Gaussian).
    """
    if kind == "categorical":
        return (dist_params + noise).argmax(axis=-1)
    mean, log_std = np.split(dist_params, 2, axis=-1)
    return (mean + noise.astype(mean.dtype, copy=False) * np.exp(log_std)).astype(
        np.float32, copy=False)


def sampled_log_prob(dist_params: np.ndarray, kind: PolicyKind, noise: np.ndarray,
                     action: np.ndarray) -> np.ndarray:
    """The log-probability ``[...]`` float32 of ``action``, drawn by :func:`sample_action`
    from ``dist_params [..., P]`` with ``noise``.

    Row by row the same arithmetic whatever the leading shape, so a rollout computes all
    its steps' log-probabilities in one call after acting: three numpy calls a step fewer
    in the loop, the same bits.
    """
    if kind == "categorical":
        # logaddexp.reduce: a stable log-sum-exp in one call (max-shifting takes four).
        log_norm = np.logaddexp.reduce(dist_params, axis=-1)
        chosen = np.take_along_axis(dist_params, action[..., None], axis=-1)[..., 0]
        return (chosen - log_norm).astype(np.float32, copy=False)
    log_std = np.split(dist_params, 2, axis=-1)[1]
    noise = noise.astype(log_std.dtype, copy=False)
    return (-0.5 * noise * noise - log_std - _HALF_LOG_2PI).sum(axis=-1).astype(
        np.float32, copy=False)


def log_prob_entropy(dist_params: torch.Tensor, kind: PolicyKind,
                     actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of ``actions`` and the entropy of the policy, both ``[B]``."""
    if kind == "categorical":
        logp_all = F.log_softmax(dist_params, dim=-1)
        logp = logp_all.gather(-1, actions.long()[:, None]).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logp, entropy
    mean, log_std = dist_params.chunk(2, dim=-1)
    z = (actions - mean) * (-log_std).exp()
    logp = (-0.5 * z.square() - log_std - _HALF_LOG_2PI).sum(-1)
    entropy = (0.5 + _HALF_LOG_2PI + log_std).sum(-1)
    return logp, entropy


def greedy_action(dist_params: torch.Tensor, kind: PolicyKind) -> torch.Tensor:
    """The most likely action (argmax logits, or the Gaussian's mean)."""
    if kind == "categorical":
        return dist_params.argmax(dim=-1)
    return dist_params.chunk(2, dim=-1)[0]
