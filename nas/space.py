"""Agent search spaces, declared once with nni's mutable API.

A search space has ``num_layers`` searchable trunk layers and a searchable head.  Per trunk
layer: an operation, a width (output channels or features) and a weight format; the head has
a width and a weight format.  Depth is searched through ``skip``.  The first layer always
computes (``skip`` is not offered there), so every later layer's input has one of the
searched widths.

Every candidate is feasible by construction: widths must be multiples of every block size
and every ``n`` in the formats, and block-circulant formats are offered to the first layer
only when their block size divides the observation's channels (or features).  Spatial sizes
are checked for the worst case: every combination of operations fits the observation.

:meth:`SearchSpace.mutable` gives the nni search space (``nni.mutable.MutableDict`` of
``Categorical`` choices labelled ``layers.<i>.op`` ... ``head.format``), which nni's
strategies sample; :meth:`SearchSpace.arch` turns a sample (or argmax indices) into the
discrete :class:`nas.arch.Arch` the RL package builds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, PositiveInt, model_validator

from a3cs_common.errors import ConfigError
from a3cs_common.formats import BlockCirculant, Dense, OneByN
from a3cs_common.io import load_mapping
from a3cs_common.schema import FrozenModel, validate
from nas.arch import KERNEL_OF_OP, Arch, ArchWeightFormat, HeadSpec, LayerSpec

PIXEL_OPS = ("conv3x3", "conv5x5", "dwsep3x3", "dwsep5x5", "conv1x1", "skip")
VECTOR_OPS = ("linear", "skip")


def _default_formats() -> tuple[ArchWeightFormat, ...]:
    return (
        Dense(),
        BlockCirculant(block_size=4), BlockCirculant(block_size=8),
        BlockCirculant(block_size=16),
        OneByN(n=2, density=0.5), OneByN(n=4, density=0.5),
        OneByN(n=8, density=0.5),
        OneByN(n=2, density=0.25), OneByN(n=4, density=0.25),
        OneByN(n=8, density=0.25),
    )


class SearchSpace(FrozenModel):
    """An agent search space (YAML-loadable; see the module docstring)."""

    name: str = Field(default="space", min_length=1)
    observation: Literal["pixels", "vector"] = Field(
        description="pixels: [C, H, W] observations and convolutional ops; vector: [features] "
        "and linear ops")
    num_layers: PositiveInt = Field(description="searchable trunk layers")
    ops: tuple[str, ...] = Field(description="candidate operations of every trunk layer")
    padding: tuple[Literal["valid", "same"], ...] = Field(
        default=(), description="padding of each trunk layer (pixels); default: valid for the "
        "first layer, same for the others")
    widths: tuple[PositiveInt, ...] = Field(description="candidate widths of trunk layers")
    formats: tuple[ArchWeightFormat, ...] = Field(
        default_factory=_default_formats, description="candidate weight formats of every "
        "layer that has weights")
    head_widths: tuple[PositiveInt, ...] = Field(description="candidate head widths")
    head_formats: tuple[ArchWeightFormat, ...] = Field(default_factory=_default_formats)
    activation: Literal["relu", "tanh"] = "relu"

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        allowed = PIXEL_OPS if self.observation == "pixels" else VECTOR_OPS
        for op in self.ops:
            if op not in allowed:
                raise ConfigError("ops", op, f"one of {', '.join(allowed)} for {self.observation}")
        if not [op for op in self.ops if op != "skip"]:
            raise ConfigError("ops", list(self.ops), "at least one operation other than skip")
        if self.padding and len(self.padding) != self.num_layers:
            raise ConfigError("padding", list(self.padding),
                              f"{self.num_layers} entries, one per trunk layer")
        for field, values in (("widths", self.widths), ("head_widths", self.head_widths),
                              ("formats", self.formats), ("head_formats", self.head_formats)):
            if not values:
                raise ConfigError(field, [], "at least one candidate")
            if len(set(map(str, values))) != len(values):
                raise ConfigError(field, list(map(str, values)), "distinct candidates")
        for field, widths, formats in (("widths", self.widths, self.formats),
                                       ("head_widths", self.head_widths, self.head_formats)):
            for fmt in formats:
                unit = fmt.width_unit()
                for width in widths:
                    if width % unit:
                        raise ConfigError(
                            field, width, f"multiples of {unit} (format {fmt.label()} "
                            "needs every width to split into its blocks)")
        return self

    # -- structure -----------------------------------------------------------------------

    def layer_padding(self, index: int) -> Literal["valid", "same"]:
        if self.padding:
            return self.padding[index]
        return "valid" if index == 0 else "same"

    def layer_ops(self, index: int) -> tuple[str, ...]:
        """Candidate operations of trunk layer ``index`` (the first layer never skips)."""
        return tuple(op for op in self.ops if index > 0 or op != "skip")

    def layer_formats(self, index: int, obs_shape: tuple[int, ...]) -> tuple[ArchWeightFormat, ...]:
        """Candidate formats of trunk layer ``index``; the first layer's inputs are the
        observation's channels, which block sizes must divide."""
        if index > 0:
            return self.formats
        inputs = obs_shape[0]
        return tuple(f for f in self.formats if inputs % f.input_unit() == 0)

    def check_fits(self, obs_shape: tuple[int, ...]) -> None:
        """Raise a one-line ConfigError unless every architecture in the space fits
        ``obs_shape``."""
        if self.observation == "pixels" and len(obs_shape) != 3:
            raise ConfigError("observation", "vector", "a vector search space for vector "
                              f"observations {obs_shape}")
        if self.observation == "vector" and len(obs_shape) != 1:
            raise ConfigError("observation", "pixels", f"a pixel search space for {obs_shape}")
        if not self.layer_formats(0, obs_shape):
            raise ConfigError("formats", [f.label() for f in self.formats],
                              f"at least one format usable on {obs_shape[0]} input channels")
        if self.observation == "pixels":
            smallest = min(obs_shape[1:])
            for i in range(self.num_layers):
                kernels = [KERNEL_OF_OP[op] for op in self.layer_ops(i) if op != "skip"]
                if self.layer_padding(i) == "valid":
                    smallest -= max(kernels) - 1
                if smallest < 1:
                    raise ConfigError(f"padding[{i}]", self.layer_padding(i),
                                      f"'same' here: with valid padding the largest kernels "
                                      f"do not fit the {obs_shape[1]}x{obs_shape[2]} input")

    # -- nni and discrete architectures --------------------------------------------------

    def choices(self, obs_shape: tuple[int, ...]) -> dict[str, tuple[Any, ...]]:
        """Every choice label and its candidates, in a fixed order."""
        out: dict[str, tuple[Any, ...]] = {}
        for i in range(self.num_layers):
            out[f"layers.{i}.op"] = self.layer_ops(i)
            out[f"layers.{i}.width"] = self.widths
            out[f"layers.{i}.format"] = tuple(f.label()
                                              for f in self.layer_formats(i, obs_shape))
        out["head.width"] = self.head_widths
        out["head.format"] = tuple(f.label() for f in self.head_formats)
        return out

    def mutable(self, obs_shape: tuple[int, ...]) -> Any:
        """The nni search space: a ``MutableDict`` of ``Categorical`` choices."""
        from nni.mutable import Categorical, MutableDict

        self.check_fits(obs_shape)
        return MutableDict({label: Categorical(list(values), label=label)
                            for label, values in self.choices(obs_shape).items()})

    def arch(self, sample: Mapping[str, Any], obs_shape: tuple[int, ...],
             name: str = "derived") -> Arch:
        """The architecture a sample picks (values as in :meth:`choices`).

        Raises:
            ConfigError: a label is missing or a value is not one of its candidates.
        """
        choices = self.choices(obs_shape)
        for label, values in choices.items():
            if label not in sample:
                raise ConfigError(label, "<missing>", f"one of {list(values)}")
            if sample[label] not in values:
                raise ConfigError(label, sample[label], f"one of {list(values)}")
        formats = {f.label(): f for f in (*self.formats, *self.head_formats)}
        layers = []
        for i in range(self.num_layers):
            op = sample[f"layers.{i}.op"]
            if op == "skip":
                layers.append(LayerSpec(op="skip"))
                continue
            layers.append(LayerSpec(
                op=op, width=sample[f"layers.{i}.width"],
                padding=self.layer_padding(i) if self.observation == "pixels" else "valid",
                weight_format=formats[sample[f"layers.{i}.format"]]))
        head = HeadSpec(width=sample["head.width"], weight_format=formats[sample["head.format"]])
        return Arch(name=name, activation=self.activation, layers=tuple(layers), head=head)

    def sample_of(self, arch: Arch, obs_shape: tuple[int, ...]) -> dict[str, Any] | None:
        """The sample that builds ``arch`` (a skipped layer's width and format: their first
        candidates), or None when the space cannot express it."""
        if len(arch.layers) > self.num_layers:
            return None
        choices = self.choices(obs_shape)
        layers = (*arch.layers, *(LayerSpec(op="skip"),) * (self.num_layers - len(arch.layers)))
        sample: dict[str, Any] = {}
        for i, layer in enumerate(layers):
            skipped = layer.op == "skip"
            sample[f"layers.{i}.op"] = layer.op
            sample[f"layers.{i}.width"] = (choices[f"layers.{i}.width"][0] if skipped
                                           else layer.width)
            sample[f"layers.{i}.format"] = (choices[f"layers.{i}.format"][0] if skipped
                                            else layer.weight_format.label())
        sample["head.width"] = arch.head.width
        sample["head.format"] = arch.head.weight_format.label()
        try:
            rebuilt = self.arch(sample, obs_shape, name=arch.name)
        except ConfigError:
            return None

        def computing(a: Arch) -> tuple[Any, ...]:
            return (a.activation, a.head, tuple(la for la in a.layers if la.op != "skip"))

        return sample if computing(rebuilt) == computing(arch) else None

    def arch_from_indices(self, indices: Mapping[str, int], obs_shape: tuple[int, ...],
                          name: str = "derived") -> Arch:
        """The architecture picked by candidate indices per label."""
        choices = self.choices(obs_shape)
        return self.arch({label: choices[label][indices[label]] for label in choices},
                         obs_shape, name)

    def size(self, obs_shape: tuple[int, ...]) -> int:
        """Number of distinct samples."""
        total = 1
        for values in self.choices(obs_shape).values():
            total *= len(values)
        return total


def pixel_space() -> SearchSpace:
    """The default space for MinAtar-sized pixel observations (10x10): three trunk layers
    (the first valid-padded, the others same-padded), widths 16 or 32 (the reference network
    has 16; every block size divides them), heads 32-256."""
    return SearchSpace(name="pixels_default", observation="pixels", num_layers=3,
                       ops=PIXEL_OPS, widths=(16, 32), head_widths=(32, 64, 128, 256))


def vector_space() -> SearchSpace:
    """The default space for vector observations (CartPole, MuJoCo): two linear layers."""
    return SearchSpace(name="vector_default", observation="vector", num_layers=2,
                       ops=VECTOR_OPS, widths=(16, 32, 64, 128), head_widths=(16, 32, 64, 128),
                       activation="tanh")


def default_space(obs_shape: tuple[int, ...]) -> SearchSpace:
    return pixel_space() if len(obs_shape) == 3 else vector_space()


def load_space(path: str, *, field: str = "--space") -> SearchSpace:
    """Load a search space from YAML/JSON (one-line ConfigError on any bad field)."""
    return validate(SearchSpace, load_mapping(path, field=field), source=str(path))
