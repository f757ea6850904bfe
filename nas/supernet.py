"""Single-path Gumbel-softmax supernet over a :class:`nas.space.SearchSpace`.

Weights are shared: each trunk position holds one module per operation at the largest width
and input size; a narrower candidate uses the leading slice of the weights (as in
once-for-all / FBNetV2), and a weight format is applied to the sliced weights:

* block-circulant ``b``: the orthogonal projection onto block-circulant matrices (each
  ``b x b`` block replaced by the mean of its circulant diagonals, per kernel tap);
* 1xN ``(n, s)``: the fraction ``s`` of blocks with the smallest L1 norm is zeroed, as the 1xN
  layers prune (:func:`nas.layers.block_l1_mask`);

so every path computes the function of a real network of that architecture.  The head has
one weight per trunk output shape a path can produce (its inputs are a flattened ``[C, H,
W]`` map, whose positions mean different pixels at different spatial sizes, so heads are not
shared across shapes); each is sliced to the sampled head width.

Each choice (``layers.<i>.op`` ... ``head.format``) has its own logits.
:meth:`SuperNet.sample_path` draws one candidate per choice with hard Gumbel-softmax; the
forward pass runs only that path and multiplies each layer's output by the straight-through
gate of its choices (1 in value, carrying the soft sample's gradient), so the task loss
reaches the logits.  :meth:`SuperNet.probabilities` gives the distributions the expected
hardware cost is taken over, and :meth:`SuperNet.derive` the most likely architecture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from a3cs_common.errors import ConfigError
from nas.arch import KERNEL_OF_OP, Arch, ArchWeightFormat
from nas.layers import HIDDEN_GAIN, POLICY_GAIN, VALUE_GAIN
from nas.space import SearchSpace
from nas.torch_formats import torch_format

# --------------------------------------------------------------------------------------------
# Weight formats as transformations of shared dense weights


def apply_format(weight: torch.Tensor, fmt: ArchWeightFormat) -> torch.Tensor:
    """``weight`` (``[out, in]`` or ``[out, in, kh, kw]``) in the weight format ``fmt`` (see
    :mod:`nas.torch_formats`)."""
    return torch_format(fmt).project(weight, fmt)


# --------------------------------------------------------------------------------------------
# Architecture logits and paths


@dataclass
class ArchPath:
    """One sampled candidate per choice.

    Attributes:
        indices: candidate index per choice label.
        noise: the Gumbel noise the sample was drawn with, per label (to recompute gates).
        gates: straight-through gate per label: 1 in value, gradient of the soft sample.
    """

    indices: dict[str, int]
    noise: dict[str, torch.Tensor]
    gates: dict[str, torch.Tensor]


class ArchLogits(nn.Module):
    """Logits of every choice (initialised to zero: uniform)."""

    def __init__(self, choices: dict[str, tuple[object, ...]]):
        super().__init__()
        self.labels = tuple(choices)
        self.sizes = {label: len(values) for label, values in choices.items()}
        self.logits = nn.ParameterDict({
            _key(label): nn.Parameter(torch.zeros(len(values))) for label, values in choices.items()
        })

    def __getitem__(self, label: str) -> torch.Tensor:
        return self.logits[_key(label)]

    def probabilities(self) -> dict[str, torch.Tensor]:
        """Softmax distribution of every choice (differentiable)."""
        return {label: F.softmax(self[label], dim=0) for label in self.labels}

    def sample(self, tau: float, generator: torch.Generator | None = None) -> ArchPath:
        """Draw one candidate per choice with hard Gumbel-softmax at temperature ``tau``."""
        noise = {}
        indices = {}
        for label in self.labels:
            uniform = torch.rand(self.sizes[label], generator=generator).clamp_(1e-10, 1.0)
            noise[label] = (-torch.log(-torch.log(uniform))).to(self[label].device)
            indices[label] = int(torch.argmax(self[label].detach() + noise[label]))
        return ArchPath(indices, noise, self.gates(indices, noise, tau))

    def gates(self, indices: dict[str, int], noise: dict[str, torch.Tensor],
              tau: float) -> dict[str, torch.Tensor]:
        """Straight-through gates of the chosen candidates under the current logits."""
        out = {}
        for label in self.labels:
            soft = F.softmax((self[label] + noise[label]) / tau, dim=0)[indices[label]]
            out[label] = 1.0 - soft.detach() + soft
        return out

    def argmax(self) -> dict[str, int]:
        return {label: int(torch.argmax(self[label])) for label in self.labels}


def _key(label: str) -> str:
    return label.replace(".", "__")


def _shape_key(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


# --------------------------------------------------------------------------------------------
# Shared-weight operations


class _FormattedWeights:
    """The sliced, formatted weight of the current path, reused while gradients are off.

    A rollout runs the same path hundreds of times with unchanged weights; the key holds the
    parameter's in-place version counter, so an optimizer step invalidates the entry.
    """

    def __init__(self) -> None:
        self.key: tuple[object, ...] | None = None
        self.value: torch.Tensor | None = None

    def get(self, param: torch.Tensor, key: tuple[object, ...],
            make: object) -> torch.Tensor:
        if torch.is_grad_enabled():
            return make()  # type: ignore[operator]
        full_key = (*key, param._version)
        if full_key != self.key or self.value is None:
            self.key, self.value = full_key, make()  # type: ignore[operator]
        return self.value


class _SharedWeight(nn.Module):
    """A weight at its largest size that candidates slice and project into their format; with
    ``groups`` (few-shot NAS), each of those format types has its own copy instead."""

    def __init__(self, shape: tuple[int, ...], groups: tuple[str, ...]):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(shape))
        self.group_weights = nn.ParameterDict({g: nn.Parameter(torch.empty(shape))
                                               for g in groups})
        self.bias = nn.Parameter(torch.zeros(shape[0]))
        self._formatted = _FormattedWeights()

    def all_weights(self) -> list[nn.Parameter]:
        return [self.weight, *self.group_weights.values()]

    def formatted(self, width: int, cin: int, fmt: ArchWeightFormat) -> torch.Tensor:
        full = self.group_weights.get(fmt.type, self.weight)
        return self._formatted.get(full, (width, cin, fmt.label()),
                                   lambda: apply_format(full[:width, :cin], fmt))


class SharedConv(_SharedWeight):
    """A ``k x k`` convolution at its largest size; candidates slice it."""

    def __init__(self, in_max: int, out_max: int, kernel: int, padding: int,
                 groups: tuple[str, ...] = ()):
        super().__init__((out_max, in_max, kernel, kernel), groups)
        self.padding = padding

    def forward(self, x: torch.Tensor, width: int, fmt: ArchWeightFormat) -> torch.Tensor:
        weight = self.formatted(width, x.shape[1], fmt)
        return F.conv2d(x, weight, self.bias[:width], padding=self.padding)


class SharedDepthwiseSeparable(nn.Module):
    """Depthwise ``k x k`` (dense) -> activation -> pointwise ``1x1`` carrying the format."""

    def __init__(self, in_max: int, out_max: int, kernel: int, padding: int,
                 activation: nn.Module, groups: tuple[str, ...] = ()):
        super().__init__()
        self.padding = padding
        self.depthwise = nn.Parameter(torch.empty(in_max, 1, kernel, kernel))
        self.depthwise_bias = nn.Parameter(torch.zeros(in_max))
        self.pointwise = SharedConv(in_max, out_max, 1, 0, groups)
        self.act = activation

    def forward(self, x: torch.Tensor, width: int, fmt: ArchWeightFormat) -> torch.Tensor:
        c = x.shape[1]
        h = F.conv2d(x, self.depthwise[:c], self.depthwise_bias[:c], padding=self.padding,
                     groups=c)
        return self.pointwise(self.act(h), width, fmt)


class SharedLinear(_SharedWeight):
    """A linear layer at its largest size; candidates slice it."""

    def __init__(self, in_max: int, out_max: int, groups: tuple[str, ...] = ()):
        super().__init__((out_max, in_max), groups)

    def forward(self, x: torch.Tensor, width: int, fmt: ArchWeightFormat) -> torch.Tensor:
        return F.linear(x, self.formatted(width, x.shape[1], fmt), self.bias[:width])


# --------------------------------------------------------------------------------------------
# The supernet


class SuperNet(nn.Module):
    """Actor-critic supernet.  ``forward(obs)`` -> ``(dist_params [B, P], value [B])`` on the
    current path, the same contract as :class:`a3cs.rl.networks.ActorCritic`.

    Args:
        space: the search space (checked against the observation shape here).
        obs_shape: ``(C, H, W)`` or ``(features,)``.
        action_dim: number of discrete actions, or length of a continuous action.
        gaussian: continuous actions (a state-independent log-std is appended to the output).
        obs_scale: factor applied to observations (1/255 for uint8 frames).
        obs_transform: optional module applied after scaling (e.g. running normalisation).
        generator: RNG of the initial weights.
        weight_sharing: ``shared`` (one weight per layer and operation, every format a
            projection of it) or ``per_format`` (few-shot NAS: one copy per format type, so
            dense, block-circulant, 1xN and N:M candidates stop competing for one tensor).

    Raises:
        ConfigError: some architecture in the space does not fit the observation.
    """

    def __init__(self, space: SearchSpace, obs_shape: tuple[int, ...], action_dim: int, *,
                 gaussian: bool = False, obs_scale: float = 1.0,
                 obs_transform: nn.Module | None = None,
                 generator: torch.Generator | None = None,
                 weight_sharing: str = "shared"):
        super().__init__()
        if weight_sharing not in ("shared", "per_format"):
            raise ConfigError("supernet.weight_sharing", weight_sharing, "shared or per_format")
        space.check_fits(obs_shape)
        self.space = space
        self.obs_shape = tuple(obs_shape)
        self.action_dim = action_dim
        self.kind = "gaussian" if gaussian else "categorical"
        self.obs_scale = obs_scale
        self.obs_transform = obs_transform
        self.act = nn.ReLU() if space.activation == "relu" else nn.Tanh()
        self.choices = space.choices(obs_shape)
        self.arch_logits = ArchLogits(self.choices)
        self._formats = {f.label(): f for f in (*space.formats, *space.head_formats)}
        # few-shot: the first format type keeps the base weight, the others get copies
        types = list(dict.fromkeys(f.type for f in (*space.formats, *space.head_formats)))
        groups = tuple(types[1:]) if weight_sharing == "per_format" else ()

        widest = max(space.widths)
        trunk = nn.ModuleList()
        shapes: set[tuple[int, ...]] = {tuple(obs_shape)}  # what each layer may receive
        if space.observation == "pixels":
            for i in range(space.num_layers):
                in_max = obs_shape[0] if i == 0 else widest
                pad_same = space.layer_padding(i) == "same"
                ops = nn.ModuleDict()
                reachable: set[tuple[int, ...]] = set()
                for op in space.layer_ops(i):
                    if op == "skip":
                        reachable |= shapes
                        continue
                    k = KERNEL_OF_OP[op]
                    pad = k // 2 if pad_same else 0
                    ops[op] = (SharedDepthwiseSeparable(in_max, widest, k, pad, self.act, groups)
                               if op.startswith("dwsep")
                               else SharedConv(in_max, widest, k, pad, groups))
                    for _, h, w in shapes:
                        reachable |= {(width, h + 2 * pad - k + 1, w + 2 * pad - k + 1)
                                      for width in space.widths}
                trunk.append(ops)
                shapes = reachable
        else:
            for i in range(space.num_layers):
                trunk.append(nn.ModuleDict({"linear": SharedLinear(
                    obs_shape[0] if i == 0 else widest, widest, groups)}))
                shapes = ({(w,) for w in space.widths}
                          | (shapes if "skip" in space.layer_ops(i) else set()))
        self.trunk = trunk
        head_max = max(space.head_widths)
        self.heads = nn.ModuleDict({_shape_key(shape): SharedLinear(math.prod(shape), head_max,
                                                                    groups)
                                    for shape in sorted(shapes)})
        self.policy = nn.Linear(head_max, action_dim)
        self.value = nn.Linear(head_max, 1)
        self.log_std = nn.Parameter(torch.zeros(action_dim)) if gaussian else None
        #: The path the training loop acts and updates with (it calls ``model(obs)``): set by
        #: :meth:`sample_path` / :meth:`use_architecture`, read only when ``forward`` gets no
        #: path of its own.
        self.acting_path: ArchPath | None = None
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Orthogonal initialisation at the largest sizes (gains as in ActorCritic)."""
        for module in [*self.trunk.modules(), *self.heads.modules()]:
            if isinstance(module, _SharedWeight):
                for weight in module.all_weights():
                    nn.init.orthogonal_(weight, HIDDEN_GAIN, generator=generator)
            if isinstance(module, SharedDepthwiseSeparable):
                nn.init.orthogonal_(module.depthwise, HIDDEN_GAIN, generator=generator)
        nn.init.orthogonal_(self.policy.weight, POLICY_GAIN, generator=generator)
        nn.init.orthogonal_(self.value.weight, VALUE_GAIN, generator=generator)
        self.policy.bias.zero_()
        self.value.bias.zero_()

    @property
    def obs_norm(self) -> nn.Module | None:
        """The observation transform when it is a running normaliser (it has ``update(obs)``,
        which the training loop calls after each update), else None."""
        return self.obs_transform if hasattr(self.obs_transform, "update") else None

    # -- parameters ----------------------------------------------------------------------

    def weight_parameters(self) -> list[nn.Parameter]:
        """Everything trained by the task loss except the architecture logits."""
        logits = {id(p) for p in self.arch_logits.parameters()}
        return [p for p in self.parameters() if id(p) not in logits]

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.arch_logits.parameters())

    # -- paths ---------------------------------------------------------------------------

    def sample_path(self, tau: float, generator: torch.Generator | None = None) -> ArchPath:
        """Sample a path (Gumbel-softmax at temperature ``tau``); the acting path is not
        changed."""
        return self.arch_logits.sample(tau, generator)

    def fair_paths(self, count: int, generator: torch.Generator | None = None
                   ) -> list[ArchPath]:
        """``count`` paths with FairNAS's strict fairness: for every choice, each run of as many
        paths as it has options uses every option once (a fresh random order per run),
        whatever the logits; gates 1 (they train weights, not logits)."""
        orders: dict[str, list[int]] = {}
        for label, values in self.choices.items():
            order: list[int] = []
            while len(order) < count:
                order += torch.randperm(len(values), generator=generator).tolist()
            orders[label] = order
        return [self.fixed_path({label: orders[label][j] for label in self.choices})
                for j in range(count)]

    def fixed_path(self, indices: dict[str, int]) -> ArchPath:
        """The path of given candidates (gates 1, no gradient to the logits)."""
        ones = {label: torch.ones(()) for label in self.choices}
        return ArchPath(dict(indices), {}, ones)

    def act_with(self, path: ArchPath) -> ArchPath:
        """Make ``path`` the acting path (what ``forward`` runs without a path); returns it."""
        self.acting_path = path
        return path

    def use_architecture(self, indices: dict[str, int]) -> None:
        """Act with the given candidates, e.g. to evaluate one architecture."""
        self.act_with(self.fixed_path(indices))

    def probabilities(self) -> dict[str, torch.Tensor]:
        return self.arch_logits.probabilities()

    def derive(self, name: str = "derived") -> Arch:
        """The most likely architecture under the current logits."""
        return self.space.arch_from_indices(self.arch_logits.argmax(), self.obs_shape, name)

    def _value(self, label: str, path: ArchPath) -> object:
        return self.choices[label][path.indices[label]]

    # -- forward -------------------------------------------------------------------------

    def features(self, obs: torch.Tensor, path: ArchPath) -> torch.Tensor:
        """Head activations ``[B, head width]`` on ``path``."""
        x = obs.float()
        if self.obs_scale != 1.0:
            x = x * self.obs_scale
        if self.obs_transform is not None:
            x = self.obs_transform(x)
        for i, ops in enumerate(self.trunk):
            op = self._value(f"layers.{i}.op", path)
            gate = path.gates[f"layers.{i}.op"]
            if op == "skip":
                x = x * gate
                continue
            width = int(self._value(f"layers.{i}.width", path))
            fmt = self._formats[str(self._value(f"layers.{i}.format", path))]
            y = self.act(ops[op](x, width, fmt))
            x = y * gate * path.gates[f"layers.{i}.width"] * path.gates[f"layers.{i}.format"]
        head_width = int(self._value("head.width", path))
        fmt = self._formats[str(self._value("head.format", path))]
        head = self.heads[_shape_key(tuple(x.shape[1:]))]
        h = self.act(head(x.flatten(1), head_width, fmt))
        return h * path.gates["head.width"] * path.gates["head.format"]

    def forward(self, obs: torch.Tensor, path: ArchPath | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``obs [B, *obs_shape]`` -> ``(dist_params [B, P], value [B])`` on ``path`` (default:
        the acting path, for the training loop's ``model(obs)``)."""
        if path is None:
            path = self.acting_path
            if path is None:
                raise RuntimeError("no path: pass one, or set the acting path (act_with, "
                                   "use_architecture) first")
        h = self.features(obs, path)
        width = h.shape[1]
        out = F.linear(h, self.policy.weight[:, :width], self.policy.bias)
        if self.log_std is not None:
            out = torch.cat([out, self.log_std.expand_as(out)], dim=-1)
        value = F.linear(h, self.value.weight[:, :width], self.value.bias).squeeze(-1)
        return out, value
