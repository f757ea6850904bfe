"""The discrete architecture description of an actor-critic agent.

This is the form the NAS derives (``derive()``) and the RL package builds
(:func:`a3cs.rl.networks.build_agent`).  An architecture is a trunk of searchable layers, a
shared head (one fully connected layer), and the policy and value outputs, which are fixed
by the environment's action space::

    observation -> layers[0] -> ... -> layers[-1] -> flatten -> head (FC, width) -> policy
                                                                                 -> value

Per searchable layer: an operation (``conv3x3``, ``conv5x5``, ``dwsep3x3``, ``dwsep5x5``,
``conv1x1``, ``skip``, ``linear``), a width (output channels or features) and a weight format:

* ``{type: dense}``
* ``{type: block_circulant, block_size: b}``: trainable circulant ``b x b`` blocks (FFT forward)
* ``{type: one_by_n, n: N, density: d}``: 1xN block sparsity, pruned by block L1 norm to
  the fraction ``d`` of blocks kept (reached by the schedule in the training config);
* ``{type: n_m, n: N, m: M}``: N:M structured sparsity along the reduction dimension.

The formats are :mod:`a3cs_common.formats`'s, the same objects the workloads carry.

Convolutions run on channel-first pixel observations ``[C, H, W]``; ``linear`` layers follow
the convolutions (the input is flattened before the first one) or form an MLP on vector
observations.  ``skip`` is the identity (how the search expresses depth).  A depthwise-
separable layer is a depthwise ``k x k`` convolution (always dense) followed by a ``1x1``
pointwise convolution to ``width`` that carries the weight format.

:meth:`Arch.plan` walks the shapes for an observation and raises a one-line
:class:`~a3cs_common.errors.ConfigError` if the architecture does not fit; :meth:`Arch.workload`
gives the hw_sim workload without building a network (the hardware cost the NAS needs).

Example (MinAtar's reference network)::

    name: minatar_reference
    layers:
      - {op: conv3x3, width: 16}
    head: {width: 128}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from a3cs_common.errors import ConfigError
from a3cs_common.formats import Dense, OneByN, WeightFormat
from a3cs_common.formats.base import GemmGeometry
from a3cs_common.io import load_mapping
from a3cs_common.schema import FrozenModel, validate
from hw_sim.workload import Conv2d, Linear, Workload

Op = Literal["conv3x3", "conv5x5", "dwsep3x3", "dwsep5x5", "conv1x1", "skip", "linear",
             "conv8x8", "conv4x4"]

#: Spatial kernel size of each convolutional operation (``conv8x8``/``conv4x4`` exist for the
#: Nature-DQN Atari trunk; the search spaces use the others).
KERNEL_OF_OP: dict[str, int] = {
    "conv3x3": 3, "conv5x5": 5, "dwsep3x3": 3, "dwsep5x5": 5, "conv1x1": 1, "conv8x8": 8,
    "conv4x4": 4,
}
CONV_OPS = frozenset(KERNEL_OF_OP)


#: The weight format of a searchable layer: a 1xN format gives its target ``density`` (the
#: trained mask is the layer's state, not part of the architecture).
ArchWeightFormat = WeightFormat


def _check_arch_format(fmt: WeightFormat) -> WeightFormat:
    if isinstance(fmt, OneByN) and fmt.mask is not None:
        raise ConfigError("weight_format.mask", "a mask", "none in an architecture: give the "
                          "target density; the trained mask is the layer's state")
    if isinstance(fmt, OneByN) and fmt.balanced:
        raise ConfigError("weight_format.balanced", True, "false in an architecture (the "
                          "training's block_pruning decides whether its block rows are "
                          "balanced)")
    return fmt


def priced_format(fmt: WeightFormat, balanced_masks: bool) -> WeightFormat:
    """The format a layer of an untrained architecture is priced with: a 1xN layer's random
    mask drawn row-balanced when ``balanced_masks`` (its training prunes row_balanced)."""
    if balanced_masks and isinstance(fmt, OneByN) and fmt.density is not None:
        return fmt.model_copy(update={"balanced": True})
    return fmt


class LayerSpec(FrozenModel):
    """One searchable layer."""

    op: Op = Field(description="operation")
    width: PositiveInt | None = Field(
        default=None, description="output channels (conv) or features (linear); none for skip"
    )
    stride: PositiveInt = Field(default=1, description="spatial stride (convolutions)")
    padding: Literal["valid", "same"] = Field(
        default="valid", description="valid: no padding; same: kernel // 2 on each side"
    )
    weight_format: ArchWeightFormat = Field(default_factory=Dense)

    @model_validator(mode="after")
    def _fields_fit_op(self) -> LayerSpec:
        _check_arch_format(self.weight_format)
        if self.op == "skip":
            if self.width is not None:
                raise ConfigError("width", self.width, "none for a skip layer (the identity)")
            if not isinstance(self.weight_format, Dense):
                raise ConfigError("weight_format", self.weight_format.type,
                                  "dense for a skip layer (it has no weights)")
        elif self.width is None:
            raise ConfigError("width", None, f"a positive integer for op {self.op}")
        if self.op not in CONV_OPS and (self.stride != 1 or self.padding != "valid"):
            raise ConfigError("stride", self.stride, f"stride 1 and padding valid for op {self.op}")
        return self


class HeadSpec(FrozenModel):
    """The shared fully connected layer before the policy and value outputs."""

    width: PositiveInt = Field(description="hidden features of the head")
    weight_format: ArchWeightFormat = Field(default_factory=Dense)

    @model_validator(mode="after")
    def _no_mask(self) -> HeadSpec:
        _check_arch_format(self.weight_format)
        return self


class Arch(FrozenModel):
    """An actor-critic architecture (see the module docstring)."""

    name: str = Field(default="agent", min_length=1)
    activation: Literal["relu", "tanh"] = Field(default="relu",
                                                description="nonlinearity after every layer")
    layers: tuple[LayerSpec, ...] = Field(default=(), description="the searchable trunk")
    head: HeadSpec

    @field_validator("layers", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return () if value is None else value

    def plan(self, obs_shape: tuple[int, ...]) -> list[PlannedLayer]:
        """Walk the shapes for an observation of ``obs_shape`` and return every hardware layer.

        Args:
            obs_shape: ``(C, H, W)`` for pixel observations or ``(features,)`` for vectors.

        Returns:
            The layers in execution order, with their input/output shapes (no batch) and the
            format of their weights; the policy and value outputs are not included.

        Raises:
            ConfigError: the architecture does not fit the observation (a convolution on a
                vector, a kernel larger than its input, a block size that does not divide
                the channels, ...).  The field names the layer, e.g. ``layers[1].op``.
        """
        if len(obs_shape) not in (1, 3) or min(obs_shape) < 1:
            raise ConfigError("observation shape", obs_shape,
                              "(C, H, W) pixels or (features,) vectors")
        shape = tuple(obs_shape)
        planned: list[PlannedLayer] = []
        for i, spec in enumerate(self.layers):
            where = f"layers[{i}]"
            if spec.op == "skip":
                continue
            if spec.op == "linear":
                features = math.prod(shape)
                planned.append(_linear(f"layers.{i}", features, spec.width or 0,
                                       spec.weight_format, where))
                shape = (spec.width or 0,)
                continue
            if len(shape) != 3:
                what = "a vector observation" if len(obs_shape) == 1 else "a linear layer"
                raise ConfigError(f"{where}.op", spec.op,
                                  f"skip or linear here (a convolution cannot follow {what})")
            kernel = KERNEL_OF_OP[spec.op]
            pad = kernel // 2 if spec.padding == "same" else 0
            c, h, w = shape
            out_h = (h + 2 * pad - kernel) // spec.stride + 1
            out_w = (w + 2 * pad - kernel) // spec.stride + 1
            if out_h < 1 or out_w < 1:
                raise ConfigError(f"{where}.op", spec.op,
                                  f"a kernel that fits its {h}x{w} input (padding {spec.padding})")
            width = spec.width or 0
            if spec.op.startswith("dwsep"):
                planned.append(PlannedLayer(
                    name=f"layers.{i}.depthwise", kind="conv2d", in_shape=shape,
                    out_shape=(c, out_h, out_w), kernel=kernel, stride=spec.stride, padding=pad,
                    groups=c, weight_format=Dense()))
                planned.append(_checked(PlannedLayer(
                    name=f"layers.{i}.pointwise", kind="conv2d", in_shape=(c, out_h, out_w),
                    out_shape=(width, out_h, out_w), kernel=1, stride=1, padding=0, groups=1,
                    weight_format=spec.weight_format), where))
            else:
                planned.append(_checked(PlannedLayer(
                    name=f"layers.{i}", kind="conv2d", in_shape=shape,
                    out_shape=(width, out_h, out_w), kernel=kernel, stride=spec.stride,
                    padding=pad, groups=1, weight_format=spec.weight_format), where))
            shape = (width, out_h, out_w)
        planned.append(_linear("head", math.prod(shape), self.head.width,
                               self.head.weight_format, "head"))
        return planned

    def workload(self, obs_shape: tuple[int, ...], action_dim: int, *, batch: int = 1,
                 name: str | None = None, balanced_masks: bool = False) -> Workload:
        """The hw_sim workload of this architecture, without building a network.

        1xN layers get a random block mask at their density (seed 0); a trained
        network exports its real mask instead (:func:`a3cs.rl.networks.ActorCritic.workload`).

        Args:
            obs_shape: as in :meth:`plan`.
            action_dim: policy outputs (actions, or the action vector's length).
            batch: inferences per run (1: one environment step).
            name: workload name (default: the architecture's name).
            balanced_masks: draw the 1xN masks with the same number of blocks in every block
                row, as a training with ``block_pruning: row_balanced`` prunes them (the
                trained agent then runs at exactly the priced latency); otherwise across the
                whole layer.

        Raises:
            ConfigError: as in :meth:`plan`.
        """
        layers: list[Conv2d | Linear] = [p.hw_layer(batch, balanced_masks=balanced_masks)
                                         for p in self.plan(obs_shape)]
        layers.append(Linear(name="policy", in_features=self.head.width,
                             out_features=action_dim, batch=batch))
        layers.append(Linear(name="value", in_features=self.head.width, out_features=1,
                             batch=batch))
        return Workload(name=name or self.name, layers=tuple(layers))

    def to_dict(self) -> dict[str, object]:
        """The plain mapping of the YAML form (:func:`load_arch` reads it back)."""
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class PlannedLayer(GemmGeometry):
    """One hardware layer of an architecture with its shapes (no batch dimension).

    ``in_shape``/``out_shape`` are ``(C, H, W)`` for convolutions and ``(features,)`` for
    linear layers; a linear layer after a convolution flattens its input.  It is a
    :class:`~a3cs_common.formats.LayerGeometry` (batch 1), so formats check themselves on it.
    """

    name: str
    kind: Literal["conv2d", "linear"]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: int
    stride: int
    padding: int
    groups: int
    weight_format: WeightFormat

    @property
    def in_channels(self) -> int:
        return self.in_shape[0]

    @property
    def out_channels(self) -> int:
        return self.out_shape[0]

    @property
    def taps(self) -> int:
        return self.kernel * self.kernel

    @property
    def gemm_m(self) -> int:
        return math.prod(self.out_shape[1:])

    def hw_layer(self, batch: int = 1, *, balanced_masks: bool = False) -> Conv2d | Linear:
        """The hw_sim layer (1xN: random mask at the target density, seed 0, row-balanced
        when ``balanced_masks``; see :func:`priced_format`)."""
        fmt = priced_format(self.weight_format, balanced_masks)
        if self.kind == "linear":
            return Linear(name=self.name, in_features=self.in_shape[0],
                          out_features=self.out_shape[0], batch=batch, weight_format=fmt)
        return Conv2d(name=self.name, in_channels=self.in_shape[0],
                      out_channels=self.out_shape[0], in_height=self.in_shape[1],
                      in_width=self.in_shape[2], kernel_size=self.kernel, stride=self.stride,
                      padding=self.padding, groups=self.groups, batch=batch, weight_format=fmt)


def _checked(layer: PlannedLayer, where: str) -> PlannedLayer:
    """``layer`` if its weight format fits its shape; else the format's error under ``where``."""
    try:
        layer.weight_format.check(layer)
    except ConfigError as error:
        raise error.within(where) from None
    return layer


def _linear(name: str, in_features: int, out_features: int, fmt: WeightFormat,
            where: str) -> PlannedLayer:
    return _checked(PlannedLayer(name=name, kind="linear", in_shape=(in_features,),
                                 out_shape=(out_features,), kernel=1, stride=1, padding=0,
                                 groups=1, weight_format=fmt), where)


def reference_arch(obs_shape: tuple[int, ...]) -> Arch:
    """The hand-designed network for an observation type.

    Pixels ``(C, H, W)``: MinAtar's network, conv 16 3x3 stride 1 no padding -> FC 128 (ReLU);
    frames of 32x32 or more (Atari, 84x84): the Nature-DQN network, conv 32 8x8/4 -> conv 64
    4x4/2 -> conv 64 3x3 -> FC 512.  Vectors: an MLP 64-64 (tanh).
    """
    if len(obs_shape) == 1:
        return Arch(name="mlp_reference", activation="tanh",
                    layers=(LayerSpec(op="linear", width=64),), head=HeadSpec(width=64))
    if len(obs_shape) == 3 and min(obs_shape[1:]) >= 32:
        return Arch(name="atari_reference", layers=(
            LayerSpec(op="conv8x8", width=32, stride=4),
            LayerSpec(op="conv4x4", width=64, stride=2),
            LayerSpec(op="conv3x3", width=64),
        ), head=HeadSpec(width=512))
    return Arch(name="minatar_reference", layers=(LayerSpec(op="conv3x3", width=16),),
                head=HeadSpec(width=128))


def load_arch(path: str, *, field: str = "--arch") -> Arch:
    """Load an architecture from YAML/JSON.

    Raises:
        ConfigError: the file is missing, not a mapping, or a field is invalid.
    """
    return validate(Arch, load_mapping(path, field=field), source=str(path))

