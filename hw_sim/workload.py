"""Workload description: the layers a network runs and the format of each layer's weights.

This is the one description of a layer in the project.  The agent networks export it, the
simulator and the analytical model read it, and the CLI loads and saves it as YAML/JSON.

Every layer is seen by the hardware as ``groups`` independent GEMMs: an ``[M, K]`` input
(im2col of the input feature map) times a ``[K, N]`` weight, where ``M = batch * out_h *
out_w`` output pixels, ``K = (in_channels / groups) * kernel_h * kernel_w`` and
``N = out_channels / groups``.

The weight format of each layer (dense, block-circulant, 1xN, N:M) is one of
:mod:`a3cs_common.formats`; every question about it (storage, operations, fit) goes there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import cached_property
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, PositiveInt, field_validator, model_validator

from a3cs_common.errors import ConfigError
from a3cs_common.formats import BlockCirculant, Dense, OneByN, WeightFormat
from a3cs_common.formats.base import GemmGeometry
from a3cs_common.schema import FrozenModel

__all__ = ["BlockCirculant", "Conv2d", "Dense", "Layer", "Linear", "OneByN", "Workload",
           "make_workload"]

# --------------------------------------------------------------------------------------------
# Layers


def _pair(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    return value


class _LayerBase(FrozenModel, GemmGeometry):
    """Fields and GEMM view shared by all layer kinds."""

    name: str = Field(min_length=1, description="unique layer name")
    batch: PositiveInt = Field(default=1, description="inputs processed per inference")
    weight_format: WeightFormat = Field(default_factory=Dense)

    # Unified geometry; Linear overrides these with its own fields.
    in_channels: int
    out_channels: int
    in_height: int
    in_width: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int
    ceil_mode: bool

    @property
    def out_height(self) -> int:
        return _out_size(self.in_height, self.kernel_size[0], self.stride[0], self.padding[0],
                         self.ceil_mode)

    @property
    def out_width(self) -> int:
        return _out_size(self.in_width, self.kernel_size[1], self.stride[1], self.padding[1],
                         self.ceil_mode)

    @property
    def taps(self) -> int:
        """Kernel taps ``kernel_h * kernel_w``."""
        return self.kernel_size[0] * self.kernel_size[1]

    @property
    def gemm_m(self) -> int:
        """Output pixels over the batch: rows of the im2col input, per group."""
        return self.batch * self.out_height * self.out_width

    @property
    def ifmap_words(self) -> int:
        """Distinct input words (padding not counted)."""
        return self.batch * self.in_channels * self.in_height * self.in_width

    @property
    def ofmap_words(self) -> int:
        return self.batch * self.out_channels * self.out_height * self.out_width

    @property
    def stored_weight_words(self) -> int:
        """Weight words in memory for this format: values plus index metadata."""
        return self.weight_format.stored_weight_words(self)

    @property
    def flops(self) -> int:
        """Real floating-point operations of one run of the layer with its format's algorithm
        (a multiply-accumulate is 2; see the format's ``flops``)."""
        return self.weight_format.flops(self)

    @property
    def weight_density(self) -> float:
        """Fraction of the dense weights that carry independent values."""
        return self.weight_format.weight_density(self)

    def block_mask(self) -> np.ndarray:
        """1xN block mask, ``bool [out_channels / n, in_channels / groups]``.

        Raises:
            ValueError: the layer's format is not ``one_by_n``.
        """
        return self._block_mask

    @cached_property
    def _block_mask(self) -> np.ndarray:
        fmt = self.weight_format
        if not isinstance(fmt, OneByN):
            raise ValueError(f"layer {self.name} is {fmt.type}, not one_by_n")
        return fmt.block_mask(self)

    def _check_format(self) -> None:
        self.weight_format.check(self)


def _out_size(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    span = size + 2 * padding - kernel
    if span < 0:
        return 0
    return (math.ceil(span / stride) if ceil_mode else span // stride) + 1


class Conv2d(_LayerBase):
    """2-D convolution (grouped and depthwise included), NCHW."""

    kind: Literal["conv2d"] = "conv2d"
    in_channels: PositiveInt
    out_channels: PositiveInt
    in_height: PositiveInt
    in_width: PositiveInt
    kernel_size: tuple[PositiveInt, PositiveInt] = Field(description="kernel (h, w) or one int")
    stride: tuple[PositiveInt, PositiveInt] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: PositiveInt = 1
    ceil_mode: bool = Field(
        default=False,
        description="round the output size up, as SCALE-Sim topology files do",
    )

    @field_validator("kernel_size", "stride", "padding", mode="before")
    @classmethod
    def _int_to_pair(cls, value: Any) -> Any:
        return _pair(value)

    @model_validator(mode="after")
    def _check(self) -> Conv2d:
        if min(self.padding) < 0:
            raise ConfigError("padding", list(self.padding), "integers >= 0")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ConfigError(
                "groups", self.groups,
                f"a divisor of in_channels={self.in_channels} and out_channels={self.out_channels}",
            )
        if self.out_height < 1 or self.out_width < 1:
            raise ConfigError(
                "kernel_size", list(self.kernel_size),
                f"at most the padded input {self.in_height + 2 * self.padding[0]}x"
                f"{self.in_width + 2 * self.padding[1]}",
            )
        self._check_format()
        return self


class Linear(_LayerBase):
    """Fully connected layer: ``[batch, in_features] -> [batch, out_features]``."""

    kind: Literal["linear"] = "linear"
    in_features: PositiveInt
    out_features: PositiveInt
    in_channels: int = 0
    out_channels: int = 0
    in_height: int = 1
    in_width: int = 1
    kernel_size: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    ceil_mode: bool = False

    @model_validator(mode="before")
    @classmethod
    def _geometry_from_features(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        implied = {
            "in_channels": data.get("in_features", 0), "out_channels": data.get("out_features", 0),
            "in_height": 1, "in_width": 1, "kernel_size": (1, 1), "stride": (1, 1),
            "padding": (0, 0), "groups": 1, "ceil_mode": False,
        }
        for key, value in implied.items():
            given = data.get(key, value)
            if (tuple(given) if isinstance(given, list) else given) != value:
                raise ConfigError(key, given, "no such key on a linear layer "
                                  "(a linear layer has in_features and out_features)")
            data[key] = value
        return data

    @model_validator(mode="after")
    def _check(self) -> Linear:
        self._check_format()
        return self


Layer = Annotated[Conv2d | Linear, Field(discriminator="kind")]


def _dump_layer(layer: Conv2d | Linear) -> dict[str, Any]:
    """The layer as the plain mapping its YAML form uses (defaults left out)."""
    out: dict[str, Any] = {"name": layer.name, "kind": layer.kind}
    if isinstance(layer, Linear):
        out["in_features"] = layer.in_features
        out["out_features"] = layer.out_features
    else:
        out.update(
            in_channels=layer.in_channels, out_channels=layer.out_channels,
            in_height=layer.in_height, in_width=layer.in_width,
            kernel_size=list(layer.kernel_size),
        )
        if layer.stride != (1, 1):
            out["stride"] = list(layer.stride)
        if layer.padding != (0, 0):
            out["padding"] = list(layer.padding)
        if layer.groups != 1:
            out["groups"] = layer.groups
        if layer.ceil_mode:
            out["ceil_mode"] = True
    if layer.batch != 1:
        out["batch"] = layer.batch
    if layer.weight_format != Dense():
        out["weight_format"] = layer.weight_format.dump()
    return out


# --------------------------------------------------------------------------------------------
# Workload


class Workload(FrozenModel):
    """A network as the hardware sees it: an ordered list of layers, run one after another."""

    name: str = Field(min_length=1)
    layers: tuple[Layer, ...] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _apply_default_batch(cls, data: Any) -> Any:
        if isinstance(data, dict) and "batch" in data:
            data = dict(data)
            batch = data.pop("batch")
            if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
                raise ConfigError("batch", batch, "an integer >= 1")
            layers = data.get("layers")
            if isinstance(layers, list | tuple):
                data["layers"] = [
                    {**layer, "batch": layer.get("batch", batch)} if isinstance(layer, dict)
                    else layer for layer in layers
                ]
        return data

    @model_validator(mode="after")
    def _unique_names(self) -> Workload:
        seen: set[str] = set()
        for i, layer in enumerate(self.layers):
            if layer.name in seen:
                raise ConfigError(f"layers[{i}].name", layer.name, "a name not used by another layer")
            seen.add(layer.name)
        return self

    @property
    def dense_macs(self) -> int:
        return sum(layer.dense_macs for layer in self.layers)

    @property
    def stored_weight_words(self) -> int:
        return sum(layer.stored_weight_words for layer in self.layers)

    @property
    def flops(self) -> int:
        """Real floating-point operations of one inference (see ``Conv2d.flops``)."""
        return sum(layer.flops for layer in self.layers)

    def layer(self, name: str) -> Conv2d | Linear:
        """The layer called ``name``.

        Raises:
            ConfigError: no layer has that name.
        """
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ConfigError("layer", name, "one of " + ", ".join(lay.name for lay in self.layers))

    def to_dict(self) -> dict[str, Any]:
        """The plain mapping of the YAML form (``load_workload`` reads it back)."""
        return {"name": self.name, "layers": [_dump_layer(layer) for layer in self.layers]}


def make_workload(name: str, layers: Iterable[Conv2d | Linear]) -> Workload:
    """Build a :class:`Workload` from layer objects (already validated)."""
    return Workload(name=name, layers=tuple(layers))
