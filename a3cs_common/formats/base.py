"""What every weight format says about itself, and the layer geometry it is asked about.

A weight format (dense, block-circulant, 1xN, N:M) is a frozen pydantic model with a ``type``
tag.  Besides its parameters and their validation, it answers every question the rest of the
project asks about a format, for a given layer, through the methods of :class:`FormatBase`:
what the layer must satisfy (:meth:`~FormatBase.check`), how many weight words it stores and
how many of those are index metadata, how many real operations a run costs, which fraction
of the dense weights carries values, which hw_sim engine runs it, and how it is labelled and
written back to YAML.  Nothing outside the format's own module tests which format it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from a3cs_common.schema import FrozenModel


class LayerGeometry(Protocol):
    """The shape of a layer as the hardware sees it: ``groups`` GEMMs of ``[M, K] x [K, N]``
    (``hw_sim.workload``'s layers satisfy it)."""

    name: str
    groups: int
    out_channels: int

    @property
    def gemm_m(self) -> int: ...  # output pixels over the batch, per group

    @property
    def gemm_n(self) -> int: ...  # output channels per group

    @property
    def gemm_k(self) -> int: ...  # reduction length per group: in_channels / groups * taps

    @property
    def taps(self) -> int: ...  # kernel_h * kernel_w

    @property
    def channels_per_group(self) -> int: ...

    @property
    def dense_weight_words(self) -> int: ...

    @property
    def dense_macs(self) -> int: ...


class GemmGeometry:
    """The GEMM view of a layer from its ``groups``, ``in_channels``, ``out_channels``,
    ``taps`` and ``gemm_m`` (output pixels over the batch), which the class using it provides:
    ``hw_sim``'s layers and ``nas``'s planned layers derive it the same way through it."""

    if TYPE_CHECKING:  # provided by the using class (annotations here would be pydantic fields)
        groups: int
        in_channels: int
        out_channels: int
        taps: int
        gemm_m: int

    @property
    def channels_per_group(self) -> int:
        return self.in_channels // self.groups

    @property
    def gemm_n(self) -> int:
        """Output channels per group: columns of the weight matrix."""
        return self.out_channels // self.groups

    @property
    def gemm_k(self) -> int:
        """Reduction length per group: ``in_channels / groups * taps``."""
        return self.channels_per_group * self.taps

    @property
    def dense_weight_words(self) -> int:
        return self.groups * self.gemm_n * self.gemm_k

    @property
    def dense_macs(self) -> int:
        """Multiply-accumulates of the dense layer, all groups."""
        return self.gemm_m * self.dense_weight_words


class FormatBase(FrozenModel):
    """The interface of a weight format (see the module docstring).  Subclasses set ``type``
    (a ``Literal`` tag) and ``engine`` and override the methods whose dense answer is wrong
    for them."""

    #: hw_sim engine that executes the format; also the key of the hardware section that
    #: describes that engine (``None`` on :class:`hw_sim.hardware.Hardware` means absent).
    engine: ClassVar[str] = "systolic"
    #: The real CPU kernel that runs the format (accelerator_model.cpu_kernels): ``torch_dense``
    #: (torch's conv / linear), ``scipy_bsr`` (block-sparse rows), ``torch_fft`` (real FFTs).
    cpu_kernel: ClassVar[str] = "torch_dense"

    def check(self, layer: LayerGeometry) -> None:
        """Raise a one-line ConfigError (field ``weight_format.<param>``) unless the format
        fits ``layer``'s shape."""

    def value_words(self, layer: LayerGeometry) -> int:
        """Weight values stored (all groups)."""
        return layer.dense_weight_words

    def index_words(self, layer: LayerGeometry) -> int:
        """Index metadata words stored next to the values (all groups)."""
        return 0

    def stored_weight_words(self, layer: LayerGeometry) -> int:
        """Words in memory: values plus index metadata."""
        return self.value_words(layer) + self.index_words(layer)

    def macs(self, layer: LayerGeometry) -> int:
        """Multiply-accumulates the format's algorithm performs (block-circulant: complex
        MACs of the frequency-domain products)."""
        return layer.dense_macs

    def flops(self, layer: LayerGeometry) -> int:
        """Real floating-point operations of one run of the layer (a MAC is 2)."""
        return 2 * self.macs(layer)

    def weight_density(self, layer: LayerGeometry) -> float:
        """Fraction of the dense weights that carry independent values."""
        return 1.0

    def systolic_reduction(self, layer: LayerGeometry) -> int:
        """Rows of the weight matrix a systolic array multiplies (``K``; smaller for formats
        whose zero rows it skips)."""
        return layer.gemm_k

    def width_unit(self) -> int:
        """Output channels (features) must be a multiple of this for the format to fit."""
        return 1

    def input_unit(self) -> int:
        """Input channels (features) per group must be a multiple of this."""
        return 1

    def label(self) -> str:
        """Short name used in tables, plots and search-choice labels."""
        return str(getattr(self, "type"))  # noqa: B009 - ``type`` is each subclass's tag field

    def dump(self) -> dict[str, Any]:
        """The plain mapping of the YAML form (loading it gives an equal format)."""
        return self.model_dump(exclude_none=True)
